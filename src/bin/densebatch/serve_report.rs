//! What a serve-sim run measured, per model and in total: the JSON shape and the printed tables.

use std::time::Duration;

use densebatch::{BatchRecord, CloseReason};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::machine::{CpuOverRun, CpuSet, OtherThread, ThreadUsage};
use crate::open_loop::{CollectReport, SendReport, latency_histogram};

/// Per-batch statistics gathered from the scheduler's batch records.
#[derive(Debug, Clone, Default)]
pub struct BatchTotals {
    /// Batches run.
    pub batches: u64,
    /// Rows computed.
    pub rows: u64,
    /// Batches per close reason, indexed by [`CloseReason::index`].
    pub closes: [u64; CloseReason::ALL.len()],
    /// Batches per size (index = rows).
    pub sizes: Vec<u64>,
    /// Heap bytes the worker allocated per batch: sum and largest.
    pub alloc_sum: u64,
    /// See `alloc_sum`.
    pub alloc_max: u64,
    /// Whether allocations were measured.
    pub alloc_counted: bool,
    /// Largest preallocated scratch one batch used.
    pub scratch_max: usize,
    /// Time in the model, summed.
    pub compute: Duration,
}

impl BatchTotals {
    /// Adds one batch record.
    pub fn add(&mut self, record: &BatchRecord) {
        self.batches += 1;
        self.rows += record.rows as u64;
        self.closes[close_index(record.close_reason)] += 1;
        if self.sizes.len() <= record.rows {
            self.sizes.resize(record.rows + 1, 0);
        }
        self.sizes[record.rows] += 1;
        self.alloc_sum += record.alloc_bytes;
        self.alloc_max = self.alloc_max.max(record.alloc_bytes);
        self.alloc_counted |= record.alloc_counted;
        self.scratch_max = self.scratch_max.max(record.scratch_bytes);
        self.compute += record.compute_time;
    }

    /// Adds another model's totals.
    pub fn merge(&mut self, other: &BatchTotals) {
        self.batches += other.batches;
        self.rows += other.rows;
        for (a, b) in self.closes.iter_mut().zip(other.closes) {
            *a += b;
        }
        if self.sizes.len() < other.sizes.len() {
            self.sizes.resize(other.sizes.len(), 0);
        }
        for (a, b) in self.sizes.iter_mut().zip(&other.sizes) {
            *a += b;
        }
        self.alloc_sum += other.alloc_sum;
        self.alloc_max = self.alloc_max.max(other.alloc_max);
        self.alloc_counted |= other.alloc_counted;
        self.scratch_max = self.scratch_max.max(other.scratch_max);
        self.compute += other.compute;
    }

    fn mean_batch(&self) -> f64 {
        self.rows as f64 / self.batches.max(1) as f64
    }
}

