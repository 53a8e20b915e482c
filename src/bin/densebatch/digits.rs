//! `densebatch digits`: classify the held-out digits of a checkout's `models/digits` and report
//! accuracy, agreement with scikit-learn's own predictions, per-batch latency and memory.

use std::time::Instant;

use anyhow::{Result, bail, ensure};
use ndarray::{Array2, Axis, s};

use crate::batch_runner::BatchRunner;
use crate::cli::{DigitsArgs, thread_budget};
use crate::io::safetensors::read_tensor;
use crate::model_source::{compile, load_model};
use crate::stats::BatchStats;

pub fn run(args: &DigitsArgs) -> Result<()> {
    let dir = &args.dir;
    let spec_path = dir.join("model.json");
    let test_path = dir.join("test.safetensors");
    // An installed binary has no bundled files: say where they come from, in one line.
    ensure!(
        spec_path.is_file() && test_path.is_file(),
        "{}: no model.json and test.safetensors here; run from a densebatch checkout or pass the \
         folder of the digits model",
        dir.display()
    );
    let model = load_model(&spec_path)?;
    let x = read_tensor(&test_path, "x")?;
    let labels = read_tensor(&test_path, "labels")?;
    let sklearn_pred = read_tensor(&test_path, "sklearn_pred")?;
    let x = x
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|_| anyhow::anyhow!("{}: tensor `x` is not 2-D", test_path.display()))?;
    let rows = x.nrows();
    ensure!(
        labels.len() == rows && sklearn_pred.len() == rows,
        "{}: `labels` and `sklearn_pred` must hold one entry per row of `x` ({rows})",
        test_path.display()
    );

    let threads = thread_budget(args.threads);
    let batch = args.batch.get();
    let compiled = compile(&model, args.precision)?;
    let mut runner = BatchRunner::new(&compiled, threads)?;
    let mut probabilities = Array2::<f32>::zeros((rows, compiled.output_width()));
    let scratch = runner.workspace_bytes();

    println!(
        "model        {} {} ({}), {} layers, kernel {}, {} weights",
        compiled.name(),
        compiled.version(),
        spec_path.display(),
        model.spec().layers.len(),
        compiled.kernel().name(),
        compiled.precision()
    );
    println!(
        "data         {} held-out samples of {} features ({})",
        rows,
        x.ncols(),
        test_path.display()
    );

    // One untimed batch: the pool threads allocate their own state on their first job, which a
    // measured batch would otherwise count.
    let first = batch.min(rows);
    runner.predict_into(
        &compiled,
        x.slice(s![..first, ..]),
        probabilities.slice_mut(s![..first, ..]),
    )?;
    let mut stats = BatchStats::default();
    let started = Instant::now();
    for start in (0..rows).step_by(batch) {
        let end = (start + batch).min(rows);
        let xb = x.slice(s![start..end, ..]);
        let yb = probabilities.slice_mut(s![start..end, ..]);
        runner.predict_measured(&compiled, xb, yb, &mut stats)?;
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
