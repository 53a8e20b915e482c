//! [`MetricsSnapshot::to_prometheus`]: the snapshot in the Prometheus text exposition format
//! (version 0.0.4).

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::record::CloseReason;
use super::snapshot::{MetricsSnapshot, ModelSnapshot};
use crate::scheduler::state::ModelState;

/// Upper bounds (seconds) of the latency histogram buckets: 10 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    1.0, 5.0, 10.0,
];
/// Upper bounds of the batch-size histogram buckets.
const ROW_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Upper bounds (bytes) of the per-batch allocation buckets: 1 KiB to 64 MiB.
const BYTE_BUCKETS: [f64; 9] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// A counter's full name, help text, and how to read it from a model's snapshot.
type CounterSpec = (&'static str, &'static str, fn(&ModelSnapshot) -> u64);
/// A histogram's name, help text, which of a model's histograms it is (raw recorded values),
/// the scale from recorded values to the exposed unit, and the bucket bounds.
type HistogramSpec = (
    &'static str,
    &'static str,
    fn(&ModelSnapshot) -> &Histogram<u64>,
    f64,
    &'static [f64],
);

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(model: &ModelSnapshot) -> String {
    format!(
        "model=\"{}\",generation=\"{}\"",
        escape(&model.name),
        model.generation
    )
}

