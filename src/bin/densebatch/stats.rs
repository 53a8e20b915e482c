//! Per-batch timing and memory, and the summary every command prints.

use std::time::Duration;

use densebatch::Predictor;

/// Latency and allocation of every batch of a run.
#[derive(Debug, Default)]
pub struct BatchStats {
    latencies_ns: Vec<u64>,
    allocated: Vec<u64>,
    rows: u64,
}

impl BatchStats {
    /// Records one batch of `rows` samples: its time and the heap bytes it allocated.
    pub fn record(&mut self, rows: usize, elapsed: Duration, allocated_bytes: u64) {
        self.allocated.push(allocated_bytes);
        self.latencies_ns.push(elapsed.as_nanos() as u64);
        self.rows += rows as u64;
    }

    /// Batches measured.
    pub fn batches(&self) -> usize {
        self.latencies_ns.len()
    }

    /// The `q` quantile (0..=1) of per-batch latency, nearest rank.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        if self.latencies_ns.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies_ns.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Duration::from_nanos(sorted[rank - 1])
    }

    /// Mean and largest heap bytes allocated during one batch.
    pub fn allocated_per_batch(&self) -> (f64, u64) {
        let max = self.allocated.iter().copied().max().unwrap_or(0);
        let mean = self.allocated.iter().sum::<u64>() as f64 / self.allocated.len().max(1) as f64;
        (mean, max)
    }

    /// Prints the summary: throughput, latency, memory.
    ///
    /// `wall` is the whole run (I/O included); throughput is also given for compute alone.
    /// `scratch_bytes` is what was allocated once up front for the batches (workspaces, buffers).
    pub fn print_summary(
        &self,
        model: &dyn Predictor,
        threads: usize,
        wall: Duration,
        scratch_bytes: usize,
    ) {
        let compute_ns: u64 = self.latencies_ns.iter().sum();
        let compute = Duration::from_nanos(compute_ns);
        let per_s = |d: Duration| self.rows as f64 / d.as_secs_f64().max(1e-9);
        let (alloc_mean, alloc_max) = self.allocated_per_batch();
        println!(
            "samples      {} in {} batches, {} threads",
            self.rows,
            self.batches(),
            threads
        );
        println!(
            "throughput   {:.0} samples/s end to end, {:.0} samples/s in compute ({:.2} GFLOP/s)",
            per_s(wall),
            per_s(compute),
            self.rows as f64 * model.flops_per_sample() as f64
                / compute.as_secs_f64().max(1e-9)
                / 1e9
        );
        println!(
            "batch time   p50 {}  p99 {}  max {}",
            fmt_duration(self.latency_quantile(0.5)),
            fmt_duration(self.latency_quantile(0.99)),
            fmt_duration(self.latency_quantile(1.0)),
        );
        println!(
            "memory       allocated per batch: mean {alloc_mean:.0} B, max {alloc_max} B; \
             scratch allocated once: {}",
            fmt_bytes(scratch_bytes as u64)
        );
        match peak_rss_bytes() {
            Some(rss) => println!("peak RSS     {}", fmt_bytes(rss)),
            None => println!("peak RSS     unknown on this platform"),
        }
    }
}

/// The process's peak resident set size (`VmHWM` in /proc/self/status), where Linux offers it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `1.23 ms`, `45.6 µs`…
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `12.3 MiB`, `456 B`…
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
