//! How often this machine takes a CPU away from a running thread, and for how long: a thread
//! reads the clock in a tight loop for SECONDS and counts every gap between two readings longer
//! than 50 µs (a "hiccup": the thread was not running, or its CPU was not), by size.
//!
//! ```text
//! taskset -c CPU cargo bench --bench cpu_hiccups -- [SECONDS]
//! ```
//!
//! Run it with nothing else of ours on the machine, on each CPU (one process per CPU, pinned
//! with `taskset`). A dedicated core shows only the kernel's timer ticks (a few µs). Every gap it
//! finds also stops whatever else runs on that CPU: a serving p99 budget of a millisecond cannot
//! hold through gaps of several, however the server is built. The kernel's own threads that ran
//! are visible in `/proc` (serve-sim reports them per run); time the hypervisor gives to other
//! guests is visible only as these gaps, and as `steal` where the hypervisor reports it.

mod args;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Gaps at least this long are counted.
const THRESHOLD: Duration = Duration::from_micros(50);

/// Upper edges of the reported gap sizes (the last bucket is open).
const BUCKETS_US: [u64; 6] = [100, 250, 500, 1_000, 2_000, 5_000];

fn main() -> Result<()> {
    let args = args::probe_args();
    let seconds: f64 = args
        .first()
        .map_or(Ok(10.0), |s| s.parse())
        .context("SECONDS")?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut counts = [0u64; BUCKETS_US.len() + 1];
    let mut lost = Duration::ZERO;
    let mut longest = Duration::ZERO;
    let mut last = start;
    while last < end {
        let now = Instant::now();
        let gap = now - last;
        if gap >= THRESHOLD {
            let us = gap.as_micros() as u64;
            let bucket = BUCKETS_US.iter().position(|&edge| us < edge);
            counts[bucket.unwrap_or(BUCKETS_US.len())] += 1;
            lost += gap;
            longest = longest.max(gap);
        }
        last = now;
    }
    let wall = last - start;
    println!(
        "{:.1} s: {} gaps of ≥ {} µs, {:.1} ms lost ({:.2} %), longest {:.0} µs",
        wall.as_secs_f64(),
        counts.iter().sum::<u64>(),
        THRESHOLD.as_micros(),
        lost.as_secs_f64() * 1e3,
        100.0 * lost.as_secs_f64() / wall.as_secs_f64(),
        longest.as_secs_f64() * 1e6,
    );
    let mut low = THRESHOLD.as_micros() as u64;
    for (i, count) in counts.iter().enumerate() {
        let label = match BUCKETS_US.get(i) {
            Some(high) => format!("{low}–{high} µs"),
            None => format!("≥ {low} µs"),
        };
        println!(
            "  {label:>14}: {count:>6}  ({:.1} per s)",
            *count as f64 / wall.as_secs_f64()
        );
        low = BUCKETS_US.get(i).copied().unwrap_or(low);
    }
    Ok(())
}
