//! `Scheduler`: the engine's batching scheduler, with `concurrent.futures.Future` replies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use densebatch::{ModelConfig, Request, Scheduler, SchedulerConfig};
use numpy::PyArrayMethods;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::input_f32;
use crate::completer::{self, CancelSender, Completer};
use crate::errors;
use crate::model::PyCompiledModel;
use crate::records;

/// Batches requests for loaded models on its own compute pool; `submit` returns a
/// `concurrent.futures.Future`. Its threads never take the GIL.
#[pyclass(
    frozen,
    subclass,
    name = "Scheduler",
    module = "densebatch._densebatch"
)]
pub(crate) struct PyScheduler {
    inner: Scheduler,
    completer: Completer,
    next_id: AtomicU64,
    future_class: Py<PyAny>,
    /// The process that started the scheduler's threads; a forked child has none of them.
    pid: u32,
}

#[pymethods]
impl PyScheduler {
    /// `threads`: the shared compute pool's size (None: the CPUs this process may use).
    /// `record_ring`: per-batch records kept per model for `records()`.
    #[new]
    #[pyo3(signature = (*, threads = None, record_ring = 1024))]
    fn new(py: Python<'_>, threads: Option<usize>, record_ring: usize) -> PyResult<Self> {
        let mut config = SchedulerConfig::default().record_ring(record_ring);
        if let Some(threads) = threads {
            config = config.threads(threads);
        }
        let inner = Scheduler::new(config).map_err(|e| errors::scheduler(py, e))?;
        let completer = Completer::start()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
        let future_class = py.import("concurrent.futures")?.getattr("Future")?.unbind();
        Ok(PyScheduler {
            inner,
            completer,
            next_id: AtomicU64::new(0),
            future_class,
            pid: std::process::id(),
        })
    }

