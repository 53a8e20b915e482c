//! The external-engine protocol of the reference comparison harness:
//!
//! ```text
//! refbench MODEL_DIR BATCH THREADS REPS WARMUP
//! ```
//!
//! Loads the model (our format or the harness's `manifest.json` + `.npy` layout), compiles it,
//! runs WARMUP untimed and REPS timed `predict_batch` calls on a pool of THREADS, and prints
//! `{"lat_ns": [...]}` as the last line of stdout.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use densebatch::prelude::*;
use ndarray::Array2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, batch, threads, reps, warmup] = args.as_slice() else {
        bail!("usage: refbench MODEL_DIR BATCH THREADS REPS WARMUP");
    };
    let batch: usize = batch.parse().context("BATCH")?;
    let threads: usize = threads.parse().context("THREADS")?;
    let reps: usize = reps.parse().context("REPS")?;
    let warmup: usize = warmup.parse().context("WARMUP")?;

    let model = Model::load(model_dir)?;
    let compiled = model.compile(&CompileOptions::default())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut workspaces = compiled.new_workspaces(threads);
    // The same input as the harness's numpy engine: standard normal, fixed seed (values differ,
    // the work does not).
    let x = Array2::from_shape_fn((batch, compiled.input_width()), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((batch, compiled.output_width()));
    for _ in 0..warmup {
        predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
    }
    let mut lat_ns = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
        lat_ns.push(t0.elapsed().as_nanos() as u64);
    }
    std::hint::black_box(&y);
    println!(
        "{{\"lat_ns\": [{}]}}",
        lat_ns
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
