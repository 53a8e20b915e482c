//! The snapshot in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::histograms::HistogramSnapshot;
use super::record::CloseReason;
use super::snapshot::{MetricsSnapshot, ModelSnapshot};
use crate::scheduler::ModelState;

/// Upper bounds (seconds) of the latency histogram buckets: 10 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    1.0, 5.0, 10.0,
];
/// Upper bounds of the batch-size histogram buckets.
const ROW_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A counter's name, help text, and how to read it from a model's snapshot.
type CounterSpec = (&'static str, &'static str, fn(&ModelSnapshot) -> u64);
/// A histogram's name, help text, and which of a model's histograms it is.
type HistogramSpec = (
    &'static str,
    &'static str,
    fn(&ModelSnapshot) -> &HistogramSnapshot,
);

const STATES: [ModelState; 5] = [
    ModelState::Warming,
    ModelState::Ready,
    ModelState::Degraded,
    ModelState::Draining,
    ModelState::Stopped,
];

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
    /// latency, queue wait, compute, batch rows) as Prometheus text.
    ///
    /// ```
    /// use densebatch::{Scheduler, SchedulerConfig};
    /// let scheduler = Scheduler::new(SchedulerConfig::default().cpus(1)).unwrap();
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
        let _ = writeln!(w, "densebatch_cpus {}", self.budget.cpus);
        let _ = writeln!(
            w,
            "# HELP densebatch_pool_threads Threads of the compute pool."
        );
        let _ = writeln!(w, "# TYPE densebatch_pool_threads gauge");
        let _ = writeln!(w, "densebatch_pool_threads {}", self.budget.pool_threads);

        let counters: [CounterSpec; 11] = [
            ("accepted", "Requests accepted.", |m| m.counters.accepted),
            ("rejected_full", "Requests refused: queue full.", |m| {
                m.counters.rejected_full
            }),
            (
                "rejected_timeout",
                "Requests refused: blocking submit timed out.",
                |m| m.counters.rejected_timeout,
            ),
            ("rejected_invalid", "Requests refused by validation.", |m| {
                m.counters.rejected_invalid
            }),
            ("completed", "Requests answered with a result.", |m| {
                m.counters.completed
            }),
            ("failed", "Requests answered with a model error.", |m| {
                m.counters.failed
            }),
            ("expired", "Requests expired before compute.", |m| {
                m.counters.expired
            }),
            ("cancelled", "Requests cancelled before compute.", |m| {
                m.counters.cancelled
            }),
            ("panicked", "Requests answered ModelPanicked.", |m| {
                m.counters.panicked
            }),
            ("panics", "Worker restarts after a panic.", |m| {
                m.counters.panics
            }),
            (
                "records_dropped",
                "Batch records the record stream dropped.",
                |m| m.counters.records_dropped,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(w, "# HELP densebatch_requests_{name}_total {help}");
            let _ = writeln!(w, "# TYPE densebatch_requests_{name}_total counter");
            for m in &self.models {
                let _ = writeln!(
                    w,
                    "densebatch_requests_{name}_total{{{}}} {}",
                    labels(m),
                    get(m)
                );
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
                    m.counters.closes[reason.index()]
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
            for state in STATES {
                let _ = writeln!(
                    w,
                    "densebatch_model_state{{{},state=\"{state}\"}} {}",
                    labels(m),
                    u8::from(m.state == state)
                );
            }
        }
        let histograms: [HistogramSpec; 3] = [
            (
                "request_latency_seconds",
                "Submit to reply, per request.",
                |m| &m.request_latency,
            ),
            (
                "queue_wait_seconds",
                "Submit to batch close, per request.",
                |m| &m.queue_wait,
            ),
            ("compute_seconds", "Compute time per batch.", |m| &m.compute),
        ];
        for (name, help, get) in histograms {
            let _ = writeln!(w, "# HELP densebatch_{name} {help}");
            let _ = writeln!(w, "# TYPE densebatch_{name} histogram");
            for m in &self.models {
                histogram(
                    w,
                    &format!("densebatch_{name}"),
                    &labels(m),
                    get(m),
                    1e-9,
                    &LATENCY_BUCKETS,
                );
            }
        }
        let _ = writeln!(w, "# HELP densebatch_batch_rows Rows per batch.");
        let _ = writeln!(w, "# TYPE densebatch_batch_rows histogram");
        for m in &self.models {
            histogram(
                w,
                "densebatch_batch_rows",
                &labels(m),
                &m.batch_rows,
                1.0,
                &ROW_BUCKETS,
            );
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
    h: &HistogramSnapshot,
    scale: f64,
    bounds: &[f64],
) {
    for bound in bounds {
        let limit = (bound / scale).round() as u64;
        let _ = writeln!(
            w,
            "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
            h.count_at_or_below(limit)
        );
    }
    let _ = writeln!(w, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(
        w,
        "{name}_sum{{{labels}}} {}",
        h.mean() * h.count() as f64 * scale
    );
    let _ = writeln!(w, "{name}_count{{{labels}}} {}", h.count());
}