    /// Loads `model` as `name` (warms it up first: returns once it serves).
    // The keyword arguments are Python's way to configure; a struct would not read better there.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, model, *, max_batch_size = 32, max_wait_s = 0.001,
        queue_capacity = 1024, warmup_rounds = 1))]
    fn load(
        &self,
        py: Python<'_>,
        name: &str,
        model: &PyCompiledModel,
        max_batch_size: usize,
        max_wait_s: f64,
        queue_capacity: usize,
        warmup_rounds: usize,
    ) -> PyResult<()> {
        self.check_process()?;
        let config = model_config(max_batch_size, max_wait_s, queue_capacity, warmup_rounds)?;
        let predictor = model.compiled();
        py.detach(|| self.inner.load(name, predictor, config))
            .map_err(|e| errors::scheduler(py, e))
    }

    /// Replaces `name`: the new model warms up while the old one serves, then takes all new
    /// requests; the old one answers what it accepted.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (name, model, *, max_batch_size = 32, max_wait_s = 0.001,
        queue_capacity = 1024, warmup_rounds = 1))]
    fn replace(
        &self,
        py: Python<'_>,
        name: &str,
        model: &PyCompiledModel,
        max_batch_size: usize,
        max_wait_s: f64,
        queue_capacity: usize,
        warmup_rounds: usize,
    ) -> PyResult<()> {
        self.check_process()?;
        let config = model_config(max_batch_size, max_wait_s, queue_capacity, warmup_rounds)?;
        let predictor = model.compiled();
        py.detach(|| self.inner.replace(name, predictor, config))
            .map_err(|e| errors::scheduler(py, e))
    }

    /// Unloads `name` once it has answered everything it accepted.
    fn unload(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.inner.unload(name))
            .map_err(|e| errors::scheduler(py, e))
    }

    /// Every model: name, generation, state, queue depth and configuration.
    fn models<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let metrics = self.inner.metrics();
        let list = PyList::empty(py);
        for m in &metrics.models {
            let d = PyDict::new(py);
            d.set_item("name", &m.name)?;
            d.set_item("generation", m.generation)?;
            d.set_item("state", records::state_name(m.state))?;
            d.set_item("queue_depth", m.queue_depth)?;
            d.set_item("queue_capacity", m.queue_capacity)?;
            d.set_item("max_batch_size", m.max_batch_size)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Submits `x` (`[rows, input_width]` float32, 1 to `max_batch_size` rows; copied once) to
    /// `name` and returns a `concurrent.futures.Future` of its output. Never blocks: a full queue
    /// raises `QueueFull` at once, with the array on `e.request`. `timeout_s` is a deadline: a
    /// request still queued then is not computed and its future raises `DeadlineExceeded`.
    /// Cancelling the future before compute drops the request.
    #[pyo3(signature = (name, x, *, timeout_s = None))]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        x: &Bound<'py, PyAny>,
        timeout_s: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_process()?;
        let x = input_f32(x, false)?;
        let mut request = Request::new(x.try_readonly()?.as_array().to_owned());
        if let Some(t) = timeout_s {
            request = request.with_timeout(seconds("timeout_s", t)?);
        }
        let handle = self
            .inner
            .try_submit(name, request)
            .map_err(|e| errors::submit(py, e))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let future = self.future_class.bind(py).call0()?;
        if let Err((handle, unbound)) = self.completer.add(id, handle, future.clone().unbind()) {
            // Accepted just before a shutdown finished: the reply is there already.
            let reply = py.detach(|| handle.wait());
            completer::deliver(&mut vec![(unbound, reply)]);
            return Ok(future);
        }
        let canceller = Canceller {
            sender: self.completer.canceller(),
            id,
        };
        future.call_method1("add_done_callback", (canceller,))?;
        Ok(future)
    }

    /// The recent per-batch records of `name`, oldest first, as dicts.
    fn records<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        let metrics = self.inner.metrics();
        let Some(model) = metrics.model(name) else {
            return Err(errors::exception(
                py,
                "UnknownModel",
                format!("no model named `{name}`"),
                &[],
            ));
        };
        let list = PyList::empty(py);
        for record in &model.recent {
            list.append(records::batch_record(py, record)?)?;
        }
        Ok(list)
    }

    /// The thread budget and, per model, counters and latency/size quantiles, as a dict.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        records::metrics(py, &self.inner.metrics())
    }

    /// Every metric in the Prometheus text format.
    fn prometheus(&self) -> String {
        self.inner.metrics().to_prometheus()
    }

    /// Stops accepting, answers every accepted request (each future ends exactly once) and
    /// stops the scheduler's threads. Idempotent.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| {
            self.inner.shutdown();
            self.completer.stop();
        });
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) {
        self.shutdown(py);
    }
}

impl PyScheduler {
    fn check_process(&self) -> PyResult<()> {
        if std::process::id() == self.pid {
            return Ok(());
        }
        Err(PyRuntimeError::new_err(
            "this Scheduler was created before a fork and its threads stayed in the parent; \
             create a Scheduler in the child process",
        ))
    }
}

impl Drop for PyScheduler {
    fn drop(&mut self) {
        // Dropped from the garbage collector with the interpreter attached: the completer may be
        // waiting to attach, so do not join it here. The scheduler's own drop answers every
        // accepted request (its workers never need the interpreter); the completer then delivers
        // and exits.
        self.completer.stop_later();
    }
}

/// The done-callback of a submitted future: tells the completer a cancelled future's request
/// is no longer wanted.
#[pyclass(frozen, module = "densebatch._densebatch")]
struct Canceller {
    sender: CancelSender,
    id: u64,
}

#[pymethods]
impl Canceller {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.extract::<bool>()? {
            self.sender.cancel(self.id);
        }
        Ok(())
    }
}

fn model_config(
    max_batch_size: usize,
    max_wait_s: f64,
    queue_capacity: usize,
    warmup_rounds: usize,
) -> PyResult<ModelConfig> {
    Ok(ModelConfig::default()
        .max_batch_size(max_batch_size)
        .max_wait(seconds("max_wait_s", max_wait_s)?)
        .queue_capacity(queue_capacity)
        .warmup_rounds(warmup_rounds))
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a finite number of seconds ≥ 0; got {value}"
        ))
    })
}
