//! Command-line arguments.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use densebatch::Precision;
use serde::Serialize;

use crate::machine::CpuSet;

/// Run, inspect, import and serve dense models with densebatch.
#[derive(Debug, Parser)]
#[command(name = "densebatch", version, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    /// Serve models through the batching scheduler under an open-loop load; report latency
    /// percentiles and batch statistics.
    ServeSim(ServeSimArgs),
    /// Classify the held-out digits of a checkout's models/digits: accuracy, agreement with
    /// scikit-learn, per-batch latency and memory.
    Digits(DigitsArgs),
    /// Serve every model of a folder over the network: the Open Inference Protocol (KServe V2 /
    /// Triton) over HTTP and gRPC.
    #[cfg(feature = "server")]
    Serve(ServeArgs),
}

/// 503 or 429.
#[cfg(feature = "server")]
fn overload_status(text: &str) -> Result<u16, String> {
    match text {
        "503" => Ok(503),
        "429" => Ok(429),
        _ => Err(format!("{text}: use 503 or 429")),
    }
}

/// `densebatch serve`.
#[cfg(feature = "server")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder whose every subfolder is a model named after it (model.json, a reference-harness
    /// folder, or one .onnx file).
    #[arg(long, value_name = "DIR")]
    pub model_repository: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// HTTP port (0: any free port; the one taken is printed).
    #[arg(long, default_value = "8080")]
    pub http_port: u16,
    /// gRPC port (0: any free port).
    #[arg(long, default_value = "8081")]
    pub grpc_port: u16,
    /// Most rows per batch, and per request.
    #[arg(long, default_value = "64")]
    pub max_batch: NonZeroUsize,
    /// Longest a batch waits to fill, in microseconds.
    #[arg(long, value_name = "US", default_value = "500")]
    pub max_wait_us: u64,
    /// Requests each model may hold queued; beyond it requests are refused with 503.
    #[arg(long, default_value = "1024")]
    pub queue_capacity: NonZeroUsize,
    /// Deadline of a request whose client set none, in milliseconds.
    #[arg(long, value_name = "MS", default_value = "10000")]
    pub default_timeout_ms: u64,
    /// Compute pool threads (default: one per CPU this process may use).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Weight precision every model is compiled in: f32, bf16, int8 or int8-full (see
    /// `densebatch inspect --precision` for each model's accuracy in it).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Threads of the network front (HTTP and gRPC).
    #[arg(long, default_value = "1")]
    pub front_threads: NonZeroUsize,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value = "67108864")]
    pub max_body_bytes: NonZeroUsize,
    /// HTTP status of an overload refusal: 503 (default) or 429, for gateways that key on it.
    #[arg(long, default_value = "503", value_parser = overload_status)]
    pub overload_status: u16,
    /// Refuse inference requests (as overload) while the network front runs more than this many
    /// milliseconds behind, so a backlog of undecoded requests cannot grow without bound.
    #[arg(long, value_name = "MS", default_value = "10")]
    pub max_front_lag_ms: u64,
    /// After SIGTERM, milliseconds to keep serving while reporting not ready.
    #[arg(long, value_name = "MS", default_value = "0")]
    pub drain_delay_ms: u64,
}

/// `densebatch digits`.
#[derive(Debug, Args)]
pub struct DigitsArgs {
    /// The folder holding model.json and test.safetensors.
    #[arg(default_value = "models/digits")]
    pub dir: PathBuf,
    /// Samples per batch.
    #[arg(long, default_value = "32")]
    pub batch: NonZeroUsize,
    /// Worker threads (default: the available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Weight precision: f32, bf16, int8, or int8-full (activations quantised per row too; see
    /// `densebatch inspect --precision`).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// `densebatch run`.
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
    /// Weight precision: f32, bf16, int8, or int8-full (activations quantised per row too; see
    /// `densebatch inspect --precision`).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// `densebatch inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model: model.json (or its folder), a manifest.json folder, or an .onnx file.
    pub model: PathBuf,
    /// Thread budget to report (default: the available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Weight precision: f32, bf16, int8 or int8-full. Other than f32, also measures its accuracy:
    /// against the float64 check vectors and labelled test data in the model's folder (where
    /// present) and against f32 on random rows.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Random standard-normal rows for the accuracy comparison with f32.
    #[arg(long, default_value = "10000")]
    pub rows: usize,
}

/// `densebatch import`.
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

/// How requests are spaced in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process): bursts happen, as with independent clients.
    Poisson,
    /// Evenly spaced.
    Constant,
}

/// `densebatch serve-sim`.
#[derive(Debug, Args)]
pub struct ServeSimArgs {
    /// The models, served at once (each as for `densebatch run`).
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Requests per second offered to each model (default: 70 % of the measured capacity).
    #[arg(long, value_name = "REQ_PER_S", value_parser = positive_f64, conflicts_with = "loads")]
    pub rate: Option<f64>,
    /// Offered loads as fractions of the measured capacity, one run each (e.g. 0.7,0.9,1.1).
    #[arg(long, value_delimiter = ',', value_parser = positive_f64)]
    pub loads: Vec<f64>,
    /// Seconds each run sends for.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = positive_f64)]
    pub duration: f64,
    /// Arrival process.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: Arrivals,
    /// Most requests (of one sample) per batch.
    #[arg(long, default_value = "32")]
    pub max_batch: NonZeroUsize,
    /// Longest a batch's oldest request waits for company, in microseconds.
    #[arg(long, default_value = "1000")]
    pub max_wait_us: u64,
    /// Deadline of each request, in microseconds after its scheduled send time.
    #[arg(long)]
    pub deadline_us: Option<u64>,
    /// Requests each model's queue holds before submits are rejected.
    #[arg(long, default_value = "1024")]
    pub queue_capacity: NonZeroUsize,
    /// CPUs the scheduler's compute pool uses (default: one per --scheduler-cpus CPU, else the
    /// available cores).
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Pin the scheduler's threads (its pool and each model's worker) to these CPUs, e.g. `0` or
    /// `0-1` (Linux).
    #[arg(long, value_name = "CPUS")]
    pub scheduler_cpus: Option<CpuSet>,
    /// Pin the load generator's threads (senders, collectors, the capacity client) to these
    /// CPUs, e.g. `1` (Linux).
    #[arg(long, value_name = "CPUS")]
    pub generator_cpus: Option<CpuSet>,
    /// Seed of the arrival times and the random inputs.
    #[arg(long, default_value = "1")]
    pub seed: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw latency percentiles and mean batch size against offered load into this .svg file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn positive_f64(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a positive number")),
    }
}

/// The thread count to use: the flag, or the cores available.
pub fn thread_budget(flag: Option<NonZeroUsize>) -> usize {
    flag.map(NonZeroUsize::get).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(NonZeroUsize::get)
            .unwrap_or(1)
    })
}
