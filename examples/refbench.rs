//! The external-engine protocol of the reference comparison harness:
//!
//! ```text
//! refbench MODEL_DIR BATCH THREADS REPS WARMUP [PRECISION]
//! ```
//!
//! Loads the model (our format or the harness's `manifest.json` + `.npy` layout), compiles it
//! with its weights in PRECISION (`f32`, the default, `bf16` or `int8`, so that the harness can
//! time each precision as an engine of its own),
//! runs WARMUP untimed and REPS timed calls of a `Session` on THREADS threads, and prints
//! `{"lat_ns": [...]}` as the last line of stdout.
//!
//! A session's calling thread computes a share of each batch, as ONNX Runtime's calling thread
//! does, and its helpers spin between calls instead of sleeping. It is the fastest way in from
//! any thread (mnist-mlp on 2 threads of an Intel Xeon, µs per call against `predict_batch` on a
//! rayon pool called from inside it: batch 1 13.0 against 14.1, batch 32 156 against 212, batch
//! 2048 even; called from outside the pool `predict_batch` took 25.5 and 216).
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
    let session = compiled.session(threads)?;
    // The same input as the harness's numpy engine: standard normal, fixed seed (values differ,
    // the work does not).
    let x = Array2::from_shape_fn((batch, session.input_width()), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((batch, session.output_width()));
    let warmup_start = Instant::now();
    let mut warmed = 0;
    while warmed < warmup || warmup_start.elapsed() < MIN_WARMUP {
        session.predict_into(x.view(), y.view_mut())?;
        warmed += 1;
    }
    let mut lat_ns = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        session.predict_into(x.view(), y.view_mut())?;
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
