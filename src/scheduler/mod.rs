//! The batching scheduler: many callers send single samples (or a few rows) for several models;
//! each model's worker forms batches, runs them on the shared rayon pool, and answers every
//! caller exactly once.
//!
//! This module owns the [`Scheduler`] and its [`SchedulerConfig`]; its parts live in the
//! submodules, each saying what it owns. Imports run one way: registry → worker → instance →
//! config/metrics/request/state, never back.

mod budget;
mod config;
mod error;
mod instance;
mod metrics;
mod policy;
mod registry;
mod request;
mod spin;
mod state;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use ndarray::{Array2, ArrayView2};
use rayon::ThreadPool;

#[doc(hidden)]
pub use budget::CpuLimits;
pub use budget::ThreadBudget;
use config::ThreadStart;
pub use config::{BatchPolicy, ModelConfig, SchedulerThread};
pub use error::{SchedulerError, ServeError};
pub use instance::ModelStatus;
pub use metrics::{
    BatchRecord, CloseReason, Counters, HistogramSnapshot, LatencySummary, MetricsSnapshot,
    ModelSnapshot, SizeHistogramSnapshot,
};
pub use request::{Reply, ReplyFuture, ReplyHandle, Request, RequestError, SubmitError};
pub use state::ModelState;

use crate::Predictor;
use instance::ModelHandle;
use metrics::{ModelHistograms, bump};
use registry::{Registry, Unavailable};
use request::{Pending, Responder};
use worker::WorkerContext;

/// Scheduler-wide settings: the compute threads and where batch records go.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    limits: Option<CpuLimits>,
    threads: Option<usize>,
    pool: Option<Arc<ThreadPool>>,
    record_ring: usize,
    record_sink: Option<Sender<BatchRecord>>,
    inline_small_batches: bool,
    thread_start: Option<ThreadStart>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            limits: None,
            threads: None,
            pool: None,
            record_ring: 1024,
            record_sink: None,
            // On by default: it removes two of the four thread hand-offs a small batch costs
            // (measured 2.5–4× less added latency per request); the budget report says so.
            inline_small_batches: true,
            thread_start: None,
        }
    }
}