/// One model's (or the total's) results of one run, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The model's name, or `total`.
    pub model: String,
    /// Requests the sender submitted.
    pub sent: u64,
    /// Answered with outputs.
    pub ok: u64,
    /// Refused by `try_submit` (queue full).
    pub rejected: u64,
    /// Answered `DeadlineExceeded`.
    pub expired: u64,
    /// Answered with another error.
    pub failed: u64,
    /// Requests per second offered (scheduled).
    pub offered_rps: f64,
    /// `ok` requests per second, from the start to the last reply.
    pub achieved_rps: f64,
    /// Scheduled-send-to-reply latency of `ok` requests, microseconds.
    pub latency_us: Percentiles,
    /// Mean rows per batch.
    pub mean_batch: f64,
    /// Batches run.
    pub batches: u64,
    /// Batches per close reason.
    pub batch_close: Closes,
    /// Batches per size: `[rows, batches]` for every size that occurred.
    pub batch_sizes: Vec<[u64; 2]>,
    /// Heap bytes allocated per batch by the model's worker (reply payloads), when measured.
    pub mem_overhead_bytes_per_batch: MeanMax,
    /// Largest preallocated scratch (batch buffers + workspaces) one batch used, bytes.
    pub scratch_bytes_per_batch_max: usize,
    /// Mean time in the model per batch, microseconds.
    pub mean_compute_us: f64,
    /// Largest delay of a submit behind its scheduled time, microseconds.
    pub max_send_lag_us: f64,
    /// Mean delay of a submit behind its scheduled time, microseconds.
    pub mean_send_lag_us: f64,
    /// 99th percentile of that delay, microseconds.
    pub p99_send_lag_us: f64,
    /// The full batch's compute time at warmup, microseconds (per model).
    pub full_batch_compute_us: Option<f64>,
    /// What the p99 should stay under at moderate load: `max_wait` + 2 × the full batch's
    /// compute at warmup (a request waits at most `max_wait` for its batch to close, then for the
    /// batch running before it and its own), microseconds (per model).
    pub p99_bound_us: Option<f64>,
    /// The scheduler's own p99, from the actual submit to the reply as its worker measures it,
    /// microseconds (per model): without the sender's lag and the collector's wake-up.
    pub scheduler_p99_us: Option<f64>,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Batches per close reason.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Closes {
    /// Reached the batch size.
    pub full: u64,
    /// The oldest request waited `max_wait`.
    pub wait: u64,
    /// A deadline would otherwise be missed.
    pub deadline: u64,
    /// The model was draining.
    pub drain: u64,
}

/// Mean and largest value.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MeanMax {
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: u64,
}

/// Everything measured about one model (or all of them) in one run, before it is summarised.
#[derive(Debug)]
pub struct Measured {
    /// The model's name, or `total`.
    pub model: String,
    /// Offered requests per second.
    pub offered_rps: f64,
    /// Seconds from the start to the last reply (at least the send duration).
    pub elapsed: f64,
    /// The sender's report.
    pub send: SendReport,
    /// The collector's counts.
    pub ok: u64,
    /// See `ok`.
    pub expired: u64,
    /// See `ok`.
    pub failed: u64,
    /// Latencies (ns).
    pub latency: Histogram<u64>,
    /// Batch statistics.
    pub batches: BatchTotals,
    /// The full batch's compute time at warmup (the fastest of its rounds).
    pub full_batch_compute: Option<Duration>,
    /// The batch policy's `max_wait`.
    pub max_wait: Duration,
    /// The scheduler's own p99, submit to reply as its worker measures it (per model).
    pub scheduler_p99: Option<Duration>,
}

impl Measured {
    /// One model's measurements.
    pub fn new(
        model: String,
        offered_rps: f64,
        elapsed: f64,
        send: SendReport,
        collect: CollectReport,
        batches: BatchTotals,
    ) -> Self {
        Measured {
            model,
            offered_rps,
            elapsed,
            send,
            ok: collect.ok,
            expired: collect.expired,
            failed: collect.failed,
            latency: collect.latency,
            batches,
            full_batch_compute: None,
            max_wait: Duration::ZERO,
            scheduler_p99: None,
        }
    }

    /// The sum over models.
    pub fn total(parts: &[Measured]) -> Self {
        let mut total = Measured {
            model: "total".to_string(),
            offered_rps: 0.0,
            elapsed: 0.0,
            send: SendReport::default(),
            ok: 0,
            expired: 0,
            failed: 0,
            latency: latency_histogram(),
            batches: BatchTotals::default(),
            full_batch_compute: None,
            max_wait: Duration::ZERO,
            scheduler_p99: None,
        };
        let mut lag_weighted = 0.0;
        for part in parts {
            total.offered_rps += part.offered_rps;
            total.elapsed = total.elapsed.max(part.elapsed);
            total.send.sent += part.send.sent;
            total.send.rejected += part.send.rejected;
            total.send.max_lag = total.send.max_lag.max(part.send.max_lag);
            lag_weighted += part.send.mean_lag.as_secs_f64() * part.send.sent as f64;
            total
                .send
                .lag
                .add(&part.send.lag)
                .expect("histograms share their bounds");
            total.ok += part.ok;
            total.expired += part.expired;
            total.failed += part.failed;
            total
                .latency
                .add(&part.latency)
                .expect("histograms share their bounds");
            total.batches.merge(&part.batches);
        }
        total.send.mean_lag = Duration::from_secs_f64(lag_weighted / total.send.sent.max(1) as f64);
        total
    }

