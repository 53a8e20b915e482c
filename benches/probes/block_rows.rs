//! Measures how the rows per block move a compiled model's speed, to set the block sizes in
//! `plan/tuning.rs`:
//!
//! ```text
//! cargo bench --bench block_rows -- MODEL PRECISION [BATCHES] [BLOCK_ROWS] [THREADS] [ROUNDS]
//! ```
//!
//! MODEL is a model directory; PRECISION a weight precision (`f32`, `bf16`, `int8`,
//! `int8-full`). BATCHES (default `128,512`) and BLOCK_ROWS (default `0,160`; 0 is the default
//! rule) are comma lists. For each batch size, sessions of THREADS threads (default 1), one per
//! block size, are called in turn in blocks of calls, in ROUNDS rounds (default 15); each
//! round's median is compared with the first block size's in the same round.

mod args;
mod rounds;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use densebatch::Session;
use densebatch::prelude::*;
use ndarray::Array2;

/// Calls per block of calls.
const CALLS: usize = 50;

/// The median call time of one block of calls, µs.
fn block_median(session: &Session, x: &Array2<f32>, y: &mut Array2<f32>) -> Result<f64> {
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        session.predict_into(x.view(), y.view_mut())?;
        times.push(start.elapsed().as_nanos() as f64 / 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[CALLS / 2])
}

const USAGE: &str = "cargo bench --bench block_rows -- MODEL PRECISION [BATCHES] [BLOCK_ROWS] \
                     [THREADS] [ROUNDS]";

fn main() -> Result<()> {
    let Some(args) = args::required_args(USAGE) else {
        return Ok(());
    };
    let [model_dir, precision, rest @ ..] = args.as_slice() else {
        bail!("usage: {USAGE}");
    };
    let precision: Precision = precision.parse().context("PRECISION")?;
    let batches = args::usize_list(rest.first(), "128,512", "BATCHES")?;
    let blocks = args::usize_list(rest.get(1), "0,160", "BLOCK_ROWS")?;
    let threads: usize = rest
        .get(2)
        .map_or(Ok(1), |t| t.parse())
        .context("THREADS")?;
    let rounds: usize = rest
        .get(3)
        .map_or(Ok(15), |r| r.parse())
        .context("ROUNDS")?;
    let model = Model::load(model_dir)?;
    let sessions = blocks
        .iter()
        .map(|&rows| {
            let options = CompileOptions::default().precision(precision);
            let options = if rows == 0 {
                options
            } else {
                options.block_rows(rows)
            };
            model.compile_with(&options)?.session(threads)
        })
        .collect::<densebatch::Result<Vec<_>>>()?;
    println!(
        "{} ({precision}), {threads} thread(s): median µs per call, and speed against block \
         rows {} (median of {rounds} per-round ratios; 0: the default rule)",
        model.spec().name,
        blocks[0]
    );
    let headers: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
    println!("| batch | {} |", headers.join(" | "));
    println!("|---:|{}", "---|".repeat(blocks.len()));
    for &batch in &batches {
        let x = Array2::from_shape_fn((batch, model.spec().input_width), |(i, j)| {
            (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
        });
        let mut y = Array2::<f32>::zeros((batch, sessions[0].output_width()));
        for session in &sessions {
            block_median(session, &x, &mut y)?; // warm-up
        }
        let results = rounds::against_first(sessions.len(), rounds, |i| {
            block_median(&sessions[i], &x, &mut y)
        })?;
        let cells: Vec<String> = results
            .iter()
            .map(|(median, speed)| format!("{median:.1} µs ({speed:.2}×)"))
            .collect();
        println!("| {batch} | {} |", cells.join(" | "));
    }
    Ok(())
}
