"""Determinism from Python, as properties: a row's bits do not depend on its batch, its position,
how the batch is split, or the thread count."""

from __future__ import annotations

import numpy as np
from conftest import bits
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import densebatch

WIDTH = 24
MODEL = densebatch.Model.random([WIDTH, 40, 33, 7], hidden="relu", output="softmax", seed=5)
ONE = MODEL.compile(threads=1)
TWO = MODEL.compile(threads=2)

batches = arrays(
    np.float32,
    st.tuples(st.integers(1, 300), st.just(WIDTH)),
    elements=st.floats(-8, 8, width=32),
)


@settings(max_examples=60, deadline=None)
@given(x=batches, data=st.data())
def test_a_row_alone_equals_the_row_in_its_batch(x, data):
    y = bits(TWO.predict(x))
    i = data.draw(st.integers(0, x.shape[0] - 1))
    assert np.array_equal(bits(ONE.predict(x[i : i + 1]))[0], y[i])
    assert np.array_equal(bits(TWO.predict(x[i : i + 1]))[0], y[i])


@settings(max_examples=60, deadline=None)
@given(x=batches, data=st.data())
def test_any_split_concatenates_to_the_same_bits(x, data):
    want = bits(ONE.predict(x))
    cuts = sorted(data.draw(st.lists(st.integers(0, x.shape[0]), max_size=6)))
    parts = [TWO.predict(part) for part in np.split(x, cuts) if part.shape[0]]
    assert np.array_equal(bits(np.concatenate(parts)), want)
    batch_size = data.draw(st.integers(1, 64))
    assert np.array_equal(bits(densebatch.batch_inference(TWO, x, batch_size=batch_size)), want)


@settings(max_examples=40, deadline=None)
@given(x=batches)
def test_threads_kernels_and_reference_agree_bitwise(x):
    want = bits(MODEL.predict_reference(x))
    assert np.array_equal(bits(ONE.predict(x)), want)
    assert np.array_equal(bits(TWO.predict(x)), want)


@settings(max_examples=40, deadline=None)
@given(x=batches)
def test_shuffling_rows_shuffles_outputs_only(x):
    order = np.random.default_rng(x.shape[0]).permutation(x.shape[0])
    assert np.array_equal(bits(TWO.predict(x[order])), bits(TWO.predict(x))[order])
