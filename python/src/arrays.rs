//! numpy arrays in and out: inputs read in place at any strides, outputs written in place.

use numpy::{PyArray2, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// `x` as a 2-D float32 array without a copy. Anything else is refused naming what it is, unless
/// `cast` asks for one conversion (`numpy.asarray(x, dtype=float32)`).
pub(crate) fn input_f32<'py>(
    x: &Bound<'py, PyAny>,
    cast: bool,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    if let Ok(array) = x.cast::<PyArray2<f32>>() {
        return Ok(array.clone());
    }
    let py = x.py();
    if cast {
        let converted = py
            .import("numpy")?
            .call_method1("asarray", (x, py.import("numpy")?.getattr("float32")?))?;
        return match converted.cast::<PyArray2<f32>>() {
            Ok(array) => Ok(array.clone()),
            Err(_) => Err(PyValueError::new_err(format!(
                "expected a 2-D array [rows, features]; got {} dimensions",
                converted.cast::<PyUntypedArray>()?.ndim()
            ))),
        };
    }
    match x.cast::<PyUntypedArray>() {
        Ok(array) if array.ndim() != 2 => Err(PyValueError::new_err(format!(
            "expected a 2-D array [rows, features]; got {} dimensions (reshape a single sample \
             with x.reshape(1, -1))",
            array.ndim()
        ))),
        Ok(array) => Err(PyTypeError::new_err(format!(
            "expected a float32 array; got {} (pass cast=True to convert it, one copy)",
            array.dtype()
        ))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "expected a 2-D float32 numpy array; got {} (pass cast=True to convert it, one copy)",
            x.get_type().name()?
        ))),
    }
}

/// A new `[rows, cols]` float32 array for an output the engine overwrites entirely.
pub(crate) fn output_f32(py: Python<'_>, rows: usize, cols: usize) -> Bound<'_, PyArray2<f32>> {
    // SAFETY: every bit pattern is a valid f32, so the uninitialised array is sound to hand out;
    // the caller fills it (predict writes every element) or drops it on error.
    unsafe { PyArray2::<f32>::new(py, [rows, cols], false) }
}

/// Checks a caller's `out=` array: float32, `[rows, cols]`.
pub(crate) fn check_out<'py>(
    out: &Bound<'py, PyAny>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let array = out
        .cast::<PyArray2<f32>>()
        .map_err(|_| PyTypeError::new_err("out= must be a 2-D float32 numpy array"))?;
    if array.shape() != [rows, cols] {
        return Err(PyValueError::new_err(format!(
            "out= has shape ({}, {}); expected ({rows}, {cols})",
            array.shape()[0],
            array.shape()[1]
        )));
    }
    Ok(array.clone())
}
