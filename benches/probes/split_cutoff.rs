//! Measures where splitting a small batch's layers by output columns starts to pay, to set
//! `DEFAULT_SPLIT_MIN_FLOPS`:
//!
//! ```text
//! cargo bench --bench split_cutoff -- MODEL [BATCHES] [CUTOFFS] [ROUNDS] [PRECISION]
//! ```
//!
//! MODEL is a model directory, or `random:300,257,129,7` for random weights of those widths
//! (ReLU hidden layers, softmax output).
//! BATCHES (default `1,2,3,4,6,8`) and CUTOFFS (values of `split_min_flops`, and of
//! `pool_split_min_flops` with them, so that both callers see the same cut-off; default
//! `2000000,500000,250000`) are comma lists. On a two-thread pool, for each batch size, the
//! models compiled with each cut-off are called in turn, in blocks of calls, in ROUNDS rounds
//! (default 20), in weight precision PRECISION (default f32); each round's median is compared with the first cut-off's in the same round.
//! Twice: with the caller on a pool thread (calls back to back, as a batching worker on the pool
//! would make them) and with the caller outside the pool (every call then wakes the pool first).

mod args;
mod rounds;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use densebatch::prelude::*;
use densebatch::{Precision, Tuning};
use ndarray::Array2;
use rayon::ThreadPool;

/// Calls per block.
const CALLS: usize = 100;

/// Pool threads.
const THREADS: usize = 2;

/// The median call time of one block, µs.
fn block_median(
    model: &CompiledModel,
    pool: &ThreadPool,
    workspaces: &mut [Workspace],
    x: &Array2<f32>,
    y: &mut Array2<f32>,
) -> Result<f64> {
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        predict_batch(model, pool, workspaces, x.view(), y.view_mut())?;
        times.push(start.elapsed().as_nanos() as f64 / 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[CALLS / 2])
}

/// For each cut-off: the median over rounds of its block median, and of its speed against the
/// first cut-off's block in the same round.
fn compare(
    models: &[CompiledModel],
    pool: &ThreadPool,
    batch: usize,
    rounds: usize,
) -> Result<Vec<(f64, f64)>> {
    let x = Array2::from_shape_fn((batch, models[0].input_width()), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((batch, models[0].output_width()));
    let mut workspaces: Vec<_> = models.iter().map(|m| m.new_workspaces(THREADS)).collect();
    rounds::against_first(models.len(), rounds, |i| {
        block_median(&models[i], pool, &mut workspaces[i], &x, &mut y)
    })
}

const USAGE: &str =
    "cargo bench --bench split_cutoff -- MODEL [BATCHES] [CUTOFFS] [ROUNDS] [PRECISION]";

fn main() -> Result<()> {
    let Some(args) = args::required_args(USAGE) else {
        return Ok(());
    };
    let [model_arg, rest @ ..] = args.as_slice() else {
        bail!("usage: {USAGE}");
    };
    let batches = args::usize_list(rest.first(), "1,2,3,4,6,8", "BATCHES")?;
    let cutoffs = args::usize_list(rest.get(1), "2000000,500000,250000", "CUTOFFS")?;
    let rounds: usize = rest
        .get(2)
        .map_or(Ok(20), |r| r.parse())
        .context("ROUNDS")?;
    let precision: Precision = rest
        .get(3)
        .map_or(Ok(Precision::F32), |p| p.parse())
        .context("PRECISION")?;
    let model = match model_arg.strip_prefix("random:") {
        Some(widths) => {
            let widths = args::usize_list(Some(&widths.to_string()), "", "widths")?;
            Model::random(&widths, Activation::Relu, Activation::Softmax, 7)
        }
        None => Model::load(model_arg)?,
    };
    let models = cutoffs
        .iter()
        .map(|&cutoff| {
            model.compile_with(
                &CompileOptions::default().precision(precision).tuning(
                    Tuning::default()
                        .split_min_flops(cutoff as u64)
                        .pool_split_min_flops(cutoff as u64),
                ),
            )
        })
        .collect::<densebatch::Result<Vec<_>>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()?;
    println!(
        "{} ({precision}), {THREADS} threads: median µs per call, and speed against split_min_flops = {} \
         (median of {rounds} per-round ratios)",
        models[0].name(),
        cutoffs[0]
    );
    let headers: Vec<String> = cutoffs.iter().map(|c| format!("{c}")).collect();
    println!("| caller | batch | {} |", headers.join(" | "));
    println!("|---|---:|{}", "---|".repeat(cutoffs.len()));
    for (caller, on_pool) in [("pool thread", true), ("outside pool", false)] {
        for &batch in &batches {
            let results = if on_pool {
                pool.install(|| compare(&models, &pool, batch, rounds))?
            } else {
                compare(&models, &pool, batch, rounds)?
            };
            let cells: Vec<String> = results
                .iter()
                .map(|(median, speed)| format!("{median:.1} µs ({speed:.2}×)"))
                .collect();
            println!("| {caller} | {batch} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}
