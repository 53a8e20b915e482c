//! Models by name: load, replace, unload at run time; each with its own queue and worker.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::SchedulerError;
use super::policy::BatchPolicy;
use super::request::Pending;
use super::worker::{self, WarmupFailure, WorkerContext};
use crate::Predictor;
use crate::metrics::{LiveCounters, ModelHistograms};

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelState {
    /// Running every batch size once before taking traffic.
    Warming,
    /// Serving.
    Ready,
    /// Serving, but it has panicked at least once (its worker was restarted).
    Degraded,
    /// Replaced, unloaded or shutting down: finishing what it accepted, taking nothing new.
    Draining,
    /// Its worker has exited.
    Stopped,
}

impl ModelState {
    const ALL: [ModelState; 5] = [
        ModelState::Warming,
        ModelState::Ready,
        ModelState::Degraded,
        ModelState::Draining,
        ModelState::Stopped,
    ];

    /// A stable lower-case name, used as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ModelState::Warming => "warming",
            ModelState::Ready => "ready",
            ModelState::Degraded => "degraded",
            ModelState::Draining => "draining",
            ModelState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Batch size and wait.
    pub batch: BatchPolicy,
    /// Requests the model's queue holds before `try_submit` answers `QueueFull`.
    pub queue_capacity: usize,
    /// Times every batch size is run at load before the model takes traffic.
    pub warmup_rounds: usize,
    /// Refuse requests holding NaN or infinities at submit time.
    pub reject_non_finite: bool,
    /// How long an idle worker polls its queue before it sleeps. A request arriving within
    /// that time is picked up at once instead of paying a thread wake-up (10–30 µs on a
    /// virtual machine); the price is that much CPU per idle spell. Zero sleeps at once.
    pub idle_spin: Duration,
    /// How long [`crate::ReplyHandle::wait`] polls for the reply before it sleeps; the same
    /// trade on the caller's side (default zero). Set it a little above the expected latency of
    /// a request to keep the caller's wake-up out of it, when few callers wait at once.
    pub reply_spin: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            batch: BatchPolicy::default(),
            queue_capacity: 1024,
            warmup_rounds: 2,
            reject_non_finite: true,
            // Long enough to catch a client's next submit right after a reply; short enough that
            // an idle worker (one per model) costs little CPU.
            idle_spin: Duration::from_micros(50),
            // Off: with many callers waiting at once, each spinning would take CPU from the
            // batches they wait for. A single latency-sensitive caller should turn it on.
            reply_spin: Duration::ZERO,
        }
    }
}

impl ModelConfig {
    /// Sets `max_batch_size`.
    pub fn max_batch_size(mut self, rows: usize) -> Self {
        self.batch.max_batch_size = rows;
        self
    }

    /// Sets `max_wait`.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.batch.max_wait = wait;
        self
    }

    /// Sets the time kept in hand before a deadline (see [`BatchPolicy::deadline_reserve`]).
    pub fn deadline_reserve(mut self, reserve: Duration) -> Self {
        self.batch.deadline_reserve = reserve;
        self
    }

    /// Sets the queue capacity.
    pub fn queue_capacity(mut self, requests: usize) -> Self {
        self.queue_capacity = requests;
        self
    }

    /// Sets the warmup rounds.
    pub fn warmup_rounds(mut self, rounds: usize) -> Self {
        self.warmup_rounds = rounds;
        self
    }

    /// Sets how long an idle worker polls before sleeping ([`ModelConfig::idle_spin`]).
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = spin;
        self
    }

    /// Sets how long a waiting caller polls before sleeping ([`ModelConfig::reply_spin`]).
    pub fn reply_spin(mut self, spin: Duration) -> Self {
        self.reply_spin = spin;
        self
    }

    fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |msg: &str| Err(SchedulerError::InvalidConfig(msg.to_string()));
        if self.batch.max_batch_size == 0 {
            return bad("max_batch_size must be at least 1");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        Ok(())
    }
}

/// A model as listed by [`crate::Scheduler::models`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    /// Its name.
    pub name: String,
    /// Which load of this name (1 for the first, +1 per replace).
    pub generation: u64,
    /// Its state.
    pub state: ModelState,
    /// Requests waiting in its queue.
    pub queue_depth: usize,
    /// Its configuration.
    pub config: ModelConfig,
}

