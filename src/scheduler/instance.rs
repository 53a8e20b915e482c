//! One loaded model instance as the registry, its callers and its worker share it:
//! [`ModelShared`] (config, state, counters, histograms), the callers' [`ModelHandle`], and the
//! [`ModelStatus`] a listing reports.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::config::ModelConfig;
use super::metrics::{LiveCounters, ModelHistograms};
use super::request::Pending;
use super::state::ModelState;
use crate::Predictor;

/// A model as listed by [`crate::Scheduler::models`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// A warming instance keeping the last `ring_capacity` batch records.
    pub(crate) fn new(
        name: &str,
        generation: u64,
        config: ModelConfig,
        ring_capacity: usize,
    ) -> Self {
        ModelShared {
            name: Arc::from(name),
            generation,
            config,
            state: AtomicU8::new(ModelState::Warming as u8),
            counters: LiveCounters::default(),
            histograms: Mutex::new(ModelHistograms::new(ring_capacity)),
            warmup: Mutex::new(Vec::new()),
        }
    }

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

    pub(crate) fn status(&self, queue_depth: usize) -> ModelStatus {
        ModelStatus {
            name: self.name.to_string(),
            generation: self.generation,
            state: self.state(),
            queue_depth,
            config: self.config,
        }
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
