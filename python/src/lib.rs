//! `densebatch._densebatch`: the native half of the `densebatch` Python package. It binds the
//! engine's public API only (models, sessions, the scheduler); the Python half in
//! `pysrc/densebatch` adds the exceptions, `submit_async`, `batch_inference` and the Ray helpers.
//!
//! Every compute runs with the interpreter detached (the GIL released), reading numpy's buffer in
//! place and writing straight into the returned array.

mod arrays;
mod completer;
mod errors;
mod model;
mod records;
mod scheduler;
mod threads;

use pyo3::prelude::*;

/// Counts the extension's own allocations, so the scheduler's per-batch records report real
/// bytes (numpy's and Python's allocations are not seen).
#[global_allocator]
static ALLOCATOR: densebatch::CountingAllocator = densebatch::CountingAllocator::system();

#[pymodule(gil_used = false)]
fn _densebatch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::PyModel>()?;
    m.add_class::<model::PyCompiledModel>()?;
    m.add_class::<scheduler::PyScheduler>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(threads::default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(model::supported_kernels, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
