//! How steady this machine's CPUs are: each of THREADS threads alternates two register-only loops
//! in short blocks for SECONDS, and the median block time of each per window is printed per
//! thread. One loop is floating-point multiply-adds on vector registers (what a dense kernel
//! does); the other is a chain of dependent integer operations, which uses neither the vector
//! pipes nor memory and so times the clock and the share of time the vCPU actually runs.
//!
//! ```text
//! cargo bench --bench cpu_spells -- [THREADS] [SECONDS]
//! ```
//!
//! On a dedicated core every window shows the same time. On a shared virtual machine some windows
//! are slower, on one vCPU at a time or on both: that vCPU computes at part speed for a
//! spell. Every benchmark run on such a machine inherits those spells, which is why single cells
//! of the comparison table move from run to run while the minima stay put. When only the
//! multiply-add column slows, the vCPU runs at full clock but shares its core's vector pipes with
//! another tenant's hyperthread; when both slow, the vCPU is clocked down or descheduled.

mod args;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Length of a reporting window.
const WINDOW: Duration = Duration::from_millis(250);

/// Loop iterations per timed multiply-add block (about half a millisecond on a 3 GHz core).
const BLOCK_ITERATIONS: usize = 100_000;

/// Steps per timed integer-chain block (about half a millisecond on a 3 GHz core).
const CHAIN_STEPS: usize = 350_000;

/// Six independent accumulators of eight lanes: enough to keep the vector pipes busy, and few
/// enough to stay in the sixteen SSE registers of any x86-64.
fn block(seed: f32) -> f32 {
    let mut acc = [[seed; 8]; 6];
    let (m, c) = (
        std::hint::black_box(0.999_9f32),
        std::hint::black_box(1e-4f32),
    );
    for _ in 0..BLOCK_ITERATIONS {
        for lanes in acc.iter_mut() {
            for v in lanes.iter_mut() {
                *v = *v * m + c;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// A chain of dependent integer multiply-adds: each step waits for the previous one, so the time
/// is the chain's latency in cycles over the clock, whatever the vector pipes are doing.
fn chain(seed: u64) -> u64 {
    let (m, c) = (
        std::hint::black_box(6_364_136_223_846_793_005u64),
        std::hint::black_box(1_442_695_040_888_963_407u64),
    );
    let mut x = seed;
    for _ in 0..CHAIN_STEPS {
        x = x.wrapping_mul(m).wrapping_add(c);
    }
    x
}

/// One timed block: when it ended (from the start) and how long each loop took.
struct Sample {
    at: Duration,
    multiply_add: Duration,
    integer_chain: Duration,
}

fn main() -> Result<()> {
    let args = args::probe_args();
    let threads: usize = args
        .first()
        .map_or(Ok(2), |s| s.parse())
        .context("THREADS")?;
    let seconds: f64 = args
        .get(1)
        .map_or(Ok(5.0), |s| s.parse())
        .context("SECONDS")?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let timings: Vec<Vec<Sample>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut samples = Vec::new();
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        std::hint::black_box(block(t as f32));
                        let t1 = Instant::now();
                        std::hint::black_box(chain(t as u64));
                        let t2 = Instant::now();
                        samples.push(Sample {
                            at: t2 - start,
                            multiply_add: t1 - t0,
                            integer_chain: t2 - t1,
                        });
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("spinner"))
            .collect()
    });
    println!(
        "median block time (ms) per {WINDOW:?} window, per thread: multiply-add / integer chain"
    );
    let windows = (seconds / WINDOW.as_secs_f64()).ceil() as u32;
    for w in 0..windows {
        let (lo, hi) = (WINDOW * w, WINDOW * (w + 1));
        let mut line = format!("{:6.2} s", lo.as_secs_f64());
        for samples in &timings {
            let inside: Vec<&Sample> = samples.iter().filter(|s| s.at > lo && s.at <= hi).collect();
            let fp = median_ms(inside.iter().map(|s| s.multiply_add));
            let int = median_ms(inside.iter().map(|s| s.integer_chain));
            match (fp, int) {
                (Some(fp), Some(int)) => line += &format!("  {fp:6.3} / {int:6.3}"),
                _ => line += "        -  /      -",
            }
        }
        println!("{line}");
    }
    Ok(())
}

/// The median of some durations, in milliseconds; `None` when there are none.
fn median_ms(durations: impl Iterator<Item = Duration>) -> Option<f64> {
    let mut ms: Vec<f64> = durations.map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied()
}
