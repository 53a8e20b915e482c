//! Per-model counters and HDR histograms, recorded without allocation on the worker thread,
//! and their snapshots ([`Counters`], [`HistogramSnapshot`], [`SizeHistogramSnapshot`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::record::{BatchRecord, CloseReason};

/// Nanoseconds of `d`, saturating (for histogram values).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Largest time a histogram tracks (60 s in nanoseconds); larger values are clamped.
const MAX_NANOS: u64 = 60_000_000_000;
/// Largest batch a histogram tracks, in rows.
const MAX_ROWS: u64 = 1 << 20;
/// Largest allocation per batch a histogram tracks, in bytes.
const MAX_BYTES: u64 = 1 << 40;
/// Three significant digits: quantiles within 0.1 %.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of values in `1..=max`, its buckets all allocated here so that recording never
/// allocates (values above `max` are clamped by `saturating_record`).
fn new_histogram(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS).expect("constant bounds are valid")
}

/// A frozen copy of a time histogram (request latency, queue wait, compute), read as
/// [`Duration`]s: `snapshot.model("m").unwrap().request_latency.p99()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Nanoseconds.
    histogram: Histogram<u64>,
}

impl HistogramSnapshot {
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at quantile `q` (0.0 ..= 1.0), within 0.1 %; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.histogram.value_at_quantile(q))
    }

    /// The median; zero when empty.
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 99th percentile; zero when empty.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The 99.9th percentile; zero when empty.
    pub fn p999(&self) -> Duration {
        self.quantile(0.999)
    }

    /// The mean; zero when empty.
    pub fn mean(&self) -> Duration {
        Duration::from_secs_f64(self.histogram.mean() * 1e-9)
    }

    /// The largest value; zero when empty.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.histogram.max())
    }

    /// p50, p90, p99, p99.9 and max.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50: self.p50(),
            p90: self.quantile(0.9),
            p99: self.p99(),
            p999: self.p999(),
            max: self.max(),
        }
    }

    /// The recorded nanoseconds, for the Prometheus rendering.
    pub(crate) fn raw(&self) -> &Histogram<u64> {
        &self.histogram
    }
}

/// A frozen copy of a size histogram (rows per batch, bytes allocated per batch), read as
/// plain numbers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SizeHistogramSnapshot {
    histogram: Histogram<u64>,
}

impl SizeHistogramSnapshot {
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at quantile `q` (0.0 ..= 1.0), within 0.1 %; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }

    /// The mean; 0 when empty.
    pub fn mean(&self) -> f64 {
        self.histogram.mean()
    }

    /// The largest value; 0 when empty.
    pub fn max(&self) -> u64 {
        self.histogram.max()
    }

    /// The recorded values, for the Prometheus rendering.
    pub(crate) fn raw(&self) -> &Histogram<u64> {
        &self.histogram
    }
}

/// Quantiles of a latency histogram ([`HistogramSnapshot::summary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest.
    pub max: Duration,
}

/// A model's counters, as read in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Requests accepted into the queue.
    pub accepted: u64,
    /// Requests refused because the queue was full (`try_submit`).
    pub rejected_full: u64,
    /// Requests refused after a blocking submit timed out.
    pub rejected_timeout: u64,
    /// Requests refused by validation (width, rows, NaN/Inf).
    pub rejected_invalid: u64,
    /// Requests answered with their output.
    pub completed: u64,
    /// Requests answered with a model error.
    pub failed: u64,
    /// Requests answered `DeadlineExceeded`, never computed.
    pub expired: u64,
    /// Requests whose caller dropped the handle before compute; not computed.
    pub cancelled: u64,
    /// Requests answered `ModelPanicked`.
    pub panicked: u64,
    /// Worker restarts after a panic (one per panicking batch).
    pub worker_restarts: u64,
    /// Batches run.
    pub batches: u64,
    /// Batches closed for each [`CloseReason`]: read with [`Counters::closes`].
    closes: [u64; CloseReason::ALL.len()],
    /// Batch records a full record stream could not take.
    pub records_dropped: u64,
}

impl Counters {
    /// Batches that closed for `reason`.
    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }
}

