//! Measures what weight prefetching, or huge pages, do for one model, batch size and thread
//! count:
//!
//! ```text
//! cargo bench --bench prefetch_probe -- MODEL_DIR BATCH THREADS [REPS] [prefetch|huge-pages]
//! ```
//!
//! Compiles the model twice, the option off and on ([`CompileOptions::prefetch_weights`] or
//! [`CompileOptions::huge_pages`]), and alternates the two call by call, so that both see the
//! same machine and each call follows one on the other copy of the weights; prints each one's
//! median and the median of the paired speed-ups. This is the measurement behind both defaults
//! (on for weights streamed from DRAM).

mod args;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::Array2;

const USAGE: &str =
    "cargo bench --bench prefetch_probe -- MODEL_DIR BATCH THREADS [REPS] [prefetch|huge-pages]";

fn main() -> Result<()> {
    let Some(args) = args::required_args(USAGE) else {
        return Ok(());
    };
    let [model_dir, batch, threads, rest @ ..] = args.as_slice() else {
        bail!("usage: {USAGE}");
    };
    let batch: usize = batch.parse().context("BATCH")?;
    let threads: usize = threads.parse().context("THREADS")?;
    let reps: usize = rest.first().map_or(Ok(30), |r| r.parse()).context("REPS")?;
    let option = rest.get(1).map_or("prefetch", String::as_str);
    let model = Model::load(model_dir)?;
    let compile = |on| {
        model
            .compile_with(&match option {
                "prefetch" => {
                    CompileOptions::default().tuning(Tuning::default().prefetch_weights(on))
                }
                "huge-pages" => CompileOptions::default().tuning(Tuning::default().huge_pages(on)),
                other => bail!("unknown option {other:?}: prefetch or huge-pages"),
            })
            .map_err(anyhow::Error::from)
    };
    let (off, on) = (compile(false)?, compile(true)?);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut workspaces = off.new_workspaces(threads);
    let x = Array2::from_shape_fn((batch, off.input_width()), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((batch, off.output_width()));
    let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
    for rep in 0..reps + 3 {
        for (compiled, times) in [(&off, &mut t_off), (&on, &mut t_on)] {
            let start = Instant::now();
            predict_batch(compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
            if rep >= 3 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let speedups = t_off.iter().zip(&t_on).map(|(a, b)| a / b).collect();
    println!(
        "batch {batch}, {threads} threads: {option} off {:.3} ms, on {:.3} ms (medians); paired speed-up on/off {:.3}",
        median(t_off) * 1e3,
        median(t_on) * 1e3,
        median(speedups)
    );
    Ok(())
}
