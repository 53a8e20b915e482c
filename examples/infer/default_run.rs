//! The run with no arguments: classify the bundled held-out digits and report accuracy, agreement
//! with scikit-learn's own predictions, per-batch latency and memory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use densebatch::prelude::*;
use ndarray::{Array2, Axis, s};

use crate::cli::{DefaultArgs, thread_budget};
use crate::io_formats::safetensors_tensor;
use crate::stats::BatchStats;

/// The bundled model's folder. Resolved from the crate root so that the demo works from any
/// working directory.
fn digits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("digits")
}

pub fn run(args: &DefaultArgs) -> Result<()> {
    let dir = digits_dir();
    let model = Model::load(dir.join("model.json")).context("cannot load the bundled model")?;
    let test_path = dir.join("test.safetensors");
    let x = safetensors_tensor(&test_path, "x")?;
    let labels = safetensors_tensor(&test_path, "labels")?;
    let sklearn_pred = safetensors_tensor(&test_path, "sklearn_pred")?;
    let x = x
        .into_dimensionality::<ndarray::Ix2>()
        .with_context(|| format!("{}: tensor `x` is not 2-D", test_path.display()))?;
    let rows = x.nrows();
    ensure!(
        labels.len() == rows && sklearn_pred.len() == rows,
        "{}: `labels` and `sklearn_pred` must hold one entry per row of `x` ({rows})",
        test_path.display()
    );

    let threads = thread_budget(args.threads);
    let batch = args.batch.get();
    let compiled = model.compile(&CompileOptions::default())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the thread pool")?;
    let mut workspaces = compiled.new_workspaces(threads);
    let mut probabilities = Array2::<f32>::zeros((rows, compiled.output_width()));
    let scratch = workspaces.iter().map(Workspace::bytes).sum::<usize>();

    println!(
        "model        {} {} ({}), {} layers, kernel {}",
        compiled.name(),
        compiled.version(),
        dir.join("model.json").display(),
        model.spec().layers.len(),
        compiled.kernel().name()
    );
    println!(
        "data         {} held-out samples of {} features ({})",
        rows,
        x.ncols(),
        test_path.display()
    );

    // Every pool thread runs once, then one untimed batch: the threads allocate their own state
    // when they start and on their first job, which a measured batch would otherwise count.
    pool.broadcast(|_| ());
    let first = batch.min(rows);
    predict_batch(
        &compiled,
        &pool,
        &mut workspaces,
        x.slice(s![..first, ..]),
        probabilities.slice_mut(s![..first, ..]),
    )?;
    let mut stats = BatchStats::default();
    let started = Instant::now();
    for start in (0..rows).step_by(batch) {
        let end = (start + batch).min(rows);
        let xb = x.slice(s![start..end, ..]);
        let yb = probabilities.slice_mut(s![start..end, ..]);
        stats.measure(end - start, || {
            predict_batch(&compiled, &pool, &mut workspaces, xb, yb)
        })?;
    }
    let wall = started.elapsed();

    let predicted: Vec<usize> = probabilities
        .axis_iter(Axis(0))
        .map(|row| argmax(row.as_slice().expect("rows of a standard array")))
        .collect();
    let correct = predicted
        .iter()
        .zip(labels.iter())
        .filter(|(p, l)| **p as f32 == **l)
        .count();
    let agree = predicted
        .iter()
        .zip(sklearn_pred.iter())
        .filter(|(p, s)| **p as f32 == **s)
        .count();
    println!(
        "accuracy     {:.2} % ({correct}/{rows} correct)",
        100.0 * correct as f64 / rows as f64
    );
    println!("agreement    {agree}/{rows} samples predict the same class as scikit-learn");
    stats.print_summary(&compiled, threads, wall, scratch);
    if agree != rows {
        bail!(
            "{} samples disagree with scikit-learn's prediction in {}",
            rows - agree,
            test_path.display()
        );
    }
    Ok(())
}

/// Index of the largest value (the first one on ties, like numpy's argmax).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
