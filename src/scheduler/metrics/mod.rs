//! What the scheduler measures: per-batch records, HDR histograms, counters, their snapshots
//! and their Prometheus text rendering. It names the scheduler's [`ModelState`] and
//! [`ThreadBudget`] (leaf modules) and nothing else of it.
//!
//! [`ModelState`]: super::state::ModelState
//! [`ThreadBudget`]: super::budget::ThreadBudget

mod histograms;
mod prometheus;
mod record;
mod snapshot;

pub use histograms::{Counters, HistogramSnapshot, LatencySummary, SizeHistogramSnapshot};
pub(crate) use histograms::{LiveCounters, ModelHistograms, bump, nanos};
pub use record::{BatchRecord, CloseReason};
pub use snapshot::{MetricsSnapshot, ModelSnapshot};
