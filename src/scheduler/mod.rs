//! The batching scheduler: many callers send single samples (or a few rows) for several models;
//! each model's worker forms batches, runs them on the shared rayon pool, and answers every
//! caller exactly once.
//!
//! - **Isolation.** Each model has its own bounded queue and worker thread. A full queue refuses
//!   at once ([`SubmitError::QueueFull`] hands the request back); a panic in a model is caught at
//!   its worker, that batch's requests get [`RequestError::ModelPanicked`], the worker restarts
//!   with fresh buffers and the model is marked [`ModelState::Degraded`]; other models never see
//!   it.
//! - **Batching.** A batch closes when full, when its oldest request has waited `max_wait`, when
//!   waiting longer would miss a request's deadline given the compute time measured for that
//!   batch size (at warmup, then refreshed by every batch), or when the model drains.
//! - **Validation first.** Width, row count and NaN/Inf are checked on the caller's thread; a bad
//!   request is refused alone. If a batch fails anyway, it is rerun request by request so only
//!   the failing ones get the error.
//! - **Exactly one reply.** A request's reply end answers by itself if it is ever dropped
//!   unanswered; queues close only when no submitter holds them, and workers exit only when
//!   their queue is closed and empty, so shutdown, unload and replace lose nothing.
//! - **Threads.** One [`ThreadBudget`] per scheduler, sized from the affinity mask and cgroup
//!   quota, never the host's core count. Kernels run on one shared pool of that size.
//! - **Records.** Every batch yields a [`crate::BatchRecord`] (close reason, waits, compute,
//!   scatter, scratch and allocated bytes) kept in a ring, folded into HDR histograms, and
//!   optionally streamed to a channel; [`Scheduler::metrics`] snapshots them and
//!   [`crate::MetricsSnapshot::to_prometheus`] renders them.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use densebatch::prelude::*;
//! use densebatch::{ModelConfig, Request, Scheduler, SchedulerConfig};
//!
//! let model = Model::random(&[4, 8, 2], Activation::Relu, Activation::Identity, 7);
//! let compiled = Arc::new(model.compile(&CompileOptions::default())?);
//! let scheduler = Scheduler::new(SchedulerConfig::default().cpus(2)).unwrap();
//! let config = ModelConfig::default().max_batch_size(8).max_wait(Duration::from_micros(200));
//! scheduler.load("m", compiled.clone(), config).unwrap();
//!
//! let reply = scheduler.try_submit("m", Request::one(vec![0.5, -1.0, 2.0, 0.25])).unwrap();
//! let y = reply.wait().unwrap();
//! // The same bits as running the model directly.
//! let direct = compiled.predict(ndarray::arr2(&[[0.5, -1.0, 2.0, 0.25]]).view())?;
//! assert_eq!(y, direct);
//! scheduler.shutdown();
//! # Ok::<(), densebatch::Error>(())
//! ```

mod budget;
mod policy;
mod registry;
mod request;
mod spin;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use rayon::ThreadPool;

pub use budget::{CpuLimits, ThreadBudget};
pub use policy::BatchPolicy;
pub use registry::{ModelConfig, ModelState, ModelStatus};
pub use request::{Reply, ReplyFuture, ReplyHandle, Request, RequestError, SubmitError};

use crate::Predictor;
use crate::metrics::{BatchRecord, MetricsSnapshot, ModelHistograms, ModelSnapshot, bump};
use registry::{ModelHandle, Registry, Unavailable};
use request::{Pending, Responder};
use worker::WorkerContext;

/// Why a scheduler or model operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No model of that name is loaded.
    #[error("no model named `{0}`")]
    UnknownModel(String),
    /// A model of that name is already loaded (use `replace`).
    #[error("a model named `{0}` is already loaded")]
    AlreadyLoaded(String),
    /// The scheduler is shutting down.
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The model failed during warmup and was not loaded.
    #[error("model `{model}` failed warmup: {source}")]
    Warmup {
        /// The model's name.
        model: String,
        /// The model's error.
        source: Box<crate::Error>,
    },
    /// The model panicked during warmup and was not loaded.
    #[error("model `{0}` panicked during warmup")]
    WarmupPanicked(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Scheduler-wide settings: the thread budget and where batch records go.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    limits: Option<CpuLimits>,
    cpus: Option<usize>,
    pool_threads: Option<usize>,
    pool: Option<Arc<ThreadPool>>,
    record_ring: usize,
    record_sink: Option<Sender<BatchRecord>>,
    inline_small_batches: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            limits: None,
            cpus: None,
            pool_threads: None,
            pool: None,
            record_ring: 1024,
            record_sink: None,
            // On by default: it removes two of the four thread hand-offs a small batch costs
            // (measured 2.5–4× less added latency per request); the budget report says so.
            inline_small_batches: true,
        }
    }
}

