"""The scheduler from Python: futures that end exactly once, backpressure that hands the array
back, deadlines, cancellation, metrics, and a shutdown that answers everything accepted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading

import numpy as np
import pytest
from conftest import bits, rows

import densebatch

WIDTH = 24
MODEL = densebatch.Model.random([WIDTH, 40, 33, 7], hidden="relu", output="softmax", seed=5)
SLOW = densebatch.Model.random([512, 2048, 2048, 4], hidden="relu", output="identity", seed=9)
# A full batch of SLOW: about 0.7 GFLOP, several milliseconds on any core, so requests queued
# behind three of them are still waiting a millisecond later.
BLOCK = rows(64, 512, seed=99)


def test_submit_returns_a_future_with_the_direct_bits():
    direct = MODEL.compile(threads=1)
    with densebatch.Scheduler(threads=2) as scheduler:
        scheduler.load("m", MODEL.compile(threads=1), max_batch_size=16, max_wait_s=0.002)
        xs = [rows(1 + i % 5, WIDTH, seed=i) for i in range(200)]
        futures = [scheduler.submit("m", x) for x in xs]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        for x, f in zip(xs, futures):
            assert np.array_equal(bits(f.result(timeout=10)), bits(direct.predict(x)))
        names = [m["name"] for m in scheduler.models()]
        assert names == ["m"]
        assert scheduler.models()[0]["state"] == "ready"


def test_exactly_once_under_four_threads_with_deadlines_and_cancels():
    direct = MODEL.compile(threads=1)
    inputs = [rows(1 + i % 3, WIDTH, seed=i) for i in range(64)]
    outputs = [bits(direct.predict(x)) for x in inputs]
    outcomes: list[tuple[int, concurrent.futures.Future]] = []
    rejected_full = 0
    lock = threading.Lock()
    scheduler = densebatch.Scheduler(threads=2)
    scheduler.load("m", MODEL.compile(threads=1), max_batch_size=8, queue_capacity=256)

    def client(seed: int) -> None:
        nonlocal rejected_full
        rng = random.Random(seed)
        for n in range(2000):
            i = rng.randrange(len(inputs))
            timeout = rng.choice([None, None, 1e-6, 1e-3])
            try:
                future = scheduler.submit("m", inputs[i], timeout_s=timeout)
            except densebatch.QueueFull as e:
                assert np.array_equal(e.request, inputs[i])
                with lock:
                    rejected_full += 1
                continue
            if rng.random() < 0.1:
                future.cancel()
            with lock:
                outcomes.append((i, future))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scheduler.shutdown()

    completed = expired = cancelled = 0
    for i, future in outcomes:
        assert future.done()
        if future.cancelled():
            cancelled += 1
            continue
        error = future.exception(timeout=0)
        if error is None:
            completed += 1
            assert np.array_equal(bits(future.result()), outputs[i])
        else:
            assert isinstance(error, densebatch.DeadlineExceeded), error
            expired += 1
    counters = scheduler.metrics()["models"]["m"]["counters"]
    assert counters["accepted"] == len(outcomes)
    assert counters["rejected_full"] == rejected_full
    # A future cancelled after its request was computed (or had expired) is counted by the engine
    # as completed (expired); one cancelled in time is never computed and counted cancelled.
    assert counters["completed"] >= completed and counters["expired"] >= expired
    assert counters["cancelled"] <= cancelled
    assert counters["completed"] + counters["expired"] + counters["cancelled"] == len(outcomes)
    assert (
        counters["accepted"]
        == counters["completed"] + counters["failed"] + counters["expired"]
        + counters["cancelled"] + counters["panicked"]
    )
    assert expired > 0 and cancelled > 0 and completed > 0


def test_a_full_queue_raises_at_once_and_hands_the_array_back():
    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("slow", SLOW.compile(threads=1), max_batch_size=1, queue_capacity=2, warmup_rounds=0)
        x = rows(1, 512)
        accepted, refused = [], []
        for _ in range(40):
            try:
                accepted.append(scheduler.submit("slow", x))
            except densebatch.QueueFull as e:
                refused.append(e)
        assert refused, "a queue of 2 took 40 slow requests at once"
        for e in refused:
            assert isinstance(e.request, np.ndarray) and np.array_equal(e.request, x)
            assert isinstance(e, densebatch.SubmitRejected)
        for f in accepted:
            assert f.result(timeout=30).shape == (1, 4)
        assert scheduler.metrics()["models"]["slow"]["counters"]["rejected_full"] == len(refused)


def test_refusals_are_typed_and_carry_the_request():
    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("m", MODEL.compile(threads=1), max_batch_size=4)
        x = rows(2, WIDTH)
        with pytest.raises(densebatch.UnknownModel) as unknown:
            scheduler.submit("nope", x)
        assert np.array_equal(unknown.value.request, x)
        with pytest.raises(densebatch.InvalidRequest, match="rows"):
            scheduler.submit("m", rows(5, WIDTH))
        with pytest.raises(densebatch.InvalidRequest):
            scheduler.submit("m", rows(1, WIDTH + 1))
        bad = rows(1, WIDTH)
        bad[0, 3] = np.inf
        with pytest.raises(densebatch.InvalidRequest) as invalid:
            scheduler.submit("m", bad)
        assert np.array_equal(invalid.value.request, bad)
        with pytest.raises(TypeError, match="float64"):
            scheduler.submit("m", rows(1, WIDTH).astype(np.float64))
        with pytest.raises(ValueError, match="timeout_s"):
            scheduler.submit("m", x, timeout_s=-1.0)
        with pytest.raises(densebatch.InvalidConfig):
            scheduler.load("zero", MODEL.compile(threads=1), max_batch_size=0)
        with pytest.raises(densebatch.SchedulerError, match="already loaded"):
            scheduler.load("m", MODEL.compile(threads=1))
        with pytest.raises(densebatch.UnknownModel):
            scheduler.unload("nope")
    with pytest.raises(densebatch.ShuttingDown) as closed:
        scheduler.submit("m", x)
    assert np.array_equal(closed.value.request, x)


def test_an_expired_request_is_not_computed():
    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("slow", SLOW.compile(threads=1), max_batch_size=64, warmup_rounds=0)
        x = rows(1, 512)
        blockers = [scheduler.submit("slow", BLOCK) for _ in range(3)]
        late = scheduler.submit("slow", x, timeout_s=1e-3)
        with pytest.raises(densebatch.DeadlineExceeded):
            late.result(timeout=30)
        for f in blockers:
            f.result(timeout=30)
        m = scheduler.metrics()["models"]["slow"]
        assert m["counters"]["expired"] == 1
        # Only the three blockers were computed.
        assert sum(r["rows"] for r in scheduler.records("slow")) == 3 * 64


def test_cancelling_before_compute_drops_the_request():
    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("slow", SLOW.compile(threads=1), max_batch_size=64, warmup_rounds=0)
        x = rows(1, 512)
        blockers = [scheduler.submit("slow", BLOCK) for _ in range(3)]
        doomed = scheduler.submit("slow", x)
        assert doomed.cancel()
        for f in blockers:
            f.result(timeout=30)
        scheduler.submit("slow", x).result(timeout=30)
        counters = scheduler.metrics()["models"]["slow"]["counters"]
        assert counters["cancelled"] == 1
        assert counters["completed"] == 4


def test_submit_async_and_asyncio_cancellation():
    direct = MODEL.compile(threads=1)

    async def main(scheduler):
        xs = [rows(2, WIDTH, seed=s) for s in range(50)]
        ys = await asyncio.gather(*(scheduler.submit_async("m", x) for x in xs))
        for x, y in zip(xs, ys):
            assert np.array_equal(bits(y), bits(direct.predict(x)))
        scheduler.load("slow", SLOW.compile(threads=1), max_batch_size=64, warmup_rounds=0)
        blockers = [asyncio.ensure_future(scheduler.submit_async("slow", BLOCK)) for _ in range(3)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(scheduler.submit_async("slow", rows(1, 512)), 1e-3)
        await asyncio.gather(*blockers)

    with densebatch.Scheduler(threads=1) as scheduler:
        scheduler.load("m", MODEL.compile(threads=1), max_batch_size=8)
        asyncio.run(main(scheduler))
    # After shutdown every accepted request has been accounted for.
    counters = scheduler.metrics()["models"]["slow"]["counters"]
    assert counters["cancelled"] + counters["completed"] == counters["accepted"] == 4
    assert counters["cancelled"] == 1


def test_replace_and_unload_under_traffic_lose_nothing():
    other = densebatch.Model.random([WIDTH, 16, 7], hidden="tanh", output="softmax", seed=8)
    answers = {bits(MODEL.compile(threads=1).predict(rows(1, WIDTH, seed=1))).tobytes(),
               bits(other.compile(threads=1).predict(rows(1, WIDTH, seed=1))).tobytes()}
    scheduler = densebatch.Scheduler(threads=2)
    scheduler.load("m", MODEL.compile(threads=1), max_batch_size=8)
    futures, stop = [], threading.Event()

    def traffic():
        x = rows(1, WIDTH, seed=1)
        while not stop.is_set():
            try:
                futures.append(scheduler.submit("m", x))
            except (densebatch.QueueFull, densebatch.UnknownModel):
                pass

    t = threading.Thread(target=traffic)
    t.start()
    for model in (other, MODEL, other):
        scheduler.replace("m", model.compile(threads=1), max_batch_size=8)
    scheduler.unload("m")
    stop.set()
    t.join()
    scheduler.shutdown()
    assert len(futures) > 100
    for f in futures:
        assert bits(f.result(timeout=0)).tobytes() in answers


def test_records_metrics_and_prometheus():
    with densebatch.Scheduler(threads=1, record_ring=64) as scheduler:
        scheduler.load("m", MODEL.compile(threads=1), max_batch_size=8, max_wait_s=0.001)
        for f in [scheduler.submit("m", rows(1, WIDTH, seed=s)) for s in range(40)]:
            f.result(timeout=10)
        records = scheduler.records("m")
        assert records and sum(r["rows"] for r in records) >= 40
        for r in records:
            assert 1 <= r["rows"] <= 8
            assert r["close_reason"] in {"full", "wait", "deadline", "drain"}
            assert r["compute_s"] > 0 and r["scratch_bytes"] > 0
            assert r["alloc_counted"] is True
        metrics = scheduler.metrics()
        m = metrics["models"]["m"]
        latency = m["request_latency"]
        assert latency["count"] >= 40
        assert 0 < latency["p50_s"] <= latency["p90_s"] <= latency["p99_s"] <= latency["p999_s"] <= latency["max_s"]
        assert m["batch_rows"]["max"] <= 8
        assert m["peak_scratch_bytes"] > 0
        assert metrics["budget"]["pool_threads"] == 1
        text = scheduler.prometheus()
        assert 'densebatch_requests_accepted_total{model="m"' in text or "densebatch_" in text
        assert 'model="m"' in text
        with pytest.raises(densebatch.UnknownModel):
            scheduler.records("nope")


def test_shutdown_answers_every_accepted_request_once():
    scheduler = densebatch.Scheduler(threads=1)
    scheduler.load("slow", SLOW.compile(threads=1), max_batch_size=4, queue_capacity=64, warmup_rounds=0)
    futures = [scheduler.submit("slow", rows(1, 512, seed=s)) for s in range(20)]
    scheduler.shutdown()
    assert all(f.done() for f in futures)
    assert all(f.exception(timeout=0) is None for f in futures)
    scheduler.shutdown()  # idempotent


def test_submits_racing_shutdown_either_raise_or_complete():
    for _ in range(5):
        scheduler = densebatch.Scheduler(threads=2)
        scheduler.load("m", MODEL.compile(threads=1), max_batch_size=8, queue_capacity=4096)
        futures, refused, started = [], [], threading.Barrier(5)

        def client():
            started.wait()
            x = rows(1, WIDTH)
            while True:
                try:
                    futures.append(scheduler.submit("m", x))
                except densebatch.ShuttingDown as e:
                    refused.append(e.request)
                    return
                except densebatch.QueueFull:
                    pass

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        scheduler.shutdown()
        for t in threads:
            t.join()
        assert len(refused) == 4
        done, not_done = concurrent.futures.wait(futures, timeout=10)
        assert not not_done
        assert all(f.exception() is None for f in done)
        assert scheduler.metrics()["models"]["m"]["counters"]["completed"] == len(futures)