    /// Whether every request sent was answered exactly once (or refused).
    pub fn balanced(&self) -> bool {
        self.send.sent == self.ok + self.send.rejected + self.expired + self.failed
    }

    /// The JSON summary.
    pub fn outcome(&self) -> Outcome {
        let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1e3;
        let empty = self.latency.is_empty();
        let pick = |q| if empty { 0.0 } else { us(q) };
        let b = &self.batches;
        Outcome {
            model: self.model.clone(),
            sent: self.send.sent,
            ok: self.ok,
            rejected: self.send.rejected,
            expired: self.expired,
            failed: self.failed,
            offered_rps: self.offered_rps,
            achieved_rps: self.ok as f64 / self.elapsed.max(1e-9),
            latency_us: Percentiles {
                p50: pick(0.5),
                p90: pick(0.9),
                p99: pick(0.99),
                p999: pick(0.999),
                max: if empty {
                    0.0
                } else {
                    self.latency.max() as f64 / 1e3
                },
            },
            mean_batch: b.mean_batch(),
            batches: b.batches,
            batch_close: Closes {
                full: b.closes[close_index(CloseReason::Full)],
                wait: b.closes[close_index(CloseReason::Wait)],
                deadline: b.closes[close_index(CloseReason::Deadline)],
                drain: b.closes[close_index(CloseReason::Drain)],
            },
            batch_sizes: b
                .sizes
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(rows, n)| [rows as u64, *n])
                .collect(),
            mem_overhead_bytes_per_batch: MeanMax {
                mean: b.alloc_sum as f64 / b.batches.max(1) as f64,
                max: b.alloc_max,
            },
            scratch_bytes_per_batch_max: b.scratch_max,
            mean_compute_us: b.compute.as_secs_f64() * 1e6 / b.batches.max(1) as f64,
            max_send_lag_us: self.send.max_lag.as_secs_f64() * 1e6,
            mean_send_lag_us: self.send.mean_lag.as_secs_f64() * 1e6,
            p99_send_lag_us: if self.send.lag.is_empty() {
                0.0
            } else {
                self.send.lag.value_at_quantile(0.99) as f64 / 1e3
            },
            full_batch_compute_us: self.full_batch_compute.map(|d| d.as_secs_f64() * 1e6),
            p99_bound_us: self
                .full_batch_compute
                .map(|d| (self.max_wait + 2 * d).as_secs_f64() * 1e6),
            scheduler_p99_us: self.scheduler_p99.map(|d| d.as_secs_f64() * 1e6),
        }
    }
}

/// One run (one offered load) as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The offered load as a fraction of the measured capacity, when it was set that way.
    pub load: Option<f64>,
    /// One entry per model.
    pub models: Vec<Outcome>,
    /// All models together.
    pub total: Outcome,
    /// The threads' and the CPUs' time over the run (Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineRun>,
}

/// What the threads and the CPUs did over one run: the figures that tell the machine from us.
#[derive(Debug, Clone, Serialize)]
pub struct MachineRun {
    /// Wall time between the two readings, ms.
    pub wall_ms: f64,
    /// Each thread of the scheduler and of the load generator.
    pub threads: Vec<ThreadRow>,
    /// Each CPU, from /proc/stat's clock ticks: sampled, and on a virtual machine with a
    /// tickless kernel busy + idle can fall short of the wall time by a fifth. The run-queue
    /// wait of our threads is the exact measure of what others took from them.
    pub cpus: Vec<CpuOverRun>,
    /// Threads of other processes (kernel threads included) that ran during the run, busiest
    /// first: what can take a CPU from a pinned thread without showing as steal.
    pub others: Vec<OtherThread>,
}