/// The live counters, shared between callers (accepted/rejected) and the worker.
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) rejected_timeout: AtomicU64,
    pub(crate) rejected_invalid: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) worker_restarts: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) closes: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) records_dropped: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl LiveCounters {
    pub(crate) fn read(&self) -> Counters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            accepted: r(&self.accepted),
            rejected_full: r(&self.rejected_full),
            rejected_timeout: r(&self.rejected_timeout),
            rejected_invalid: r(&self.rejected_invalid),
            completed: r(&self.completed),
            failed: r(&self.failed),
            expired: r(&self.expired),
            cancelled: r(&self.cancelled),
            panicked: r(&self.panicked),
            worker_restarts: r(&self.worker_restarts),
            batches: r(&self.batches),
            closes: std::array::from_fn(|i| r(&self.closes[i])),
            records_dropped: r(&self.records_dropped),
        }
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        bump(&self.closes[reason.index()], 1);
    }
}

/// The histograms and recent records of one model. Allocated once; recording allocates nothing.
#[derive(Debug)]
pub(crate) struct ModelHistograms {
    /// Submit to reply, per request (ns).
    pub(crate) request_latency: Histogram<u64>,
    /// Submit to batch close, per request (ns).
    pub(crate) queue_wait: Histogram<u64>,
    /// Compute time per batch (ns).
    pub(crate) compute: Histogram<u64>,
    /// Rows per batch.
    pub(crate) batch_rows: Histogram<u64>,
    /// Bytes allocated per batch (when counted).
    pub(crate) batch_alloc_bytes: Histogram<u64>,
    recent: VecDeque<BatchRecord>,
    ring_capacity: usize,
}

impl ModelHistograms {
    pub(crate) fn new(ring_capacity: usize) -> Self {
        ModelHistograms {
            request_latency: new_histogram(MAX_NANOS),
            queue_wait: new_histogram(MAX_NANOS),
            compute: new_histogram(MAX_NANOS),
            batch_rows: new_histogram(MAX_ROWS),
            batch_alloc_bytes: new_histogram(MAX_BYTES),
            recent: VecDeque::with_capacity(ring_capacity),
            ring_capacity,
        }
    }

    /// Keeps `record` in the ring (dropping the oldest when full) and in the batch histograms.
    pub(crate) fn record_batch(&mut self, record: &BatchRecord) {
        self.compute
            .saturating_record(nanos(record.compute_time).max(1));
        self.batch_rows.saturating_record(record.rows as u64);
        if record.alloc_counted {
            self.batch_alloc_bytes.saturating_record(record.alloc_bytes);
        }
        if self.ring_capacity == 0 {
            return;
        }
        if self.recent.len() == self.ring_capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(record.clone());
    }

    pub(crate) fn recent(&self) -> Vec<BatchRecord> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn time(h: &Histogram<u64>) -> HistogramSnapshot {
        HistogramSnapshot {
            histogram: h.clone(),
        }
    }

    pub(crate) fn size(h: &Histogram<u64>) -> SizeHistogramSnapshot {
        SizeHistogramSnapshot {
            histogram: h.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(sequence: u64, rows: usize) -> BatchRecord {
        BatchRecord {
            model: Arc::from("m"),
            sequence,
            rows,
            requests: rows,
            expired: 0,
            cancelled: 0,
            failed: 0,
            close_reason: CloseReason::Full,
            oldest_wait: Duration::from_micros(5),
            newest_wait: Duration::from_micros(1),
            form_time: Duration::from_micros(4),
            compute_time: Duration::from_micros(10 * rows as u64),
            scatter_time: Duration::from_micros(1),
            scratch_bytes: 0,
            alloc_bytes: 100,
            alloc_count: 1,
            alloc_peak_bytes: 100,
            alloc_counted: true,
        }
    }

    #[test]
    fn ring_keeps_the_newest_records() {
        let mut h = ModelHistograms::new(3);
        for i in 0..5 {
            h.record_batch(&record(i, 1 + i as usize));
        }
        let seqs: Vec<u64> = h.recent().iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, [2, 3, 4]);
        let rows = ModelHistograms::size(&h.batch_rows);
        assert_eq!(rows.count(), 5);
        assert_eq!(rows.quantile(0.5), 3);
        assert_eq!(rows.max(), 5);
        let compute = ModelHistograms::time(&h.compute).summary();
        assert_eq!(compute.count, 5);
        // 3 significant digits: 50 µs is recorded within 0.1 %.
        assert!(compute.max.abs_diff(Duration::from_micros(50)) < Duration::from_nanos(50));
    }
}
