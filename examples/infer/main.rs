//! `infer`: the command-line face of densebatch.
//!
//! ```text
//! infer                                   classify the bundled held-out digits (accuracy, latency, memory)
//! infer run MODEL --input FILE [--output FILE] [--batch N] [--threads N]
//! infer inspect MODEL
//! infer import model.onnx OUT
//! infer serve-sim MODEL... [--rate R | --loads 0.7,0.9,1.1] [--duration S] [--json F] [--plot F.svg]
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
mod open_loop;
mod run;
mod serve_plot;
mod serve_report;
mod serve_sim;
mod stats;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let result = match cli.command {
        None => default_run::run(&cli.defaults),
        Some(Command::Run(args)) => run::run(&args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Import(args)) => import::run(&args),
        Some(Command::ServeSim(args)) => serve_sim::run(&args),
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

/// Help and version go to stdout as usual; a usage error is one line, like every other error.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    // Clap's message is its first paragraph (a list of missing arguments may follow the first
    // line); the usage text after it is left to --help.
    let text = error.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    eprintln!("{} (see --help)", message.join(" "));
    ExitCode::FAILURE
}