/// One thread over a run.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadRow {
    /// What it is: `worker MODEL`, `pool N`, `sender MODEL`, `collector MODEL`, `records`.
    pub thread: String,
    /// The CPUs it was pinned to, if it was.
    pub pinned: Option<String>,
    /// Time on a CPU, ms.
    pub cpu_ms: f64,
    /// Time runnable but waiting for a CPU, ms.
    pub runqueue_ms: f64,
    /// Times it blocked or slept.
    pub voluntary_switches: u64,
    /// Times it was preempted.
    pub involuntary_switches: u64,
}

impl ThreadRow {
    /// A row from a thread's usage.
    pub fn new(thread: String, pinned: Option<&CpuSet>, usage: ThreadUsage) -> Self {
        ThreadRow {
            thread,
            pinned: pinned.map(ToString::to_string),
            cpu_ms: usage.cpu_ns as f64 / 1e6,
            runqueue_ms: usage.runqueue_ns as f64 / 1e6,
            voluntary_switches: usage.voluntary,
            involuntary_switches: usage.involuntary,
        }
    }
}

/// Prints, per run, each thread's and each CPU's time.
pub fn print_machine_table(runs: &[RunOutcome]) {
    println!(
        "{:>5}  {:<22} {:>6} {:>9} {:>6} {:>9} {:>8} {:>8}",
        "load", "thread / cpu", "pinned", "cpu ms", "cpu %", "runq ms", "vol cs", "invol cs"
    );
    for run in runs {
        let Some(m) = &run.machine else { continue };
        let label = load_label(run.load);
        for t in &m.threads {
            println!(
                "{:>5}  {:<22} {:>6} {:>9.1} {:>6.1} {:>9.2} {:>8} {:>8}",
                label,
                truncate(&t.thread, 22),
                t.pinned.as_deref().unwrap_or("-"),
                t.cpu_ms,
                100.0 * t.cpu_ms / m.wall_ms.max(1e-9),
                t.runqueue_ms,
                t.voluntary_switches,
                t.involuntary_switches,
            );
        }
        for c in &m.cpus {
            println!(
                "{:>5}  {:<22} {:>6} {:>9.0} {:>6.1}  steal {:.0} ms, idle {:.0} ms",
                label,
                format!("cpu{} busy", c.cpu),
                "",
                c.busy_ms,
                100.0 * c.busy_ms / m.wall_ms.max(1e-9),
                c.steal_ms,
                c.idle_ms,
            );
        }
        let others: f64 = m.others.iter().map(|o| o.cpu_ms).sum();
        let busiest: Vec<String> = m
            .others
            .iter()
            .take(3)
            .map(|o| format!("{} {:.1} ms", o.name, o.cpu_ms))
            .collect();
        println!(
            "{:>5}  {:<22} {:>6} {:>9.1} {:>6.1}  busiest: {}",
            label,
            "other processes",
            "",
            others,
            100.0 * others / m.wall_ms.max(1e-9),
            if busiest.is_empty() {
                "-".to_string()
            } else {
                busiest.join(", ")
            },
        );
    }
}

/// Heads the batch-size distribution columns of the batch table.
const SIZES_LABEL: &str = " % by size:";

/// Batch-size buckets of the printed distribution: 1, 2–3, 4–7, … up to `max_batch`.
pub fn size_buckets(max_batch: usize) -> Vec<(usize, usize)> {
    let mut buckets = Vec::new();
    let mut low = 1;
    while low <= max_batch {
        let high = (low * 2 - 1).min(max_batch);
        buckets.push((low, high));
        low *= 2;
    }
    buckets
}

fn bucket_label((low, high): (usize, usize)) -> String {
    if low == high {
        low.to_string()
    } else {
        format!("{low}-{high}")
    }
}

fn load_label(load: Option<f64>) -> String {
    load.map_or("-".to_string(), |l| format!("{l:.2}"))
}

