//! Metrics and per-batch records as plain Python dicts (seconds as floats, sizes as ints).

use densebatch::{
    BatchRecord, Counters, HistogramSnapshot, MetricsSnapshot, ModelState, SizeHistogramSnapshot,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pub(crate) fn state_name(state: ModelState) -> &'static str {
    state.name()
}

pub(crate) fn batch_record<'py>(py: Python<'py>, r: &BatchRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("model", &*r.model)?;
    d.set_item("sequence", r.sequence)?;
    d.set_item("rows", r.rows)?;
    d.set_item("requests", r.requests)?;
    d.set_item("expired", r.expired)?;
    d.set_item("cancelled", r.cancelled)?;
    d.set_item("failed", r.failed)?;
    d.set_item("close_reason", r.close_reason.name())?;
    d.set_item("oldest_wait_s", r.oldest_wait.as_secs_f64())?;
    d.set_item("newest_wait_s", r.newest_wait.as_secs_f64())?;
    d.set_item("form_s", r.form_time.as_secs_f64())?;
    d.set_item("compute_s", r.compute_time.as_secs_f64())?;
    d.set_item("scatter_s", r.scatter_time.as_secs_f64())?;
    d.set_item("service_s", r.service_time().as_secs_f64())?;
    d.set_item("scratch_bytes", r.scratch_bytes)?;
    d.set_item("alloc_bytes", r.alloc_bytes)?;
    d.set_item("alloc_count", r.alloc_count)?;
    d.set_item("alloc_peak_bytes", r.alloc_peak_bytes)?;
    d.set_item("alloc_counted", r.alloc_counted)?;
    Ok(d)
}

fn latency<'py>(py: Python<'py>, h: &HistogramSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", h.count())?;
    d.set_item("mean_s", h.mean().as_secs_f64())?;
    for (key, q) in [
        ("p50_s", 0.5),
        ("p90_s", 0.9),
        ("p99_s", 0.99),
        ("p999_s", 0.999),
    ] {
        d.set_item(key, h.quantile(q).as_secs_f64())?;
    }
    d.set_item("max_s", h.max().as_secs_f64())?;
    Ok(d)
}

fn sizes<'py>(py: Python<'py>, h: &SizeHistogramSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("count", h.count())?;
    d.set_item("mean", h.mean())?;
    for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        d.set_item(key, h.quantile(q))?;
    }
    d.set_item("max", h.max())?;
    Ok(d)
}

fn counters<'py>(py: Python<'py>, c: &Counters) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("accepted", c.accepted)?;
    d.set_item("rejected_full", c.rejected_full)?;
    d.set_item("rejected_timeout", c.rejected_timeout)?;
    d.set_item("rejected_invalid", c.rejected_invalid)?;
    d.set_item("completed", c.completed)?;
    d.set_item("failed", c.failed)?;
    d.set_item("expired", c.expired)?;
    d.set_item("cancelled", c.cancelled)?;
    d.set_item("panicked", c.panicked)?;
    d.set_item("worker_restarts", c.worker_restarts)?;
    d.set_item("batches", c.batches)?;
    d.set_item("records_dropped", c.records_dropped)?;
    let closes = PyDict::new(py);
    for reason in densebatch::CloseReason::ALL {
        closes.set_item(reason.name(), c.closes(reason))?;
    }
    d.set_item("closes", closes)?;
    Ok(d)
}

pub(crate) fn metrics<'py>(py: Python<'py>, m: &MetricsSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let budget = PyDict::new(py);
    budget.set_item("cpus", m.budget.cpus())?;
    budget.set_item("affinity", m.budget.affinity())?;
    budget.set_item("quota", m.budget.quota())?;
    budget.set_item("pool_threads", m.budget.pool_threads())?;
    budget.set_item("workers_per_model", m.budget.workers_per_model())?;
    budget.set_item("text", m.budget.to_string())?;
    let models = PyDict::new(py);
    for s in &m.models {
        let d = PyDict::new(py);
        d.set_item("generation", s.generation)?;
        d.set_item("state", s.state.name())?;
        d.set_item("queue_depth", s.queue_depth)?;
        d.set_item("queue_capacity", s.queue_capacity)?;
        d.set_item("max_batch_size", s.max_batch_size)?;
        d.set_item("counters", counters(py, &s.counters)?)?;
        d.set_item("request_latency", latency(py, &s.request_latency)?)?;
        d.set_item("queue_wait", latency(py, &s.queue_wait)?)?;
        d.set_item("compute", latency(py, &s.compute)?)?;
        d.set_item("batch_rows", sizes(py, &s.batch_rows)?)?;
        d.set_item("batch_alloc_bytes", sizes(py, &s.batch_alloc_bytes)?)?;
        let peak = s.recent.iter().map(|r| r.scratch_bytes).max().unwrap_or(0);
        d.set_item("peak_scratch_bytes", peak)?;
        models.set_item(&s.name, d)?;
    }
    let d = PyDict::new(py);
    d.set_item("budget", budget)?;
    d.set_item("models", models)?;
    Ok(d)
}
