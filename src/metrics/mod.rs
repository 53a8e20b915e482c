//! What the scheduler measures: per-batch records, HDR histograms, counters, and their
//! Prometheus text rendering.

mod histograms;
mod prometheus;
mod record;
mod snapshot;

pub use histograms::{Counters, HistogramSnapshot, LatencySummary};
pub(crate) use histograms::{LiveCounters, ModelHistograms, bump};
pub use record::{BatchRecord, CloseReason};
pub use snapshot::{MetricsSnapshot, ModelSnapshot};

/// Nanoseconds of `d`, saturating (for histogram values).
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