/// Prints the latency table: one row per model (and a total when there are several) per run.
pub fn print_latency_table(runs: &[RunOutcome]) {
    println!(
        "{:>5}  {:<12} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "load",
        "model",
        "offered/s",
        "achvd/s",
        "sent",
        "ok",
        "rej",
        "exp",
        "fail",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "lag p99",
        "lag max",
    );
    for run in runs {
        for o in rows_of(run) {
            let l = &o.latency_us;
            println!(
                "{:>5}  {:<12} {:>9.0} {:>9.0} {:>8} {:>8} {:>6} {:>6} {:>4} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
                load_label(run.load),
                truncate(&o.model, 12),
                o.offered_rps,
                o.achieved_rps,
                o.sent,
                o.ok,
                o.rejected,
                o.expired,
                o.failed,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                o.p99_send_lag_us,
                o.max_send_lag_us,
            );
        }
    }
}

/// Prints each model's p99 bound and whether each run kept to it.
pub fn print_bounds(runs: &[RunOutcome]) {
    for run in runs {
        for o in &run.models {
            if let Some(bound) = o.p99_bound_us {
                let verdict = if o.latency_us.p99 <= bound && o.rejected == 0 {
                    "held"
                } else {
                    "missed"
                };
                println!(
                    "{:>5}  {:<12} p99 {:.0} µs (the scheduler's own, from submit: {:.0} µs) against max_wait + 2 × full batch ({:.0} µs at warmup) = {bound:.0} µs, {} rejected: {verdict}",
                    load_label(run.load),
                    truncate(&o.model, 12),
                    o.latency_us.p99,
                    o.scheduler_p99_us.unwrap_or(0.0),
                    o.full_batch_compute_us.unwrap_or(0.0),
                    o.rejected,
                );
            }
        }
    }
}

/// Prints the per-batch table: mean size, close reasons, size distribution, compute and memory.
pub fn print_batch_table(runs: &[RunOutcome], max_batch: usize) {
    let buckets = size_buckets(max_batch);
    let mut header = format!(
        "{:>5}  {:<12} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {SIZES_LABEL}",
        "load",
        "model",
        "batches",
        "mean",
        "full",
        "wait",
        "dline",
        "drain",
        "comp µs",
        "alloc/b",
        "alloc max"
    );
    for &b in &buckets {
        header.push_str(&format!(" {:>5}", bucket_label(b)));
    }
    println!("{header}");
    for run in runs {
        for o in rows_of(run) {
            let c = &o.batch_close;
            let mut line = format!(
                "{:>5}  {:<12} {:>7} {:>6.1} {:>6} {:>6} {:>6} {:>6} {:>8.1} {:>9.0} {:>9} {:w$}",
                load_label(run.load),
                truncate(&o.model, 12),
                o.batches,
                o.mean_batch,
                c.full,
                c.wait,
                c.deadline,
                c.drain,
                o.mean_compute_us,
                o.mem_overhead_bytes_per_batch.mean,
                o.mem_overhead_bytes_per_batch.max,
                "",
                w = SIZES_LABEL.chars().count()
            );
            for &(low, high) in &buckets {
                let n: u64 = o
                    .batch_sizes
                    .iter()
                    .filter(|[rows, _]| (low as u64..=high as u64).contains(rows))
                    .map(|[_, n]| n)
                    .sum();
                let share = 100.0 * n as f64 / o.batches.max(1) as f64;
                line.push_str(&format!(" {share:>5.1}"));
            }
            println!("{}", line.trim_end());
        }
    }
}

/// The rows printed for a run: each model, then the total when there are several.
fn rows_of(run: &RunOutcome) -> Vec<&Outcome> {
    let mut rows: Vec<&Outcome> = run.models.iter().collect();
    if run.models.len() > 1 {
        rows.push(&run.total);
    }
    rows
}

fn truncate(name: &str, width: usize) -> String {
    name.chars().take(width).collect()
}

/// Position of `reason` in [`CloseReason::ALL`] (the order of `closes`).
fn close_index(reason: CloseReason) -> usize {
    CloseReason::ALL
        .iter()
        .position(|&r| r == reason)
        .expect("every reason is in ALL")
}