impl SchedulerConfig {
    /// Sets the number of compute threads: the size of the pool every model's batches run on.
    /// Default: one per CPU this process may use (the smaller of its affinity mask and its
    /// cgroup quota, never the host's core count; see [`ThreadBudget`]).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Runs batches on this pool, shared with the rest of the program, instead of building one;
    /// its size becomes the compute threads (overriding [`SchedulerConfig::threads`]).
    pub fn pool(mut self, pool: Arc<ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Uses these CPU limits instead of reading them from the system: for tests.
    #[doc(hidden)]
    pub fn cpu_limits(mut self, limits: CpuLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Lets each model's worker run batches too small to fork (one task) itself rather than
    /// on the pool (the default): two thread hand-offs fewer per small batch, at the price of up to one extra
    /// computing thread per busy model beyond the pool (reported in the [`ThreadBudget`]).
    pub fn inline_small_batches(mut self, inline: bool) -> Self {
        self.inline_small_batches = inline;
        self
    }

    /// Keeps the last `records` batch records per model (default 1024; 0 keeps none).
    pub fn record_ring(mut self, records: usize) -> Self {
        self.record_ring = records;
        self
    }

    /// Streams every batch record to `sink` (never blocking: a full channel drops the record
    /// and counts it in [`crate::Counters::records_dropped`]).
    pub fn record_sink(mut self, sink: Sender<BatchRecord>) -> Self {
        self.record_sink = Some(sink);
        self
    }

    /// Calls `start` first thing on every thread the scheduler starts, on that thread: each
    /// thread of the pool it builds (not of a pool given with [`SchedulerConfig::pool`]: build
    /// that one with rayon's `start_handler`) and each model's worker, which forms the batches
    /// and runs the small ones itself. The place to pin them to CPUs (`sched_setaffinity`), set
    /// their priority, or note their thread ids for per-thread accounting, as rayon's
    /// `start_handler` does for a pool.
    ///
    /// `start` must not panic: a panic on a worker fails that model's load as
    /// [`SchedulerError::WarmupPanicked`], and on a pool thread it is rayon's to handle.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use densebatch::prelude::*;
    /// use densebatch::{ModelConfig, Scheduler, SchedulerConfig, SchedulerThread};
    ///
    /// let started = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&started);
    /// let config = SchedulerConfig::default().threads(1).on_thread_start(move |thread| {
    ///     // e.g. pin `thread` here; this one notes which thread it was and where it ran.
    ///     let name = std::thread::current().name().map(str::to_string);
    ///     log.lock().unwrap().push((thread.clone(), name));
    /// });
    /// let scheduler = Scheduler::new(config)?;
    /// let model = Model::random(&[4, 8, 2], Activation::Relu, Activation::Softmax, 1).compile()?;
    /// scheduler.load("a", Arc::new(model), ModelConfig::default())?;
    /// // `load` returns once the worker has warmed up, so its start was seen.
    /// let worker = SchedulerThread::Worker { model: "a".to_string() };
    /// let name = Some("densebatch-a".to_string());
    /// assert!(started.lock().unwrap().contains(&(worker, name)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_thread_start(
        mut self,
        start: impl Fn(&SchedulerThread) + Send + Sync + 'static,
    ) -> Self {
        self.thread_start = Some(ThreadStart(Arc::new(start)));
        self
    }
}

/// The batching scheduler: many callers send single samples (or a few rows) for several models;
/// each model's worker forms batches, runs them on the shared rayon pool, and answers every
/// caller exactly once.
///
/// - **Isolation.** Each model has its own bounded queue and worker thread. A full queue refuses
///   at once ([`SubmitError::QueueFull`] hands the request back); a panic in a model is caught at
///   its worker, that batch's requests get [`RequestError::ModelPanicked`], the worker restarts
///   with fresh buffers and the model is marked [`ModelState::Degraded`]; other models never see
///   it.
/// - **Batching.** A batch closes when full, when its oldest request has waited `max_wait`, when
///   waiting longer would miss a request's deadline given the compute time measured for that
///   batch size (at warmup, then refreshed by every batch), or when the model drains.
/// - **Validation first.** The model's own check ([`crate::Predictor::check_input`]: width, and
///   NaN/Inf as the model's policy says) and the row count run on the caller's thread; a bad
///   request is refused alone. If a batch fails anyway, it is rerun request by request so only
///   the failing ones get the error.
/// - **Exactly one reply.** A request's reply end answers by itself if it is ever dropped
///   unanswered; queues close only when no submitter holds them, and workers exit only when
///   their queue is closed and empty, so shutdown, unload and replace lose nothing.
/// - **Threads.** One knob, [`SchedulerConfig::threads`]; by default one compute thread per CPU
///   of the [`ThreadBudget`], sized from the affinity mask and cgroup quota, never the host's
///   core count. Kernels run on one shared pool of that size (or on a pool you share,
///   [`SchedulerConfig::pool`]).
/// - **Records.** Every batch yields a [`BatchRecord`] (close reason, waits, compute, scatter,
///   scratch and allocated bytes) kept in a ring, folded into HDR histograms, and optionally
///   streamed to a channel; [`Scheduler::metrics`] snapshots them (latency quantiles as
///   [`Duration`]s) and [`MetricsSnapshot::to_prometheus`] renders them.
///
/// Serving in a few lines: [`Scheduler::predict`] blocks until the reply, and its one error type,
/// [`ServeError`], covers everything that can go wrong. [`Scheduler::submit`],
/// [`Scheduler::try_submit`] and [`Scheduler::submit_timeout`] return a [`ReplyHandle`] to wait
/// on or `.await`.
///
/// ```
/// use std::sync::Arc;
/// use densebatch::prelude::*;
/// use densebatch::{ModelConfig, Scheduler, SchedulerConfig};
///
/// let a = Arc::new(Model::random(&[4, 8, 2], Activation::Relu, Activation::Softmax, 1).compile()?);
/// let b = Arc::new(Model::random(&[4, 16, 3], Activation::Relu, Activation::Softmax, 2).compile()?);
/// let scheduler = Scheduler::new(SchedulerConfig::default().threads(2))?;
/// scheduler.load("a", a.clone(), ModelConfig::default().max_batch_size(8))?;
/// scheduler.load("b", b.clone(), ModelConfig::default())?;
///
/// let x = ndarray::arr2(&[[0.5, -1.0, 2.0, 0.25]]);
/// let y = scheduler.predict("a", x.view())?;
/// assert_eq!(y, a.predict(x.view())?); // the same bits as running the model directly
/// assert_eq!(scheduler.predict("b", x.view())?.dim(), (1, 3));
///
/// let p99 = scheduler.metrics().model("a").unwrap().request_latency.p99();
/// assert!(p99 > std::time::Duration::ZERO);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropping it shuts it down as [`Scheduler::shutdown`] does.
#[derive(Debug)]
pub struct Scheduler {
    registry: Registry,
    budget: ThreadBudget,
}

impl Scheduler {
    /// Sizes the thread budget (discovering CPU limits) and builds the pool, unless given one.
    ///
    /// # Errors
    /// [`SchedulerError::InvalidConfig`] for zero threads, [`SchedulerError::Pool`] if the
    /// pool cannot be built.
    pub fn new(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        if config.threads == Some(0) {
            return Err(SchedulerError::InvalidConfig {
                field: "threads",
                reason: "must be at least 1",
            });
        }
        let limits = config.limits.unwrap_or_else(CpuLimits::discover);
        let threads = config
            .pool
            .as_ref()
            .map(|p| p.current_num_threads())
            .or(config.threads);
        let mut budget = ThreadBudget::new(limits, threads);
        budget.inline_small_batches = config.inline_small_batches;
        let pool = match config.pool {
            Some(pool) => pool,
            None => {
                let mut builder = rayon::ThreadPoolBuilder::new()
                    .num_threads(budget.pool_threads)
                    .thread_name(|i| format!("densebatch-pool-{i}"));
                if let Some(start) = config.thread_start.clone() {
                    builder = builder
                        .start_handler(move |index| start.call(&SchedulerThread::Pool { index }));
                }
                Arc::new(builder.build().map_err(SchedulerError::Pool)?)
            }
        };
        let context = WorkerContext {
            pool,
            record_sink: config.record_sink,
            inline_small_batches: config.inline_small_batches,
            spin_allowed: budget.cpus() > 1,
            thread_start: config.thread_start,
        };
        Ok(Scheduler {
            registry: Registry::new(context, config.record_ring),
            budget,
        })
    }