/// What the registry, the callers and the worker share about one loaded model.
#[derive(Debug)]
pub(crate) struct ModelShared {
    pub(crate) name: Arc<str>,
    pub(crate) generation: u64,
    pub(crate) config: ModelConfig,
    state: AtomicU8,
    pub(crate) counters: LiveCounters,
    pub(crate) histograms: Mutex<ModelHistograms>,
    pub(crate) warmup: Mutex<Vec<(usize, Duration)>>,
}

impl ModelShared {
    pub(crate) fn state(&self) -> ModelState {
        ModelState::ALL[self.state.load(Ordering::Acquire) as usize]
    }

    pub(crate) fn set_state(&self, state: ModelState) {
        // A degraded model stays degraded until replaced; draining wins over serving states.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                let now = ModelState::ALL[now as usize];
                let keep = matches!(
                    (now, state),
                    (ModelState::Degraded, ModelState::Ready)
                        | (
                            ModelState::Draining,
                            ModelState::Ready | ModelState::Degraded
                        )
                        | (ModelState::Stopped, _)
                );
                (!keep).then_some(state as u8)
            });
    }
}

/// What a caller needs to submit to a model: cloned out of the registry, so submitting never
/// holds the registry's lock while it waits on a queue. While a caller holds it the model's
/// queue stays open, so a request sent through it is always received and answered.
#[derive(Debug)]
pub(crate) struct ModelHandle {
    pub(crate) shared: Arc<ModelShared>,
    pub(crate) predictor: Arc<dyn Predictor>,
    pub(crate) queue: Sender<Pending>,
}

#[derive(Debug)]
struct Entry {
    handle: Arc<ModelHandle>,
    worker: JoinHandle<()>,
}

impl Entry {
    /// Closes the registry's end of the queue and waits until the worker has answered
    /// everything it accepted.
    fn drain(self) {
        let _ = self.close().join();
    }

    /// Closes the registry's end of the queue; the worker exits once it has drained it.
    fn close(self) -> JoinHandle<()> {
        let Entry { handle, worker } = self;
        handle.shared.set_state(ModelState::Draining);
        drop(handle);
        worker
    }
}

#[derive(Debug, Default)]
struct Inner {
    accepting: bool,
    serving: HashMap<String, Entry>,
    /// Warming or draining instances, for listings and snapshots.
    transitional: Vec<Arc<ModelShared>>,
    generations: HashMap<String, u64>,
}

/// Why no model can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    ShuttingDown,
    Unknown,
}

/// The models, by name.
#[derive(Debug)]
pub(crate) struct Registry {
    inner: RwLock<Inner>,
    context: WorkerContext,
    ring_capacity: usize,
}

