//! Measures what one row costs on one thread at each small batch size:
//!
//! ```text
//! cargo bench --bench row_cost -- MODEL_DIR [MAX_BATCH] [ROUNDS]
//! ```
//!
//! Runs batches of 1..=MAX_BATCH rows (default 8) on the calling thread, one block of calls per
//! size in each of ROUNDS rounds (default 20), and prints per size the minimum and median time
//! per row over the rounds' medians. Each row count has its own register tile, so a tile that
//! spills shows up as a size whose rows cost more than both neighbours'.

mod args;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use densebatch::prelude::*;
use ndarray::Array2;

/// Calls per size and round.
const CALLS: usize = 50;

const USAGE: &str = "cargo bench --bench row_cost -- MODEL_DIR [MAX_BATCH] [ROUNDS]";

fn main() -> Result<()> {
    let Some(args) = args::required_args(USAGE) else {
        return Ok(());
    };
    let [model_dir, rest @ ..] = args.as_slice() else {
        bail!("usage: {USAGE}");
    };
    let max_batch: usize = rest
        .first()
        .map_or(Ok(8), |r| r.parse())
        .context("MAX_BATCH")?;
    let rounds: usize = rest
        .get(1)
        .map_or(Ok(20), |r| r.parse())
        .context("ROUNDS")?;
    let model = Model::load(model_dir)?.compile()?;
    let mut workspace = model.new_workspace();
    let x = Array2::from_shape_fn((max_batch, model.input_width()), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((max_batch, model.output_width()));
    // Per size, each round's median ns per row.
    let mut medians = vec![Vec::with_capacity(rounds); max_batch + 1];
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..rounds {
        for (rows, round_medians) in medians.iter_mut().enumerate().skip(1) {
            let xs = x.slice(ndarray::s![..rows, ..]);
            let mut ys = y.slice_mut(ndarray::s![..rows, ..]);
            times.clear();
            for _ in 0..CALLS {
                let start = Instant::now();
                model.predict_into(&mut workspace, xs, ys.view_mut())?;
                times.push(start.elapsed().as_nanos() as f64 / rows as f64);
            }
            times.sort_by(f64::total_cmp);
            round_medians.push(times[CALLS / 2]);
        }
    }
    println!(
        "{}, one thread: ns per row (over {rounds} round medians)",
        model.name()
    );
    println!("{:>5} {:>10} {:>10}", "rows", "min", "median");
    for (rows, round_medians) in medians.iter_mut().enumerate().skip(1) {
        round_medians.sort_by(f64::total_cmp);
        let (min, median) = (round_medians[0], round_medians[rounds / 2]);
        println!("{rows:>5} {min:>10.0} {median:>10.0}");
    }
    Ok(())
}
