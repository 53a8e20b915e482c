//! The external-engine protocol of the reference comparison harness:
//!
//! ```text
//! refbench MODEL_DIR BATCH THREADS REPS WARMUP [PRECISION]
//! ```
//!
//! Loads the model (our format or the harness's `manifest.json` + `.npy` layout), compiles it
//! with its weights in PRECISION (`f32`, the default, `bf16` or `int8`, so that the harness can
//! time each precision as an engine of its own),
//! runs WARMUP untimed and REPS timed `predict_batch` calls on a pool of THREADS, and prints
//! `{"lat_ns": [...]}` as the last line of stdout.
//!
//! The calls are made from a thread of the pool (the loop runs inside `ThreadPool::install`), the
//! way a latency-minded caller uses the library: the calling thread then computes a share of
//! each batch, as ONNX Runtime's calling thread does, rather than handing every call to the pool
//! and sleeping until it is done (interleaved, 2 threads: mnist-mlp batch 8 1.37×, batch 32
//! 1.09×, batch 512 even; tiny-mlp batch 2048 1.76×).
//!
//! The warm-up lasts at least [`MIN_WARMUP`] as well. The harness starts this binary afresh for
//! every timed block, while the engines it runs in-process keep their threads busy from block to
//! block. A fresh process here runs slower for its first ≈ 150 ms: on the 2-core Zen 3 VM of the
//! Zen 3 table in benches/compare/RESULTS.md, mnist-mlp batch 512 on 2 threads took 9–12 ms per
//! call for the first 12–16 calls, then 4–6 ms (the same binary after a 300 ms warm-up: 5–6 ms
//! from the first timed call).
//! Timing that ramp would measure process start-up, not the engine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use densebatch::prelude::*;
use ndarray::Array2;

/// Shortest untimed warm-up, whatever WARMUP says (see the module docs).
const MIN_WARMUP: Duration = Duration::from_millis(300);

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_dir, batch, threads, reps, warmup, precision) = match args.as_slice() {
        [m, b, t, r, w] => (m, b, t, r, w, Precision::F32),
        [m, b, t, r, w, p] => (m, b, t, r, w, p.parse().context("PRECISION")?),
        _ => bail!("usage: refbench MODEL_DIR BATCH THREADS REPS WARMUP [f32|bf16|int8|int8-full]"),
    };
    let batch: usize = batch.parse().context("BATCH")?;
    let threads: usize = threads.parse().context("THREADS")?;
    let reps: usize = reps.parse().context("REPS")?;
    let warmup: usize = warmup.parse().context("WARMUP")?;

    let model = Model::load(model_dir)?;
    let compiled = model.compile_with(&CompileOptions::default().precision(precision))?;
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
    // On a pool thread (see the module docs).
    let lat_ns = pool.install(|| -> Result<Vec<u64>> {
        let warmup_start = Instant::now();
        let mut warmed = 0;
        while warmed < warmup || warmup_start.elapsed() < MIN_WARMUP {
            predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
            warmed += 1;
        }
        let mut lat_ns = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = Instant::now();
            predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
            lat_ns.push(t0.elapsed().as_nanos() as u64);
        }
        Ok(lat_ns)
    })?;
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
