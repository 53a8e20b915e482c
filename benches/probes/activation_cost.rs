//! Measures what each activation costs per value inside the kernel's epilogue:
//!
//! ```text
//! cargo bench --bench activation_cost -- [ROWS] [WIDTH] [CALLS]
//! ```
//!
//! Builds one random `WIDTH → WIDTH` layer per activation (default 512, on 128 rows), runs them
//! on one thread with calls alternated activation by activation, so that all see the same
//! machine, and prints each one's minimum and median time and the cost per output value over
//! the identity layer. Run it on two builds to compare activation code.

mod args;

use std::time::Instant;

use anyhow::{Context, Result};
use densebatch::prelude::*;
use ndarray::Array2;

fn main() -> Result<()> {
    let args = args::probe_args();
    let arg = |i: usize, default: usize, name: &str| -> Result<usize> {
        args.get(i)
            .map_or(Ok(default), |s| s.parse())
            .context(name.to_owned())
    };
    let (rows, width, calls) = (
        arg(0, 128, "ROWS")?,
        arg(1, 512, "WIDTH")?,
        arg(2, 1500, "CALLS")?,
    );
    let models = Activation::ALL
        .iter()
        .map(|&a| Model::random(&[width, width], a, a, 7).compile())
        .collect::<densebatch::Result<Vec<_>>>()?;
    let x = Array2::from_shape_fn((rows, width), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let mut y = Array2::<f32>::zeros((rows, width));
    let mut workspaces: Vec<_> = models.iter().map(|m| m.new_workspace()).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(calls); models.len()];
    let warmup = calls / 10;
    for call in 0..calls + warmup {
        for ((model, workspace), t) in models.iter().zip(&mut workspaces).zip(&mut times) {
            let start = Instant::now();
            model.predict_into(workspace, x.view(), y.view_mut())?;
            if call >= warmup {
                t.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let stats: Vec<(f64, f64)> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            (t[0], t[t.len() / 2])
        })
        .collect();
    let (id_min, id_median) = stats[0];
    let per_value = |us: f64| us * 1e3 / (rows * width) as f64;
    println!(
        "{rows} rows, {width} → {width}, kernel {:?}",
        models[0].kernel()
    );
    println!("| activation | min µs | median µs | ns per value over identity (min / median) |");
    println!("|---|---:|---:|---|");
    for (activation, (min, median)) in Activation::ALL.iter().zip(stats) {
        println!(
            "| {} | {min:.1} | {median:.1} | {:.2} / {:.2} |",
            activation.name(),
            per_value(min - id_min),
            per_value(median - id_median)
        );
    }
    Ok(())
}
