"""Models cross process boundaries: pickled to a spawned worker, inherited by a forked one (whose
compute threads are started again there), and a scheduler refuses use in a forked child."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

import numpy as np
import pytest
from conftest import bits, rows

import densebatch

MODEL = densebatch.Model.random([24, 40, 7], hidden="relu", output="softmax", seed=5)
# Built before any fork, on two threads (the caller and one helper).
INHERITED = MODEL.compile(threads=2)


def predict_inherited(x: np.ndarray) -> np.ndarray:
    return INHERITED.predict(x)


SCHEDULERS: list[densebatch.Scheduler] = []


def submit_inherited() -> str:
    try:
        SCHEDULERS[0].submit("m", rows(1, 24))
    except RuntimeError as e:
        return str(e)
    return "accepted"


def test_a_spawned_worker_gets_a_pickled_model():
    x = rows(50, 24)
    model = MODEL.compile(threads=2)
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        got = pool.submit(model.predict, x).result(timeout=120)
    assert np.array_equal(bits(got), bits(model.predict(x)))


def test_a_forked_child_restarts_the_compute_threads():
    x = rows(300, 24)
    want = INHERITED.predict(x)
    fork = multiprocessing.get_context("fork")
    with fork.Pool(1) as pool:
        got = pool.apply_async(predict_inherited, (x,)).get(timeout=60)
    assert np.array_equal(bits(got), bits(want))


def test_a_scheduler_is_refused_in_a_forked_child():
    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("m", MODEL.compile(threads=1))
        SCHEDULERS.append(scheduler)
        fork = multiprocessing.get_context("fork")
        with fork.Pool(1) as pool:
            message = pool.apply_async(submit_inherited).get(timeout=60)
        SCHEDULERS.clear()
        assert "create a Scheduler in the child" in message
