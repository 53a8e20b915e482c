//! Measures where forking a batch over two threads starts to pay, to set
//! `DEFAULT_PARALLEL_MIN_FLOPS`:
//!
//! ```text
//! cargo bench --bench parallel_cutoff -- [MODEL]   # default: models/tiny-mlp
//! ```
//!
//! MODEL is a model directory, or `random:300,257,129,7` for random weights of those widths.
//! For growing batch sizes it times the batch inline on one thread and forced over a two-thread
//! pool (cut-offs set to zero), interleaved, and prints the medians and their ratio, for a caller
//! outside the pool (each forked call wakes a pool thread, then the caller) and for one on a pool
//! thread (as `refbench` and the scheduler's worker call).

mod args;

use std::time::Instant;

use anyhow::Result;
use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::Array2;

fn median_ns(
    model: &CompiledModel,
    pool: &rayon::ThreadPool,
    ws: &mut [Workspace],
    x: &Array2<f32>,
    y: &mut Array2<f32>,
) -> Result<f64> {
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let t0 = Instant::now();
        predict_batch(model, pool, ws, x.view(), y.view_mut())?;
        times.push(t0.elapsed().as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    let path = args::probe_args()
        .into_iter()
        .next()
        .unwrap_or_else(|| "models/tiny-mlp".into());
    let model = match path.strip_prefix("random:") {
        Some(widths) => {
            let widths = widths
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()?;
            Model::random(&widths, Activation::Relu, Activation::Softmax, 7)
        }
        None => Model::load(&path)?,
    };
    let inline = model.compile_with(
        &CompileOptions::default().tuning(
            Tuning::default()
                .parallel_min_flops(u64::MAX)
                .split_min_flops(u64::MAX),
        ),
    )?;
    let forked = model.compile_with(
        &CompileOptions::default()
            .tuning(Tuning::default().parallel_min_flops(1).split_min_flops(1)),
    )?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let (mut ws1, mut ws2) = (inline.new_workspaces(1), forked.new_workspaces(2));
    println!(
        "| batch | kFLOP | inline 1 thread µs | forked, caller outside µs | inline / forked | \
         forked, caller on the pool µs | inline / forked |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for batch in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048] {
        let x = Array2::from_shape_fn((batch, inline.input_width()), |(i, j)| {
            ((i * 31 + j * 17) % 97) as f32 / 48.0 - 1.0
        });
        let mut y = Array2::zeros((batch, inline.output_width()));
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            a.push(median_ns(&inline, &one, &mut ws1, &x, &mut y)?);
            b.push(median_ns(&forked, &two, &mut ws2, &x, &mut y)?);
            c.push(two.install(|| median_ns(&forked, &two, &mut ws2, &x, &mut y))?);
        }
        let mid = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[2] / 1e3
        };
        let (a, b, c) = (mid(&mut a), mid(&mut b), mid(&mut c));
        let kflop = batch as f64 * inline.flops_per_sample() as f64 / 1e3;
        println!(
            "| {batch} | {kflop:.0} | {a:.2} | {b:.2} | {:.2} | {c:.2} | {:.2} |",
            a / b,
            a / c
        );
    }
    Ok(())
}
