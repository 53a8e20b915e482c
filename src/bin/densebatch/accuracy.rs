//! The accuracy section of `densebatch inspect --precision`: a precision's outputs against the
//! float64 check vectors of a reference-harness folder, against our f32 on random
//! standard-normal rows, and on labelled test data (`test.safetensors` with `x` and `labels`)
//! beside the model, where those exist.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use densebatch::{CompiledModel, Model, OutputError, Precision};
use ndarray::{Array2, ArrayView2};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::StandardNormal;

use crate::batch_runner::BatchRunner;
use crate::io::safetensors::read_tensor;
use crate::model_source::compile;

/// Seed of the random rows, fixed so that reports compare across runs and machines.
const RANDOM_ROWS_SEED: u64 = 20_261_203;

/// Prints the accuracy of `precision` for `model` (loaded from `path`).
pub fn report(
    model: &Model,
    path: &Path,
    precision: Precision,
    rows: usize,
    threads: usize,
) -> Result<()> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let exact = compile(model, Precision::F32)?;
    let reduced = compile(model, precision)?;
    let mut runner = BatchRunner::new(&exact, threads)?;
    let mut run = |compiled: &CompiledModel, x: ArrayView2<'_, f32>| -> Result<Array2<f32>> {
        let mut y = Array2::zeros((x.nrows(), compiled.output_width()));
        runner.predict_into(compiled, x, y.view_mut())?;
        Ok(y)
    };

    println!("accuracy of {precision} weights");
    println!(
        "  {:<34} {:>6}  {:>9}  {:>9}  {:>8}  {:>11}  {:>8}",
        "against", "rows", "max abs", "max rel", "SQNR dB", "min cosine", "argmax"
    );
    let line = |name: &str, e: &OutputError| {
        println!(
            "  {:<34} {:>6}  {:>9.2e}  {:>9.2e}  {:>8.1}  {:>11.7}  {:>7.2}%",
            name,
            e.rows,
            e.max_abs,
            e.max_rel,
            e.sqnr_db,
            e.min_cosine,
            100.0 * e.argmax_agreement
        )
    };
    let (x_check, y_check) = (dir.join("x_check.npy"), dir.join("y_check.npy"));
    if x_check.is_file() && y_check.is_file() {
        let x = read_npy(&x_check)?.mapv(|v| v as f32);
        let y = read_npy(&y_check)?;
        ensure!(
            x.nrows() == y.nrows(),
            "{} and {} differ in rows",
            x_check.display(),
            y_check.display()
        );
        for compiled in [&exact, &reduced] {
            let got = run(compiled, x.view())?;
            let e = OutputError::between(y.view(), got.view());
            line(
                &format!("float64 check vectors ({})", compiled.precision()),
                &e,
            );
        }
    }
    let mut rng = StdRng::seed_from_u64(RANDOM_ROWS_SEED);
    let x: Array2<f32> =
        Array2::random_using((rows, exact.input_width()), StandardNormal, &mut rng);
    let want = run(&exact, x.view())?;
    let got = run(&reduced, x.view())?;
    line(
        "our f32, random N(0,1) rows",
        &OutputError::between(want.view(), got.view()),
    );

    let test = dir.join("test.safetensors");
    if test.is_file() {
        let x = read_tensor(&test, "x")?
            .into_dimensionality::<ndarray::Ix2>()
            .context("test.safetensors: `x` is not 2-D")?;
        let labels = read_tensor(&test, "labels")?;
        let want = run(&exact, x.view())?;
        let got = run(&reduced, x.view())?;
        let argmax = |y: &Array2<f32>| -> Vec<usize> {
            y.outer_iter()
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                            if v > bv { (i, v) } else { (bi, bv) }
                        })
                        .0
                })
                .collect()
        };
        let (pw, pg) = (argmax(&want), argmax(&got));
        let correct = |p: &[usize]| {
            p.iter()
                .zip(labels.iter())
                .filter(|(p, l)| **p as f32 == **l)
                .count()
        };
        let changed = pw.iter().zip(&pg).filter(|(a, b)| a != b).count();
        println!(
            "labelled test data ({} rows): f32 {} correct, {precision} {} correct, {changed} \
             predictions changed",
            x.nrows(),
            correct(&pw),
            correct(&pg)
        );
    }
    Ok(())
}

/// A float `.npy` array (f4 or f8) as f64.
fn read_npy(path: &Path) -> Result<Array2<f64>> {
    let open = || -> Result<npyz::NpyFile<BufReader<File>>> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(npyz::NpyFile::new(BufReader::new(file))?)
    };
    let npy = open()?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f64> = match npy.into_vec::<f64>() {
        Ok(v) => v,
        Err(_) => open()?
            .into_vec::<f32>()
            .with_context(|| format!("{}: not float32 or float64", path.display()))?
            .into_iter()
            .map(f64::from)
            .collect(),
    };
    ensure!(shape.len() == 2, "{}: not a 2-D array", path.display());
    Array2::from_shape_vec((shape[0], shape[1]), data)
        .with_context(|| format!("{}: shape and data disagree", path.display()))
}
