//! `densebatch run`: stream an input file through a model, batch by batch, into an output file.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use densebatch::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::batch_runner::BatchRunner;
use crate::cli::{RunArgs, thread_budget};
use crate::io::{create_sink, open_source};
use crate::model_source::{compile, load_model};
use crate::stats::{BatchStats, fmt_bytes};

/// Runs shorter than this many rows (or bytes, when the row count is unknown) get no progress bar.
const PROGRESS_MIN_ROWS: u64 = 100_000;
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

pub fn run(args: &RunArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let compiled = compile(&model, args.precision)?;
    let mut source = open_source(&args.input, args.tensor.as_deref())?;
    let input = args.input.display();
    ensure!(
        source.cols() == compiled.input_width(),
        "{input}: rows have {} values, the model `{}` takes {}",
        source.cols(),
        compiled.name(),
        compiled.input_width()
    );
    if source.rows_hint() == Some(0) {
        bail!("{input}: the file holds no rows");
    }
    if let Some(output) = &args.output {
        ensure!(
            !same_file(output, &args.input),
            "--output {} would overwrite the input",
            output.display()
        );
    }

    let threads = thread_budget(args.threads);
    let batch = args.batch.get();
    let (in_width, out_width) = (compiled.input_width(), compiled.output_width());
    let mut runner = BatchRunner::new(&compiled, threads)?;
    // All memory a batch needs is allocated here, once: the input and output buffers and one
    // workspace per thread. Memory stays bounded by the batch size, whatever the file's size.
    let mut x = vec![0f32; batch * in_width];
    let mut y = vec![0f32; batch * out_width];
    let scratch = 4 * (x.len() + y.len()) + runner.workspace_bytes();

    let mut sink = match &args.output {
        Some(path) => Some(create_sink(path, out_width)?),
        None => None,
    };
    let progress = progress_bar(args, source.rows_hint(), source.total_bytes());
    let mut stats = BatchStats::default();
    let started = Instant::now();
    let mut done: u64 = 0;
    let outcome = (|| -> Result<()> {
        loop {
            let rows = source.read_rows(&mut x)?;
            if rows == 0 {
                break;
            }
            let xb = ArrayView2::from_shape((rows, in_width), &x[..rows * in_width])
                .expect("buffer holds rows × width");
            let yb = ArrayViewMut2::from_shape((rows, out_width), &mut y[..rows * out_width])
                .expect("buffer holds rows × width");
            runner
                .predict_measured(&compiled, xb, yb, &mut stats)
                .map_err(|e| input_error(e, &args.input, done))?;
            if let Some(sink) = sink.as_mut() {
                sink.write_rows(&y[..rows * out_width])?;
            }
            done += rows as u64;
            if let Some(bar) = &progress {
                bar.set_position(source.bytes_read());
            }
        }
        ensure!(done > 0, "{input}: the file holds no rows");
        Ok(())
    })();
    let wall = started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Err(error) = outcome {
        // Leave no half-written output behind.
        if let Some(path) = &args.output {
            drop(sink);
            let _ = std::fs::remove_file(path);
        }
        return Err(error);
    }
    if let Some(sink) = sink {
        sink.finish()?;
    }

    println!(
        "model        {} ({} → {}), kernel {}, {} weights",
        compiled.name(),
        in_width,
        out_width,
        compiled.kernel().name(),
        compiled.precision()
    );
    match &args.output {
        Some(path) => println!(
            "output       {} float32 [{done}, {out_width}]",
            path.display()
        ),
        None => println!("output       discarded (no --output)"),
    }
    stats.print_summary(&compiled, threads, wall, scratch);
    println!(
        "per batch    {} rows: input {} + output {} buffers",
        batch,
        fmt_bytes(4 * x.len() as u64),
        fmt_bytes(4 * y.len() as u64)
    );
    Ok(())
}

/// Maps an engine error on a batch to one that names the input file and the row in the file.
fn input_error(error: Error, input: &Path, first_row: u64) -> anyhow::Error {
    match error {
        Error::NonFiniteInput { row, col, value } => anyhow::anyhow!(
            "{}: row {}, column {} is not finite ({value})",
            input.display(),
            first_row + row as u64,
            col
        ),
        other => anyhow::Error::new(other).context(format!("{}", input.display())),
    }
}

/// A progress bar on stderr, only when stdout is a terminal and the run is long.
fn progress_bar(args: &RunArgs, rows: Option<u64>, bytes: u64) -> Option<ProgressBar> {
    let long = match rows {
        Some(rows) => rows >= PROGRESS_MIN_ROWS,
        None => bytes >= PROGRESS_MIN_BYTES,
    };
    if args.quiet || !long || !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    Some(bar)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