impl Registry {
    pub(crate) fn new(context: WorkerContext, ring_capacity: usize) -> Self {
        Registry {
            inner: RwLock::new(Inner {
                accepting: true,
                ..Inner::default()
            }),
            context,
            ring_capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The model's handle, if it is being served.
    pub(crate) fn handle(&self, name: &str) -> Result<Arc<ModelHandle>, Unavailable> {
        let inner = self.read();
        if !inner.accepting {
            return Err(Unavailable::ShuttingDown);
        }
        inner
            .serving
            .get(name)
            .map(|e| Arc::clone(&e.handle))
            .ok_or(Unavailable::Unknown)
    }

    /// Loads (or, with `replace`, replaces) `name`: starts its worker, waits for warmup, then
    /// routes traffic to it. A replaced instance finishes its accepted requests before this
    /// returns.
    pub(crate) fn install(
        &self,
        name: &str,
        predictor: Arc<dyn Predictor>,
        config: ModelConfig,
        replace: bool,
    ) -> Result<(), SchedulerError> {
        config.validate()?;
        let shared = {
            let mut inner = self.write();
            if !inner.accepting {
                return Err(SchedulerError::ShuttingDown);
            }
            match (replace, inner.serving.contains_key(name)) {
                (false, true) => return Err(SchedulerError::AlreadyLoaded(name.to_string())),
                (true, false) => return Err(SchedulerError::UnknownModel(name.to_string())),
                _ => {}
            }
            let generation = inner.generations.entry(name.to_string()).or_default();
            *generation += 1;
            let shared = Arc::new(ModelShared {
                name: Arc::from(name),
                generation: *generation,
                config,
                state: AtomicU8::new(ModelState::Warming as u8),
                counters: LiveCounters::default(),
                histograms: Mutex::new(ModelHistograms::new(self.ring_capacity)),
                warmup: Mutex::new(Vec::new()),
            });
            inner.transitional.push(Arc::clone(&shared));
            shared
        };
        let (queue, receiver) = crossbeam_channel::bounded(config.queue_capacity);
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name(format!("densebatch-{name}"))
            .spawn({
                let (context, shared, predictor) = (
                    self.context.clone(),
                    Arc::clone(&shared),
                    Arc::clone(&predictor),
                );
                move || worker::run(context, shared, predictor, receiver, ready_tx)
            });
        let worker = match spawned {
            Ok(w) => w,
            Err(e) => {
                self.forget_transitional(&shared);
                return Err(SchedulerError::Spawn(e));
            }
        };
        let warmup = ready_rx.recv().unwrap_or(Err(WarmupFailure::Panicked));
        if let Err(failure) = warmup {
            self.forget_transitional(&shared);
            let _ = worker.join();
            return Err(match failure {
                WarmupFailure::Model(source) => SchedulerError::Warmup {
                    model: name.to_string(),
                    source: Box::new(source),
                },
                WarmupFailure::Panicked => SchedulerError::WarmupPanicked(name.to_string()),
            });
        }
        let entry = Entry {
            handle: Arc::new(ModelHandle {
                shared: Arc::clone(&shared),
                predictor,
                queue,
            }),
            worker,
        };
        let old = {
            let mut inner = self.write();
            inner.transitional.retain(|s| !Arc::ptr_eq(s, &shared));
            let refused = if !inner.accepting {
                Some(SchedulerError::ShuttingDown)
            } else if !replace && inner.serving.contains_key(name) {
                Some(SchedulerError::AlreadyLoaded(name.to_string()))
            } else {
                None
            };
            if let Some(error) = refused {
                drop(inner);
                entry.drain();
                return Err(error);
            }
            let old = inner.serving.insert(name.to_string(), entry);
            if let Some(old) = &old {
                inner.transitional.push(Arc::clone(&old.handle.shared));
            }
            old
        };
        if let Some(old) = old {
            let old_shared = Arc::clone(&old.handle.shared);
            old.drain();
            self.forget_transitional(&old_shared);
        }
        Ok(())
    }

    fn forget_transitional(&self, shared: &Arc<ModelShared>) {
        self.write()
            .transitional
            .retain(|s| !Arc::ptr_eq(s, shared));
    }

    /// Stops routing to `name` and waits until it has answered everything it accepted.
    pub(crate) fn unload(&self, name: &str) -> Result<(), SchedulerError> {
        let entry = {
            let mut inner = self.write();
            let entry = inner
                .serving
                .remove(name)
                .ok_or_else(|| SchedulerError::UnknownModel(name.to_string()))?;
            inner.transitional.push(Arc::clone(&entry.handle.shared));
            entry
        };
        let shared = Arc::clone(&entry.handle.shared);
        entry.drain();
        self.forget_transitional(&shared);
        Ok(())
    }

    /// Stops accepting, then drains and joins every model. Idempotent.
    pub(crate) fn shutdown(&self) {
        let entries: Vec<Entry> = {
            let mut inner = self.write();
            inner.accepting = false;
            inner.serving.drain().map(|(_, e)| e).collect()
        };
        // Close every queue first so all models drain in parallel, then wait for each.
        let workers: Vec<JoinHandle<()>> = entries.into_iter().map(Entry::close).collect();
        for worker in workers {
            let _ = worker.join();
        }
    }

    /// Every instance known: serving, warming or draining, with its queue depth.
    pub(crate) fn instances(&self) -> Vec<(Arc<ModelShared>, usize)> {
        let inner = self.read();
        let mut all: Vec<(Arc<ModelShared>, usize)> = inner
            .serving
            .values()
            .map(|e| (Arc::clone(&e.handle.shared), e.handle.queue.len()))
            .chain(inner.transitional.iter().map(|s| (Arc::clone(s), 0)))
            .collect();
        all.sort_by(|a, b| (&a.0.name, a.0.generation).cmp(&(&b.0.name, b.0.generation)));
        all
    }

    pub(crate) fn status(shared: &ModelShared, queue_depth: usize) -> ModelStatus {
        ModelStatus {
            name: shared.name.to_string(),
            generation: shared.generation,
            state: shared.state(),
            queue_depth,
            config: shared.config,
        }
    }
}