impl MetricsSnapshot {
    /// Renders counters, gauges (queue depth, state, thread budget) and histograms (request
    /// latency, queue wait, compute, batch rows, batch allocated bytes) as Prometheus text.
    ///
    /// ```
    /// use densebatch::{Scheduler, SchedulerConfig};
    /// let scheduler = Scheduler::new(SchedulerConfig::default().threads(1)).unwrap();
    /// let text = scheduler.metrics().to_prometheus();
    /// assert!(text.contains("densebatch_pool_threads 1"));
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP densebatch_cpus CPUs the thread budget is sized for."
        );
        let _ = writeln!(w, "# TYPE densebatch_cpus gauge");
        let _ = writeln!(w, "densebatch_cpus {}", self.budget.cpus());
        let _ = writeln!(
            w,
            "# HELP densebatch_pool_threads Threads of the compute pool."
        );
        let _ = writeln!(w, "# TYPE densebatch_pool_threads gauge");
        let _ = writeln!(w, "densebatch_pool_threads {}", self.budget.pool_threads());

        let counters: [CounterSpec; 11] = [
            (
                "densebatch_requests_accepted_total",
                "Requests accepted.",
                |m| m.counters.accepted,
            ),
            (
                "densebatch_requests_rejected_full_total",
                "Requests refused: queue full.",
                |m| m.counters.rejected_full,
            ),
            (
                "densebatch_requests_rejected_timeout_total",
                "Requests refused: blocking submit timed out.",
                |m| m.counters.rejected_timeout,
            ),
            (
                "densebatch_requests_rejected_invalid_total",
                "Requests refused by validation.",
                |m| m.counters.rejected_invalid,
            ),
            (
                "densebatch_requests_completed_total",
                "Requests answered with a result.",
                |m| m.counters.completed,
            ),
            (
                "densebatch_requests_failed_total",
                "Requests answered with a model error.",
                |m| m.counters.failed,
            ),
            (
                "densebatch_requests_expired_total",
                "Requests expired before compute.",
                |m| m.counters.expired,
            ),
            (
                "densebatch_requests_cancelled_total",
                "Requests cancelled before compute.",
                |m| m.counters.cancelled,
            ),
            (
                "densebatch_requests_panicked_total",
                "Requests answered ModelPanicked.",
                |m| m.counters.panicked,
            ),
            (
                "densebatch_worker_restarts_total",
                "Worker restarts after a panic.",
                |m| m.counters.worker_restarts,
            ),
            (
                "densebatch_batch_records_dropped_total",
                "Batch records the record stream dropped (full channel).",
                |m| m.counters.records_dropped,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(w, "# HELP {name} {help}");
            let _ = writeln!(w, "# TYPE {name} counter");
            for m in &self.models {
                let _ = writeln!(w, "{name}{{{}}} {}", labels(m), get(m));
            }
        }
        let _ = writeln!(
            w,
            "# HELP densebatch_batches_total Batches run, by close reason."
        );
        let _ = writeln!(w, "# TYPE densebatch_batches_total counter");
        for m in &self.models {
            for reason in CloseReason::ALL {
                let _ = writeln!(
                    w,
                    "densebatch_batches_total{{{},reason=\"{reason}\"}} {}",
                    labels(m),
                    m.counters.closes(reason)
                );
            }
        }
        let _ = writeln!(
            w,
            "# HELP densebatch_queue_depth Requests waiting in the queue."
        );
        let _ = writeln!(w, "# TYPE densebatch_queue_depth gauge");
        for m in &self.models {
            let _ = writeln!(
                w,
                "densebatch_queue_depth{{{}}} {}",
                labels(m),
                m.queue_depth
            );
        }
        let _ = writeln!(w, "# HELP densebatch_queue_capacity Capacity of the queue.");
        let _ = writeln!(w, "# TYPE densebatch_queue_capacity gauge");
        for m in &self.models {
            let _ = writeln!(
                w,
                "densebatch_queue_capacity{{{}}} {}",
                labels(m),
                m.queue_capacity
            );
        }
        let _ = writeln!(
            w,
            "# HELP densebatch_model_state 1 for the model's current state."
        );
        let _ = writeln!(w, "# TYPE densebatch_model_state gauge");
        for m in &self.models {
            for state in ModelState::ALL {
                let _ = writeln!(
                    w,
                    "densebatch_model_state{{{},state=\"{state}\"}} {}",
                    labels(m),
                    u8::from(m.state == state)
                );
            }
        }
        let histograms: [HistogramSpec; 5] = [
            (
                "densebatch_request_latency_seconds",
                "Submit to reply, per request.",
                |m| m.request_latency.raw(),
                1e-9,
                &LATENCY_BUCKETS,
            ),
            (
                "densebatch_queue_wait_seconds",
                "Submit to batch close, per request.",
                |m| m.queue_wait.raw(),
                1e-9,
                &LATENCY_BUCKETS,
            ),
            (
                "densebatch_compute_seconds",
                "Compute time per batch.",
                |m| m.compute.raw(),
                1e-9,
                &LATENCY_BUCKETS,
            ),
            (
                "densebatch_batch_rows",
                "Rows per batch.",
                |m| m.batch_rows.raw(),
                1.0,
                &ROW_BUCKETS,
            ),
            (
                "densebatch_batch_alloc_bytes",
                "Bytes allocated per batch on the worker thread (when a counting allocator is \
                 installed).",
                |m| m.batch_alloc_bytes.raw(),
                1.0,
                &BYTE_BUCKETS,
            ),
        ];
        for (name, help, get, scale, bounds) in histograms {
            let _ = writeln!(w, "# HELP {name} {help}");
            let _ = writeln!(w, "# TYPE {name} histogram");
            for m in &self.models {
                histogram(w, name, &labels(m), get(m), scale, bounds);
            }
        }
        out
    }
}

/// One histogram: cumulative buckets, `_sum` and `_count`. `scale` converts recorded values to
/// the exposed unit (nanoseconds → seconds).
fn histogram(
    w: &mut String,
    name: &str,
    labels: &str,
    h: &Histogram<u64>,
    scale: f64,
    bounds: &[f64],
) {
    for bound in bounds {
        let limit = (bound / scale).round() as u64;
        let _ = writeln!(
            w,
            "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
            h.count_between(0, limit)
        );
    }
    let _ = writeln!(w, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(
        w,
        "{name}_sum{{{labels}}} {}",
        h.mean() * h.len() as f64 * scale
    );
    let _ = writeln!(w, "{name}_count{{{labels}}} {}", h.len());
}
