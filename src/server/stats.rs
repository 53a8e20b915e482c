//! Triton's statistics extension, fed by the scheduler's per-batch records: a thread folds every
//! [`BatchRecord`] into per-model, per-batch-size totals (exact nanosecond sums, not histogram
//! estimates), and the front adds per-request success and failure times.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::{BatchRecord, ModelSnapshot};

/// A count and the time it took in total.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Duration64 {
    pub(crate) count: u64,
    pub(crate) ns: u64,
}

impl Duration64 {
    fn add(&mut self, count: u64, time: Duration) {
        self.count += count;
        self.ns = self.ns.saturating_add(nanos(time));
    }
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

/// Totals of the batches of one size.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct BatchSizeStats {
    pub(crate) batch_size: u64,
    /// Forming the batch: gathering and copying the rows in.
    pub(crate) compute_input: Duration64,
    /// The model.
    pub(crate) compute_infer: Duration64,
    /// Copying results out and answering.
    pub(crate) compute_output: Duration64,
}

#[derive(Debug, Default)]
struct ModelTotals {
    last_inference_ms: u64,
    rows: u64,
    executions: u64,
    input: Duration64,
    infer: Duration64,
    output: Duration64,
    by_size: BTreeMap<usize, BatchSizeStats>,
}

/// Every model's batch totals, kept by a thread reading the scheduler's record sink.
#[derive(Debug, Default)]
pub(crate) struct BatchBook {
    models: Mutex<HashMap<Arc<str>, ModelTotals>>,
}

impl BatchBook {
    /// Folds records in until every sender is gone (the scheduler dropped).
    pub(crate) fn spawn_reader(
        self: &Arc<Self>,
        records: Receiver<BatchRecord>,
    ) -> std::io::Result<()> {
        let book = Arc::clone(self);
        std::thread::Builder::new()
            .name("densebatch-stats".into())
            .spawn(move || {
                for record in records {
                    book.add(&record);
                }
            })
            .map(|_| ())
    }

    fn add(&self, record: &BatchRecord) {
        if record.rows == 0 {
            return; // every request of the batch expired or was cancelled: nothing ran
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let totals = models.entry(Arc::clone(&record.model)).or_default();
        totals.last_inference_ms = now_ms;
        totals.rows += record.rows as u64;
        totals.executions += 1;
        totals.input.add(1, record.form_time);
        totals.infer.add(1, record.compute_time);
        totals.output.add(1, record.scatter_time);
        let size = totals.by_size.entry(record.rows).or_insert(BatchSizeStats {
            batch_size: record.rows as u64,
            ..BatchSizeStats::default()
        });
        size.compute_input.add(1, record.form_time);
        size.compute_infer.add(1, record.compute_time);
        size.compute_output.add(1, record.scatter_time);
    }
}

/// Per-request outcomes measured by the front (receipt to reply).
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    success_count: AtomicU64,
    success_ns: AtomicU64,
    fail_count: AtomicU64,
    fail_ns: AtomicU64,
}

impl RequestStats {
    pub(crate) fn record(&self, ok: bool, time: Duration) {
        let (count, ns) = if ok {
            (&self.success_count, &self.success_ns)
        } else {
            (&self.fail_count, &self.fail_ns)
        };
        count.fetch_add(1, Ordering::Relaxed);
        ns.fetch_add(nanos(time), Ordering::Relaxed);
    }

    fn read(&self) -> (Duration64, Duration64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            Duration64 {
                count: get(&self.success_count),
                ns: get(&self.success_ns),
            },
            Duration64 {
                count: get(&self.fail_count),
                ns: get(&self.fail_ns),
            },
        )
    }
}

/// The aggregate statistics of one model, in Triton's shape.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InferStats {
    pub(crate) success: Duration64,
    pub(crate) fail: Duration64,
    pub(crate) queue: Duration64,
    pub(crate) compute_input: Duration64,
    pub(crate) compute_infer: Duration64,
    pub(crate) compute_output: Duration64,
}

/// One model's statistics, as `GET /v2/models/{m}/stats` and `ModelStatistics` report them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelStats {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Milliseconds since the Unix epoch of the last batch run (0: none yet).
    pub(crate) last_inference: u64,
    /// Rows computed.
    pub(crate) inference_count: u64,
    /// Batches run.
    pub(crate) execution_count: u64,
    pub(crate) inference_stats: InferStats,
    pub(crate) batch_stats: Vec<BatchSizeStats>,
}

impl BatchBook {
    /// The statistics of `name`, from the batch totals, the front's request counts and the
    /// scheduler's queue-wait histogram (its total is the histogram's mean × count).
    pub(crate) fn model_stats(
        &self,
        name: &str,
        version: &str,
        requests: &RequestStats,
        snapshot: Option<&ModelSnapshot>,
    ) -> ModelStats {
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        let empty = ModelTotals::default();
        let totals = models.get(name).unwrap_or(&empty);
        let (success, fail) = requests.read();
        let queue = snapshot.map_or(Duration64::default(), |s| {
            let count = s.queue_wait.count();
            Duration64 {
                count,
                ns: nanos(s.queue_wait.mean()).saturating_mul(count),
            }
        });
        ModelStats {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: totals.last_inference_ms,
            inference_count: totals.rows,
            execution_count: totals.executions,
            inference_stats: InferStats {
                success,
                fail,
                queue,
                compute_input: totals.input,
                compute_infer: totals.infer,
                compute_output: totals.output,
            },
            batch_stats: totals.by_size.values().copied().collect(),
        }
    }
}
