//! How many threads a model computes on when the caller does not say.

use pyo3::prelude::*;

/// The default thread count and where it came from: `DENSEBATCH_NUM_THREADS`, else
/// `OMP_NUM_THREADS` (Ray sets it to an actor's CPUs), else the CPUs this process may use (its
/// affinity mask and cgroup quota).
pub(crate) fn resolve() -> (usize, &'static str) {
    for var in ["DENSEBATCH_NUM_THREADS", "OMP_NUM_THREADS"] {
        if let Some(n) = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
        {
            return (n, var);
        }
    }
    (densebatch::CpuLimits::discover().cpus(), "cpu budget")
}

/// `default_threads() -> (threads, source)`: the thread count `load(..., threads=None)` uses.
#[pyfunction]
pub(crate) fn default_threads() -> (usize, &'static str) {
    resolve()
}
