//! The digits demo, the README's first command: classify the bundled held-out digits and report
//! accuracy, agreement with scikit-learn, per-batch latency and memory, asserting what it prints.
//!
//! ```text
//! cargo run --release --example infer [-- --batch N --threads N]
//! ```
//!
//! The command-line tool is the `densebatch` binary (`cargo install --path . --features cli`).

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use densebatch::prelude::*;
use densebatch::{AllocScope, CountingAllocator};
use ndarray::{Array2, Axis, s};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

// Counts what each thread allocates, so the demo can show that a batch allocates nothing.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::system();

/// The bundled data: 450 held-out samples of scikit-learn's 8×8 digits.
const SAMPLES: usize = 450;
const FEATURES: usize = 64;

fn main() -> anyhow::Result<()> {
    let (batch, threads) = parse_args()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits");
    let test = TestSet::load(&dir.join("test.safetensors"))?;
    assert_eq!(test.x.dim(), (SAMPLES, FEATURES), "the bundled test set");

    let model = Model::load(dir.join("model.json"))?;
    let compiled = model.compile()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let mut workspaces = compiled.new_workspaces(threads);
    let mut probabilities = Array2::<f32>::zeros((SAMPLES, compiled.output_width()));
    let scratch: usize = workspaces.iter().map(Workspace::bytes).sum();
    println!(
        "model        {} {}, {} layers, kernel {}",
        compiled.name(),
        compiled.version(),
        model.spec().layers.len(),
        compiled.kernel().name()
    );
    println!("data         {SAMPLES} held-out samples of {FEATURES} features");

    // Every pool thread runs a job first, and one untimed batch: rayon's threads allocate their
    // own state on their first job, which a measured batch would otherwise count.
    pool.broadcast(|_| ());
    let mut run_batch = |rows: std::ops::Range<usize>, out: &mut Array2<f32>| {
        let x = test.x.slice(s![rows.clone(), ..]);
        predict_batch(
            &compiled,
            &pool,
            &mut workspaces,
            x,
            out.slice_mut(s![rows, ..]),
        )
    };
    run_batch(0..batch.min(SAMPLES), &mut probabilities)?;
    let mut latencies = Vec::new();
    let mut allocated = 0u64;
    for start in (0..SAMPLES).step_by(batch) {
        let rows = start..(start + batch).min(SAMPLES);
        let scope = AllocScope::start();
        let started = Instant::now();
        run_batch(rows, &mut probabilities)?;
        let elapsed = started.elapsed();
        allocated = allocated.max(scope.finish().bytes);
        latencies.push(elapsed);
    }

    let predicted: Vec<i64> = probabilities.axis_iter(Axis(0)).map(argmax).collect();
    let correct = count_equal(&predicted, &test.labels);
    let agree = count_equal(&predicted, &test.sklearn_pred);
    let accuracy = correct as f64 / SAMPLES as f64;
    println!(
        "accuracy     {:.2} % ({correct}/{SAMPLES} correct)",
        100.0 * accuracy
    );
    println!("agreement    {agree}/{SAMPLES} samples predict the same class as scikit-learn");
    latencies.sort_unstable();
    let quantile = |q: f64| latencies[((q * latencies.len() as f64).ceil() as usize).max(1) - 1];
    println!(
        "batch time   {} batches of up to {batch} on {threads} threads: p50 {:?}  p99 {:?}  max {:?}",
        latencies.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    println!(
        "memory       at most {allocated} B allocated per batch by the calling thread; \
         workspaces {scratch} B, allocated once"
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("peak RSS     {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }

    assert!(accuracy >= 0.97, "accuracy {accuracy} below 0.97");
    assert_eq!(agree, SAMPLES, "every sample agrees with scikit-learn");
    assert!(quantile(1.0) > Duration::ZERO);
    if threads == 1 {
        // On one thread the engine allocates nothing per batch.
        assert_eq!(allocated, 0, "bytes allocated per batch on one thread");
    }
    Ok(())
}

/// `--batch N` (default 32) and `--threads N` (default: the available cores).
fn parse_args() -> anyhow::Result<(usize, usize)> {
    let mut batch = 32;
    let mut threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: NonZeroUsize = args
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a positive number"))?;
        match flag.as_str() {
            "--batch" => batch = value.get(),
            "--threads" => threads = value.get(),
            _ => anyhow::bail!("unknown argument {flag}; use --batch N or --threads N"),
        }
    }
    Ok((batch, threads))
}

/// The bundled test set: inputs, true labels and scikit-learn's predictions.
struct TestSet {
    x: Array2<f32>,
    labels: Vec<i64>,
    sklearn_pred: Vec<i64>,
}

impl TestSet {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)?;
        let tensors = SafeTensors::deserialize(&bytes)?;
        let x = tensors.tensor("x")?;
        assert_eq!(x.dtype(), Dtype::F32);
        let values = x
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let x = Array2::from_shape_vec((x.shape()[0], x.shape()[1]), values)?;
        let classes = |name: &str| -> anyhow::Result<Vec<i64>> {
            let view = tensors.tensor(name)?;
            assert_eq!(view.dtype(), Dtype::I32, "tensor `{name}`");
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect())
        };
        Ok(TestSet {
            labels: classes("labels")?,
            sklearn_pred: classes("sklearn_pred")?,
            x,
        })
    }
}

/// The process's peak resident set size (`VmHWM` in /proc/self/status), where Linux offers it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Index of the largest value (the first one on ties, like numpy's argmax).
fn argmax(row: ndarray::ArrayView1<'_, f32>) -> i64 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as i64
}

fn count_equal(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}
