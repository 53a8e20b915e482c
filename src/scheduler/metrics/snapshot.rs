//! [`MetricsSnapshot`] and [`ModelSnapshot`]: a consistent-enough copy of every model's
//! metrics, read through the library API.

use std::time::Duration;

use super::histograms::{Counters, HistogramSnapshot, SizeHistogramSnapshot};
use super::record::BatchRecord;
use crate::scheduler::budget::ThreadBudget;
use crate::scheduler::state::ModelState;

/// One model's metrics at the time of the snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelSnapshot {
    /// The model's name.
    pub name: String,
    /// Which load of this name (1 for the first, +1 per replace).
    pub generation: u64,
    /// Its state.
    pub state: ModelState,
    /// Requests waiting in its queue.
    pub queue_depth: usize,
    /// Its queue's capacity.
    pub queue_capacity: usize,
    /// Its `max_batch_size`.
    pub max_batch_size: usize,
    /// Its counters.
    pub counters: Counters,
    /// Submit-to-reply latency per request.
    pub request_latency: HistogramSnapshot,
    /// Submit-to-batch-close wait per request.
    pub queue_wait: HistogramSnapshot,
    /// Compute time per batch.
    pub compute: HistogramSnapshot,
    /// Rows per batch.
    pub batch_rows: SizeHistogramSnapshot,
    /// Bytes allocated per batch on the worker thread (when counted).
    pub batch_alloc_bytes: SizeHistogramSnapshot,
    /// The most recent batch records, oldest first.
    pub recent: Vec<BatchRecord>,
    /// Fastest compute time measured at warmup, per batch size warmed: `(rows, time)`.
    pub warmup: Vec<(usize, Duration)>,
}

/// Every model's metrics, plus the thread budget the scheduler runs with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The thread budget.
    pub budget: ThreadBudget,
    /// One entry per model being served (or warming, or draining).
    pub models: Vec<ModelSnapshot>,
}

impl MetricsSnapshot {
    /// The entry for `name` (the serving instance if several share the name).
    pub fn model(&self, name: &str) -> Option<&ModelSnapshot> {
        self.models
            .iter()
            .filter(|m| m.name == name)
            .max_by_key(|m| m.generation)
    }
}