    /// The thread budget in force (print it at start: it implements `Display`).
    pub fn budget(&self) -> &ThreadBudget {
        &self.budget
    }

    /// Loads `predictor` as `name`: starts its worker, runs every batch size up to
    /// `max_batch_size` (above 64: the powers of two and the largest) as warmup, and returns
    /// once it serves.
    ///
    /// # Errors
    /// [`SchedulerError::AlreadyLoaded`], [`SchedulerError::InvalidConfig`],
    /// [`SchedulerError::Warmup`]/[`SchedulerError::WarmupPanicked`],
    /// [`SchedulerError::ShuttingDown`].
    pub fn load(
        &self,
        name: &str,
        predictor: Arc<dyn Predictor>,
        config: ModelConfig,
    ) -> Result<(), SchedulerError> {
        self.registry.install(name, predictor, config, false)
    }

    /// Replaces the model `name`: the new one warms up while the old one serves, then takes
    /// all new traffic; the old one finishes what it accepted before this returns.
    ///
    /// # Errors
    /// As [`Scheduler::load`], and [`SchedulerError::UnknownModel`].
    pub fn replace(
        &self,
        name: &str,
        predictor: Arc<dyn Predictor>,
        config: ModelConfig,
    ) -> Result<(), SchedulerError> {
        self.registry.install(name, predictor, config, true)
    }

    /// Unloads `name` after it has answered everything it accepted.
    ///
    /// # Errors
    /// [`SchedulerError::UnknownModel`].
    pub fn unload(&self, name: &str) -> Result<(), SchedulerError> {
        self.registry.unload(name)
    }

    /// Every model with its state (warming, ready, degraded, draining) and queue depth.
    pub fn models(&self) -> Vec<ModelStatus> {
        self.registry
            .instances()
            .into_iter()
            .map(|(shared, depth)| shared.status(depth))
            .collect()
    }

    /// Submits without blocking.
    ///
    /// # Errors
    /// [`SubmitError::QueueFull`] when the model's queue is full, and the other
    /// [`SubmitError`]s; each hands the request back.
    pub fn try_submit(&self, model: &str, request: Request) -> Result<ReplyHandle, SubmitError> {
        self.submit_with(model, request, Wait::No)
    }

