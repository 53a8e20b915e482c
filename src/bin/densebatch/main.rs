//! `densebatch`: the command-line face of the engine (`cargo install --path . --features cli`).
//!
//! ```text
//! densebatch run MODEL --input FILE [--output FILE] [--batch N] [--threads N]
//! densebatch inspect MODEL
//! densebatch import model.onnx OUT
//! densebatch serve-sim MODEL... [--rate R | --loads 0.7,0.9,1.1] [--duration S] [--json F] [--plot F.svg]
//! densebatch digits [DIR]                classify the held-out digits of a checkout's models/digits
//! densebatch serve --model-repository DIR [--http-port 8080] [--grpc-port 8081]   (feature server)
//! ```
//!
//! MODEL is a model in our format (`model.json` or its folder), a reference-harness folder
//! (`manifest.json` + `.npy`) or an `.onnx` file. Errors are one line naming the file, layer or
//! argument, and the exit status is non-zero.

mod accuracy;
mod batch_alloc;
mod batch_runner;
mod cli;
mod digits;
mod import;
mod inspect;
mod io;
mod machine;
mod model_source;
mod open_loop;
mod run;
#[cfg(feature = "server")]
mod serve;
mod serve_plot;
mod serve_report;
mod serve_sim;
mod stats;

use std::process::ExitCode;

use clap::Parser;
use densebatch::CountingAllocator;

use cli::{Cli, Command};

// The library's per-thread counter: the scheduler's batch records and the per-batch memory figures
// (see `batch_alloc`) read it.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::system();

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Import(args) => import::run(&args),
        Command::ServeSim(args) => serve_sim::run(&args),
        Command::Digits(args) => digits::run(&args),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(&args),
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
