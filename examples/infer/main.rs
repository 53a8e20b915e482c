//! `infer`: the command-line face of densebatch.
//!
//! ```text
//! infer                                   classify the bundled held-out digits (accuracy, latency, memory)
//! infer run MODEL --input FILE [--output FILE] [--batch N] [--threads N]
//! infer inspect MODEL
//! infer import model.onnx OUT
//! ```
//!
//! MODEL is a model in our format (`model.json` or its folder), a reference-harness folder
//! (`manifest.json` + `.npy`) or an `.onnx` file. Errors are one line naming the file, layer or
//! argument, and the exit status is non-zero.

mod alloc_count;
mod cli;
mod default_run;
mod import;
mod inspect;
mod io_formats;
mod model_source;
mod run;
mod stats;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => default_run::run(&cli.defaults),
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Import(args)) => import::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: "file: layer 2: what is wrong".
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