    /// Runs `x` (`[rows, input_width]`, 1 to `max_batch_size` rows) through the model `model`
    /// and waits for its output: copies `x` into a [`Request`], submits it (waiting for room
    /// while the queue is full) and waits for the reply. The output is bit-identical to running
    /// the model on `x` directly, whatever batch it joined.
    ///
    /// # Errors
    /// Every [`ServeError`]: the model is unknown, the request invalid, the scheduler shutting
    /// down, or the model failed or panicked on it.
    pub fn predict(&self, model: &str, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, ServeError> {
        let reply = self.submit(model, Request::new(x.to_owned()))?;
        Ok(reply.wait()?)
    }

    /// Submits, waiting for room while the model's queue is full.
    ///
    /// # Errors
    /// The [`SubmitError`]s other than `QueueFull` and `Timeout`; each hands the request back.
    pub fn submit(&self, model: &str, request: Request) -> Result<ReplyHandle, SubmitError> {
        self.submit_with(model, request, Wait::Forever)
    }

    /// Submits, waiting up to `timeout` for room in a full queue.
    ///
    /// # Errors
    /// [`SubmitError::Timeout`] if the queue stayed full, and the other [`SubmitError`]s; each
    /// hands the request back.
    pub fn submit_timeout(
        &self,
        model: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<ReplyHandle, SubmitError> {
        self.submit_with(model, request, Wait::Up(timeout))
    }

    fn submit_with(
        &self,
        model: &str,
        request: Request,
        wait: Wait,
    ) -> Result<ReplyHandle, SubmitError> {
        let handle = match self.registry.handle(model) {
            Ok(h) => h,
            Err(Unavailable::ShuttingDown) => return Err(SubmitError::ShuttingDown(request)),
            Err(Unavailable::Unknown) => {
                return Err(SubmitError::UnknownModel {
                    name: model.to_string(),
                    request,
                });
            }
        };
        let request = validate(&handle, request).inspect_err(|_| {
            bump(&handle.shared.counters.rejected_invalid, 1);
        })?;
        let (responder, reply) = Responder::pair(handle.shared.config.reply_spin);
        let pending = Pending {
            request,
            submitted: Instant::now(),
            responder,
        };
        let counters = &handle.shared.counters;
        let refused = match wait {
            Wait::No => match handle.queue.try_send(pending) {
                Ok(()) => None,
                Err(TrySendError::Full(p)) => {
                    bump(&counters.rejected_full, 1);
                    Some((p, SubmitError::QueueFull as fn(Request) -> SubmitError))
                }
                Err(TrySendError::Disconnected(p)) => Some((p, SubmitError::ShuttingDown as _)),
            },
            Wait::Forever => match handle.queue.send(pending) {
                Ok(()) => None,
                Err(e) => Some((e.into_inner(), SubmitError::ShuttingDown as _)),
            },
            Wait::Up(t) => match handle.queue.send_timeout(pending, t) {
                Ok(()) => None,
                Err(SendTimeoutError::Timeout(p)) => {
                    bump(&counters.rejected_timeout, 1);
                    Some((p, SubmitError::Timeout as _))
                }
                Err(SendTimeoutError::Disconnected(p)) => Some((p, SubmitError::ShuttingDown as _)),
            },
        };
        match refused {
            None => {
                bump(&counters.accepted, 1);
                Ok(reply)
            }
            Some((pending, error)) => {
                let Pending {
                    request, responder, ..
                } = pending;
                responder.disarm();
                Err(error(request))
            }
        }
    }

    /// A snapshot of every model's counters, histograms and recent batch records.
    pub fn metrics(&self) -> MetricsSnapshot {
        let models = self
            .registry
            .instances()
            .into_iter()
            .map(|(shared, queue_depth)| {
                let h = shared.histograms.lock().unwrap_or_else(|e| e.into_inner());
                ModelSnapshot {
                    name: shared.name.to_string(),
                    generation: shared.generation,
                    state: shared.state(),
                    queue_depth,
                    queue_capacity: shared.config.queue_capacity,
                    max_batch_size: shared.config.batch.max_batch_size,
                    counters: shared.counters.read(),
                    request_latency: ModelHistograms::time(&h.request_latency),
                    queue_wait: ModelHistograms::time(&h.queue_wait),
                    compute: ModelHistograms::time(&h.compute),
                    batch_rows: ModelHistograms::size(&h.batch_rows),
                    batch_alloc_bytes: ModelHistograms::size(&h.batch_alloc_bytes),
                    recent: h.recent(),
                    warmup: shared
                        .warmup
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                }
            })
            .collect();
        MetricsSnapshot {
            budget: self.budget,
            models,
        }
    }

    /// Stops accepting, answers every accepted request, and joins every worker thread.
    /// Idempotent; submits racing with it are either accepted (and answered) or refused with
    /// [`SubmitError::ShuttingDown`].
    pub fn shutdown(&self) {
        self.registry.shutdown();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.registry.shutdown();
    }
}

/// How long a submit waits for room in a full queue.
#[derive(Debug, Clone, Copy)]
enum Wait {
    No,
    Up(Duration),
    Forever,
}

/// Checks a request against the model before it can join a batch, so a bad one is refused
/// alone and never reaches (or poisons) a batch: the model's own check (width, and NaN/Inf as
/// its policy says, with its vectorised scan), then the row count.
fn validate(handle: &ModelHandle, request: Request) -> Result<Request, SubmitError> {
    if let Err(error) = handle.predictor.check_input(request.input().view()) {
        return Err(SubmitError::Invalid {
            error: Box::new(error),
            request,
        });
    }
    let rows = request.rows();
    let max_batch_size = handle.shared.config.batch.max_batch_size;
    if rows == 0 || rows > max_batch_size {
        return Err(SubmitError::RowCount {
            rows,
            max_batch_size,
            request,
        });
    }
    Ok(request)
}
