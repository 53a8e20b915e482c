//! How steady this machine's CPUs are: each of THREADS threads runs the same register-only loop
//! (independent multiply-adds, no memory traffic) in short blocks for SECONDS, and the median
//! block time per window is printed per thread.
//!
//! ```text
//! cargo run --release --example cpu_spells -- [THREADS] [SECONDS]
//! ```
//!
//! On a dedicated core every window shows the same time. On a shared virtual machine some windows
//! are slower, on one vCPU at a time or on both: the host runs that vCPU at part speed for a
//! spell. Every benchmark run on such a machine inherits those spells, which is why single cells
//! of the comparison table move from run to run while the minima stay put.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Length of a reporting window.
const WINDOW: Duration = Duration::from_millis(250);

/// Loop iterations per timed block (about half a millisecond on a 3 GHz core).
const BLOCK_ITERATIONS: usize = 100_000;

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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    // Per thread: (block end offset, block duration).
    let timings: Vec<Vec<(Duration, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut times = Vec::new();
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        std::hint::black_box(block(t as f32));
                        let took = t0.elapsed();
                        times.push((t0 - start + took, took));
                    }
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("spinner"))
            .collect()
    });
    println!("median block time (ms) per {WINDOW:?} window, one column per thread");
    let windows = (seconds / WINDOW.as_secs_f64()).ceil() as u32;
    for w in 0..windows {
        let (lo, hi) = (WINDOW * w, WINDOW * (w + 1));
        let mut line = format!("{:6.2} s", lo.as_secs_f64());
        for times in &timings {
            let mut inside: Vec<f64> = times
                .iter()
                .filter(|(at, _)| *at > lo && *at <= hi)
                .map(|(_, d)| d.as_secs_f64() * 1e3)
                .collect();
            inside.sort_by(f64::total_cmp);
            match inside.get(inside.len() / 2) {
                Some(median) => line += &format!("  {median:6.3}"),
                None => line += "       -",
            }
        }
        println!("{line}");
    }
    Ok(())
}
