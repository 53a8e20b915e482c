"""Models from Python: parity with the float64 check vectors, attributes, and every input error."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import bits, require, rows

import densebatch

REFERENCE_MODELS = ["tiny-mlp", "mnist-mlp", "wide-mlp"]


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_reference_models_match_float64_check_vectors(reference_dir, name):
    folder = require(reference_dir / name)
    x = np.load(folder / "x_check.npy").astype(np.float32)
    y = np.load(folder / "y_check.npy")
    for source in (folder, folder / "model.onnx"):
        model = densebatch.load(source, threads=2)
        got = model.predict(x)
        assert got.dtype == np.float32 and got.shape == y.shape
        np.testing.assert_allclose(got, y, rtol=0, atol=1e-5 * max(1.0, np.abs(y).max()))


def test_bundled_digits_classify_the_held_out_set(digits_dir, digits_test):
    model = densebatch.load(digits_dir)
    x, labels = digits_test["x"].astype(np.float32), digits_test["labels"]
    predicted = model.predict_classes(x)
    assert predicted.dtype == np.intp
    accuracy = (predicted == labels).mean()
    assert accuracy > 0.95, accuracy
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(proba.argmax(axis=1), predicted)


def test_attributes_describe_the_compiled_model(digits_dir):
    model = densebatch.load(digits_dir, threads=1)
    assert (model.name, model.input_width, model.output_width) == ("digits-mlp", 64, 10)
    assert model.kernel in densebatch.supported_kernels()
    assert model.threads == 1
    assert model.weight_bytes >= 4 * (64 * 128 + 128 * 64 + 64 * 10)
    assert model.flops_per_sample == 2 * (64 * 128 + 128 * 64 + 64 * 10)
    assert model.workspace_bytes > 0
    assert "digits-mlp" in repr(model)


def test_default_threads_follow_the_environment(monkeypatch):
    monkeypatch.delenv("DENSEBATCH_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert densebatch.default_threads() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("DENSEBATCH_NUM_THREADS", "1")
    assert densebatch.default_threads() == (1, "DENSEBATCH_NUM_THREADS")
    model = densebatch.Model.random([4, 3]).compile()
    assert model.threads == 1
    monkeypatch.delenv("DENSEBATCH_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads, source = densebatch.default_threads()
    assert source == "cpu budget" and 1 <= threads <= len(__import__("os").sched_getaffinity(0))


def test_every_kernel_gives_the_reference_bits(small_model):
    x = rows(77, 24, seed=1)
    want = small_model.predict_reference(x)
    for kernel in densebatch.supported_kernels():
        for threads in (1, 2):
            got = small_model.compile(threads=threads, kernel=kernel).predict(x)
            assert np.array_equal(bits(got), bits(want)), (kernel, threads)


def test_strided_transposed_and_read_only_inputs_are_read_in_place(small_model):
    model = small_model.compile(threads=2)
    base = rows(120, 48, seed=2)
    contiguous = np.ascontiguousarray(base[::2, ::2])
    want = bits(model.predict(contiguous))
    assert np.array_equal(bits(model.predict(base[::2, ::2])), want)
    fortran = np.asfortranarray(contiguous)
    assert np.array_equal(bits(model.predict(fortran)), want)
    reversed_rows = contiguous[::-1]
    assert np.array_equal(bits(model.predict(reversed_rows))[::-1], want)
    read_only = contiguous.copy()
    read_only.flags.writeable = False
    assert np.array_equal(bits(model.predict(read_only)), want)


def test_out_is_written_in_place_and_returned(small_model):
    model = small_model.compile(threads=1)
    x = rows(10, 24)
    out = np.full((10, 7), np.nan, dtype=np.float32)
    returned = model.predict(x, out=out)
    assert returned is out
    assert np.array_equal(bits(out), bits(model.predict(x)))
    # Into a strided view of a larger buffer.
    big = np.zeros((20, 14), dtype=np.float32)
    model.predict(x, out=big[::2, ::2])
    assert np.array_equal(bits(big[::2, ::2]), bits(out))
    assert not big[1::2].any()


def test_out_errors(small_model):
    model = small_model.compile(threads=1)
    x = rows(4, 24)
    with pytest.raises(ValueError, match=r"out= has shape \(3, 7\); expected \(4, 7\)"):
        model.predict(x, out=np.zeros((3, 7), np.float32))
    with pytest.raises(TypeError, match="float32"):
        model.predict(x, out=np.zeros((4, 7), np.float64))
    read_only = np.zeros((4, 7), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out= cannot be written"):
        model.predict(x, out=read_only)
    square = densebatch.Model.random([6, 6]).compile(threads=1)
    shared = rows(5, 6)
    with pytest.raises(ValueError, match="must not share memory with x"):
        square.predict(shared, out=shared)


def test_dtype_and_shape_errors_are_clear(small_model):
    model = small_model.compile(threads=1)
    x64 = rows(3, 24).astype(np.float64)
    with pytest.raises(TypeError, match="expected a float32 array; got float64.*cast=True"):
        model.predict(x64)
    assert np.array_equal(bits(model.predict(x64, cast=True)), bits(model.predict(x64.astype(np.float32))))
    with pytest.raises(ValueError, match="2-D.*got 1 dimensions"):
        model.predict(rows(1, 24)[0])
    with pytest.raises(TypeError, match="got list"):
        model.predict([[0.0] * 24])
    assert model.predict([[0.0] * 24], cast=True).shape == (1, 7)
    with pytest.raises(densebatch.InvalidInput, match="24"):
        model.predict(rows(3, 23))
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros((2, 3, 24), np.float32))


def test_non_finite_inputs_are_refused_with_their_position_unless_propagated(small_model):
    x = rows(6, 24)
    x[4, 17] = np.nan
    with pytest.raises(densebatch.InvalidInput) as error:
        small_model.compile(threads=1).predict(x)
    assert (error.value.row, error.value.col) == (4, 17)
    propagated = small_model.compile(threads=1, non_finite="propagate").predict(x)
    assert np.isnan(propagated[4]).all() and np.isfinite(propagated[:4]).all()


def test_empty_batch_gives_an_empty_output(small_model):
    assert small_model.compile(threads=1).predict(np.zeros((0, 24), np.float32)).shape == (0, 7)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="threads"):
        densebatch.Model.random([4, 3]).compile(threads=0)
    with pytest.raises(ValueError, match="kernel"):
        densebatch.Model.random([4, 3]).compile(kernel="sse9")
    with pytest.raises(ValueError, match="non_finite"):
        densebatch.Model.random([4, 3]).compile(non_finite="ignore")
    with pytest.raises(ValueError, match="activation"):
        densebatch.Model.random([4, 3], hidden="swish")
    with pytest.raises(ValueError, match="widths"):
        densebatch.Model.random([4])
    with pytest.raises(ValueError, match="softmax"):
        densebatch.Model.random([4, 3]).compile().predict_proba(rows(1, 4))


def test_loader_errors_are_typed(tmp_path):
    with pytest.raises(OSError):
        densebatch.load(tmp_path / "missing.json")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(densebatch.LoadError):
        densebatch.load(tmp_path / "model.json")
    with pytest.raises(densebatch.LoadError):
        densebatch.Model.from_bytes(b"{}", b"")


def test_models_pickle_and_round_trip_through_bytes(small_model, tmp_path):
    x = rows(9, 24)
    compiled = small_model.compile(threads=1)
    clone = pickle.loads(pickle.dumps(compiled))
    assert isinstance(clone, densebatch.CompiledModel)
    assert clone.threads == 1
    assert np.array_equal(bits(clone.predict(x)), bits(compiled.predict(x)))
    model_clone = pickle.loads(pickle.dumps(small_model))
    assert np.array_equal(bits(model_clone.predict_reference(x)), bits(small_model.predict_reference(x)))
    spec, weights = small_model.to_bytes()
    assert densebatch.Model.from_bytes(spec, weights).to_bytes() == (spec, weights)
    small_model.save(tmp_path / "model.json")
    loaded = densebatch.load(tmp_path / "model.json", threads=1)
    assert np.array_equal(bits(loaded.predict(x)), bits(compiled.predict(x)))


def test_batch_inference_equals_predict(digits_dir, digits_test):
    model = densebatch.load(digits_dir, threads=2)
    x = digits_test["x"].astype(np.float32)
    want = bits(model.predict(x))
    for batch_size in (1, 7, 32, 1000):
        assert np.array_equal(bits(densebatch.batch_inference(model, x, batch_size=batch_size)), want)
    with pytest.raises(ValueError):
        densebatch.batch_inference(model, x, batch_size=0)


@pytest.mark.parametrize("precision", ["bf16", "int8", "int8-full"])
def test_low_precision_weights_keep_the_bit_identity_promise(small_model, precision):
    x = rows(90, 24, seed=7)
    models = [
        small_model.compile(threads=t, kernel=k, precision=precision)
        for t in (1, 2)
        for k in densebatch.supported_kernels()
    ]
    assert all(m.precision == precision for m in models)
    want = bits(models[0].predict(x))
    for m in models:
        assert np.array_equal(bits(m.predict(x)), want)
        assert np.array_equal(bits(m.predict(x[31:32]))[0], want[31])
    f32 = small_model.compile(threads=1)
    assert models[0].weight_bytes < f32.weight_bytes
    assert (models[0].predict_classes(x) == f32.predict_classes(x)).mean() >= 0.9
    clone = pickle.loads(pickle.dumps(models[0]))
    assert clone.precision == precision
    assert np.array_equal(bits(clone.predict(x)), want)
    with pytest.raises(ValueError, match="precision|fp16"):
        small_model.compile(precision="fp16")