impl SchedulerConfig {
    /// Uses these CPU limits instead of reading them from the system ([`CpuLimits::discover`]).
    pub fn cpu_limits(mut self, limits: CpuLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Sizes the budget for `cpus` CPUs whatever the system says.
    pub fn cpus(mut self, cpus: usize) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Sets the compute pool's size (default: the budget's CPU count).
    pub fn pool_threads(mut self, threads: usize) -> Self {
        self.pool_threads = Some(threads);
        self
    }

    /// Runs batches on this pool instead of building one (its size becomes the pool budget).
    pub fn pool(mut self, pool: Arc<ThreadPool>) -> Self {
        self.pool = Some(pool);
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
}

/// The batching scheduler. See the [module documentation](self).
///
/// Dropping it shuts it down as [`Scheduler::shutdown`] does.
#[derive(Debug)]
pub struct Scheduler {
    registry: Registry,
    budget: ThreadBudget,
}

impl Scheduler {
    /// Sizes the thread budget (discovering CPU limits unless configured) and builds the pool.
    ///
    /// # Errors
    /// [`SchedulerError::Spawn`] if the pool's threads cannot start.
    pub fn new(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        let limits = config.limits.unwrap_or_else(CpuLimits::discover);
        let mut budget = ThreadBudget::new(limits, config.cpus, config.pool_threads);
        budget.inline_small_batches = config.inline_small_batches;
        let pool = match config.pool {
            Some(pool) => {
                budget.pool_threads = pool.current_num_threads();
                pool
            }
            None => Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(budget.pool_threads)
                    .thread_name(|i| format!("densebatch-pool-{i}"))
                    .build()
                    .map_err(|e| SchedulerError::Spawn(std::io::Error::other(e)))?,
            ),
        };
        let context = WorkerContext {
            pool,
            record_sink: config.record_sink,
            inline_small_batches: config.inline_small_batches,
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
            .map(|(shared, depth)| Registry::status(&shared, depth))
            .collect()
    }

    /// Submits without blocking.
    ///
    /// # Errors
    /// [`SubmitError::QueueFull`] when the model's queue is full, and the other
    /// [`SubmitError`]s; each hands the request back.
    pub fn try_submit(&self, model: &str, request: Request) -> Result<ReplyHandle, SubmitError> {
        self.submit_with(model, request, None)
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
        self.submit_with(model, request, Some(timeout))
    }

    fn submit_with(
        &self,
        model: &str,
        request: Request,
        timeout: Option<Duration>,
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
        let refused = match timeout {
            None => match handle.queue.try_send(pending) {
                Ok(()) => None,
                Err(TrySendError::Full(p)) => {
                    bump(&counters.rejected_full, 1);
                    Some((p, SubmitError::QueueFull as fn(Request) -> SubmitError))
                }
                Err(TrySendError::Disconnected(p)) => Some((p, SubmitError::ShuttingDown as _)),
            },
            Some(t) => match handle.queue.send_timeout(pending, t) {
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
                    request_latency: ModelHistograms::snapshot(&h.request_latency),
                    queue_wait: ModelHistograms::snapshot(&h.queue_wait),
                    compute: ModelHistograms::snapshot(&h.compute),
                    batch_rows: ModelHistograms::snapshot(&h.batch_rows),
                    batch_alloc_bytes: ModelHistograms::snapshot(&h.batch_alloc_bytes),
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

/// Checks a request against the model before it can join a batch, so a bad one is refused
/// alone and never reaches (or poisons) a batch.
fn validate(handle: &ModelHandle, request: Request) -> Result<Request, SubmitError> {
    let input = request.input();
    let expected = handle.predictor.input_width();
    let invalid = |error, request| {
        Err(SubmitError::Invalid {
            error: Box::new(error),
            request,
        })
    };
    if input.ncols() != expected {
        let error = crate::Error::InputWidth {
            expected,
            got: input.ncols(),
        };
        return invalid(error, request);
    }
    let max_batch_size = handle.shared.config.batch.max_batch_size;
    if input.nrows() == 0 || input.nrows() > max_batch_size {
        return Err(SubmitError::RowCount {
            rows: input.nrows(),
            max_batch_size,
            request,
        });
    }
    if handle.shared.config.reject_non_finite
        && let Some((i, value)) = request
            .as_slice()
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
    {
        let error = crate::Error::NonFiniteInput {
            row: i / expected,
            col: i % expected,
            value: *value,
        };
        return invalid(error, request);
    }
    Ok(request)
}
