//! Engine errors as the package's Python exceptions (defined in `densebatch/_errors.py`: under
//! the stable ABI before 3.12 a native class cannot subclass built-in exceptions).

use densebatch::{Error, RequestError, SchedulerError, SubmitError};
use numpy::IntoPyArray;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// An instance of `densebatch._errors.<class>` built from `args`, with `attrs` set on it.
pub(crate) fn exception<'py>(
    py: Python<'py>,
    class: &str,
    message: String,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("densebatch._errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        for (k, v) in attrs {
            kwargs.set_item(k, v)?;
        }
        Ok(PyErr::from_value(
            class.call((message.clone(),), Some(&kwargs))?,
        ))
    };
    build().unwrap_or_else(|e| e)
}

/// An engine error from loading, compiling or predicting.
pub(crate) fn engine(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Io { .. } => PyOSError::new_err(message),
        Error::NonFiniteInput { row, col, .. } => exception(
            py,
            "InvalidInput",
            message,
            &[
                ("row", row.into_pyobject(py).unwrap().into_any()),
                ("col", col.into_pyobject(py).unwrap().into_any()),
            ],
        ),
        Error::InputWidth { .. } | Error::InputRank { .. } | Error::OutputShape { .. } => {
            exception(py, "InvalidInput", message, &[])
        }
        Error::ThreadPool { .. } => exception(py, "DensebatchError", message, &[]),
        Error::UnsupportedKernel { .. } | Error::PrecisionLimit { .. } => {
            PyValueError::new_err(message)
        }
        _ => exception(py, "LoadError", message, &[]),
    }
}

/// A refused submit: the exception carries the request's array back as `.request`.
pub(crate) fn submit(py: Python<'_>, error: SubmitError) -> PyErr {
    let message = error.to_string();
    let class = match &error {
        SubmitError::QueueFull(_) => "QueueFull",
        SubmitError::Timeout(_) => "SubmitTimeout",
        SubmitError::ShuttingDown(_) => "ShuttingDown",
        SubmitError::UnknownModel { .. } => "UnknownModel",
        SubmitError::Invalid { .. } | SubmitError::RowCount { .. } => "InvalidRequest",
        _ => "SubmitRejected",
    };
    let request = error
        .into_request()
        .into_input()
        .into_pyarray(py)
        .into_any();
    exception(py, class, message, &[("request", request)])
}

/// Why an accepted request has no result.
pub(crate) fn request(py: Python<'_>, error: RequestError) -> PyErr {
    let message = error.to_string();
    let class = match &error {
        RequestError::DeadlineExceeded => "DeadlineExceeded",
        RequestError::Model(_) => "ModelFailed",
        RequestError::ModelPanicked => "ModelPanicked",
        _ => "RequestDropped",
    };
    exception(py, class, message, &[])
}

/// A failed load, replace or unload.
pub(crate) fn scheduler(py: Python<'_>, error: SchedulerError) -> PyErr {
    let message = error.to_string();
    let class = match &error {
        SchedulerError::UnknownModel(_) => "UnknownModel",
        SchedulerError::InvalidConfig { .. } => "InvalidConfig",
        SchedulerError::ShuttingDown => "ShuttingDown",
        _ => "SchedulerError",
    };
    exception(py, class, message, &[])
}
