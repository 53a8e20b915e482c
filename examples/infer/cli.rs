//! Command-line arguments.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run, inspect and import dense models with densebatch.
///
/// With no command, classifies the bundled held-out digits and reports accuracy, agreement with
/// scikit-learn, per-batch latency and memory.
#[derive(Debug, Parser)]
#[command(name = "infer", version)]
pub struct Cli {
    /// What to do; none runs the bundled digits demo.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default (no command) run.
    #[command(flatten)]
    pub defaults: DefaultArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a model over an input file (.npy, .safetensors or .csv), streaming the outputs.
    Run(RunArgs),
    /// Show a model's layers, sizes, FLOPs, the chosen kernel and the thread budget.
    Inspect(InspectArgs),
    /// Convert an ONNX graph of dense layers into our format (model.json + model.safetensors).
    Import(ImportArgs),
}

/// Options of the default run.
#[derive(Debug, Args)]
pub struct DefaultArgs {
    /// Samples per batch.
    #[arg(long, default_value = "32")]
    pub batch: NonZeroUsize,
    /// Worker threads (default: the available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
}

/// `infer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: model.json (or its folder), a manifest.json folder, or an .onnx file.
    pub model: PathBuf,
    /// Input rows: .npy (2-D, float), .safetensors (one 2-D float tensor) or .csv.
    #[arg(long)]
    pub input: PathBuf,
    /// Tensor to read from a .safetensors input (default: its only tensor, or `x`).
    #[arg(long)]
    pub tensor: Option<String>,
    /// Where to write the outputs, float32 [rows, out]; the kind follows the extension
    /// (.npy, .safetensors or .csv). Without it, outputs are computed and discarded.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Samples per batch (the unit of timing and of memory).
    #[arg(long, default_value = "1024")]
    pub batch: NonZeroUsize,
    /// Worker threads (default: the available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Never show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `infer inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model: model.json (or its folder), a manifest.json folder, or an .onnx file.
    pub model: PathBuf,
    /// Thread budget to report (default: the available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
}

/// `infer import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ONNX file.
    pub onnx: PathBuf,
    /// Output: a spec file path (`.json`) or a folder to hold model.json + model.safetensors.
    pub out: PathBuf,
    /// Model name to record (default: the ONNX graph's name).
    #[arg(long)]
    pub name: Option<String>,
}

/// The thread count to use: the flag, or the cores available.
pub fn thread_budget(flag: Option<NonZeroUsize>) -> usize {
    flag.map(NonZeroUsize::get).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(NonZeroUsize::get)
            .unwrap_or(1)
    })
}
