//! Open-loop load generator for the network path: sends one-row infer requests of the Open
//! Inference Protocol (KServe V2) to a server on a fixed schedule, over HTTP with Triton's binary
//! tensor extension, HTTP with JSON, or gRPC (`raw_input_contents`), on a bounded number of
//! connections, and reports offered rate, throughput, counts per status and latency percentiles
//! taken from each request's *scheduled* send time (so a server that stalls is charged for the
//! requests that queued behind the stall), with the send lag apart.
//!
//! ```text
//! cargo build --release --example oip_load --features cli,server
//! taskset -c 0 target/release/densebatch serve --model-repository DIR &     # the server on CPU 0
//! taskset -c 1 target/release/examples/oip_load --model mnist-mlp capacity  # the generator on CPU 1
//! taskset -c 1 target/release/examples/oip_load --model mnist-mlp --protocol grpc sweep --loads 0.5,1,1.5
//! taskset -c 1 target/release/examples/oip_load --model mnist-mlp rate 1000,5000 --json run.json
//! ```
//!
//! Run it as its own process on its own CPU: it keeps that CPU busy (it waits for each send time
//! by yielding to its runtime, as tokio's timer ticks in milliseconds), and it must not take CPU
//! time from the server it measures. `capacity` is the goodput of a closed loop (each connection
//! sends again as soon as its answer is in); `sweep` measures it first (or takes
//! `--capacity-rps`) and then runs the open loop at each fraction of it. Exit status is non-zero
//! with `--check` when a sweep sees a status other than 200/503/504, a request without answer,
//! or throughput at its highest load below 0.9× capacity.

mod grpc;
mod http;
mod payload;
mod report;
mod runner;
mod schedule;
mod stats;

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::payload::PayloadSpec;
use crate::report::{RunInfo, RunReport};
use crate::runner::{Slot, closed_loop, open_loop};
use crate::schedule::Arrivals;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// HTTP/1.1, Triton's binary tensor data extension both ways (tritonclient's default).
    HttpBinary,
    /// HTTP/1.1, V2 JSON both ways.
    HttpJson,
    /// gRPC `ModelInfer` with `raw_input_contents`.
    Grpc,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::HttpBinary => "http-binary",
            Protocol::HttpJson => "http-json",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "Open-loop load generator for Open Inference Protocol (KServe V2) servers")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// The server's HTTP address (also polled for readiness before the run).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:8081", global = true)]
    grpc_url: String,
    #[arg(long, value_enum, default_value = "http-binary", global = true)]
    protocol: Protocol,
    /// The model to call.
    #[arg(long, default_value = "mnist-mlp", global = true)]
    model: String,
    /// Features per row.
    #[arg(long, default_value_t = 784, global = true)]
    width: usize,
    /// Distinct rows sent in turn.
    #[arg(long, default_value_t = 64, global = true)]
    rows: usize,
    #[arg(long, default_value = "input", global = true)]
    input_name: String,
    #[arg(long, default_value = "output", global = true)]
    output_name: String,
    /// Requests in flight at most: HTTP connections, or gRPC streams.
    #[arg(long, default_value_t = 32, global = true)]
    connections: usize,
    /// HTTP/2 connections the gRPC streams share.
    #[arg(long, default_value_t = 2, global = true)]
    grpc_channels: usize,
    /// Seconds per run (per load level in a sweep).
    #[arg(long, default_value_t = 10.0, global = true)]
    duration: f64,
    /// Seconds of load before measuring (discarded).
    #[arg(long, default_value_t = 2.0, global = true)]
    warmup: f64,
    /// The client gives up on a request after this many ms (counted as a client timeout).
    #[arg(long, default_value_t = 5000, global = true)]
    timeout_ms: u64,
    /// Send this `timeout` parameter (µs) with every request: the server's deadline for it.
    #[arg(long, global = true)]
    server_timeout_us: Option<u64>,
    #[arg(long, value_enum, default_value = "constant", global = true)]
    arrivals: Arrivals,
    #[arg(long, default_value_t = 1, global = true)]
    seed: u64,
    /// The server's name in the report.
    #[arg(long, default_value = "server", global = true)]
    label: String,
    /// Write the reports here as JSON.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
    /// Seconds to wait for the server's readiness.
    #[arg(long, default_value_t = 60.0, global = true)]
    wait_ready: f64,
    /// Exit non-zero when a sweep's checks fail.
    #[arg(long, global = true)]
    check: bool,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Open loop at fixed rates, one run each.
    Rate {
        /// Requests per second, comma-separated for several runs.
        #[arg(value_delimiter = ',', required = true)]
        rates: Vec<f64>,
    },
    /// Closed loop on every connection: the goodput is the capacity.
    Capacity,
    /// Capacity, then the open loop at each fraction of it.
    Sweep {
        /// Fractions of the capacity.
        #[arg(long, value_delimiter = ',', default_value = "0.5,0.75,1.0,1.25,1.5")]
        loads: Vec<f64>,
        /// Use this capacity (requests/s) instead of measuring it.
        #[arg(long)]
        capacity_rps: Option<f64>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.connections == 0 || cli.rows == 0 || cli.width == 0 || cli.grpc_channels == 0 {
        bail!("--connections, --rows, --width and --grpc-channels must be at least 1");
    }
    // One thread: the generator is pinned to one CPU, and a single-threaded runtime needs no
    // locks between the dispatcher and the reply handlers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let ok = local.block_on(&runtime, run(&cli))?;
    if cli.check && !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the mode; `false` when a sweep's checks failed.
async fn run(cli: &Cli) -> Result<bool> {
    let spec = PayloadSpec {
        width: cli.width,
        rows: cli.rows,
        input_name: cli.input_name.clone(),
        output_name: cli.output_name.clone(),
        server_timeout_us: cli.server_timeout_us,
        seed: cli.seed,
    };
    let target = Rc::new(http::HttpTarget::new(&cli.url, &cli.model).await?);
    target
        .wait_ready(Duration::from_secs_f64(cli.wait_ready))
        .await?;
    let mut slots = make_slots(cli, &spec, &target).await?;
    let duration = Duration::from_secs_f64(cli.duration);
    let warmup = Duration::from_secs_f64(cli.warmup);
    let timeout = Duration::from_millis(cli.timeout_ms);
    let info = |mode, load, offered_rps| RunInfo {
        server: &cli.label,
        protocol: cli.protocol.name(),
        mode,
        load,
        offered_rps,
        connections: cli.connections,
        duration,
    };
    let mut reports = Vec::new();
    let mut capacity = None;
    println!("{}", report::header());
    match &cli.mode {
        Mode::Rate { rates } => {
            if rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
                bail!("rates must be positive");
            }
            let (seed, arrivals) = (cli.seed, cli.arrivals);
            open_loop(
                &mut slots, rates[0], warmup, arrivals, seed, timeout, timeout,
            )
            .await;
            for &rate in rates {
                let run =
                    open_loop(&mut slots, rate, duration, arrivals, seed, timeout, timeout).await;
                let report = RunReport::new(&info("open", None, Some(rate)), &run);
                println!("{}", report::row(&report));
                reports.push(report);
            }
        }
        Mode::Capacity
        | Mode::Sweep {
            capacity_rps: None, ..
        } => {
            closed_loop(&mut slots, warmup, timeout).await;
            let run = closed_loop(&mut slots, duration, timeout).await;
            let measured = RunReport::new(&info("closed", None, None), &run);
            println!("{}", report::row(&measured));
            capacity = Some(measured);
        }
        Mode::Sweep { .. } => {}
    }
    let mut checks = None;
    if let Mode::Sweep {
        loads,
        capacity_rps,
    } = &cli.mode
    {
        let capacity_rps = match (capacity_rps, &capacity) {
            (Some(c), _) => *c,
            (None, Some(measured)) => measured.goodput_rps,
            (None, None) => unreachable!("measured above"),
        };
        if !capacity_rps.is_finite() || capacity_rps <= 0.0 {
            bail!("capacity {capacity_rps} requests/s: nothing to sweep");
        }
        for (k, &load) in loads.iter().enumerate() {
            // Let the server empty its queue before the next level.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rate = load * capacity_rps;
            let seed = cli.seed + k as u64;
            let run = open_loop(
                &mut slots,
                rate,
                duration,
                cli.arrivals,
                seed,
                timeout,
                timeout,
            )
            .await;
            let report = RunReport::new(&info("open", Some(load), Some(rate)), &run);
            println!("{}", report::row(&report));
            reports.push(report);
        }
        checks = Some(sweep_checks(&reports, capacity_rps));
    }
    let passed = match &checks {
        Some(checks) => {
            for (name, value) in checks.as_object().expect("an object") {
                println!("check {name}: {value}");
            }
            checks["passed"].as_bool().expect("a bool")
        }
        None => true,
    };
    if let Some(path) = &cli.json {
        let out = json!({
            "server": cli.label,
            "protocol": cli.protocol.name(),
            "model": cli.model,
            "connections": cli.connections,
            "arrivals": cli.arrivals,
            "capacity": capacity,
            "runs": reports,
            "checks": checks,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(passed)
}

/// What a sweep must show: only 200/503/504, every request answered, and no collapse.
fn sweep_checks(runs: &[RunReport], capacity_rps: f64) -> serde_json::Value {
    let unexpected: u64 = runs.iter().map(RunReport::unexpected).sum();
    let unanswered: u64 = runs.iter().map(RunReport::unanswered).sum();
    let top = runs
        .iter()
        .max_by(|a, b| a.load.partial_cmp(&b.load).expect("finite loads"));
    let top_ratio = top.map(|r| r.goodput_rps / capacity_rps);
    let no_collapse = top_ratio.is_some_and(|r| r >= 0.9);
    json!({
        "capacity_rps": capacity_rps.round(),
        "only_200_503_504": unexpected == 0,
        "every_request_answered": unanswered == 0,
        "goodput_at_highest_load_over_capacity": top_ratio.map(|r| (r * 1000.0).round() / 1000.0),
        "no_collapse": no_collapse,
        "passed": unexpected == 0 && unanswered == 0 && no_collapse,
    })
}

async fn make_slots(
    cli: &Cli,
    spec: &PayloadSpec,
    target: &Rc<http::HttpTarget>,
) -> Result<Vec<Slot>> {
    Ok(match cli.protocol {
        Protocol::HttpBinary | Protocol::HttpJson => {
            let bodies = Rc::new(if cli.protocol == Protocol::HttpBinary {
                payload::binary_bodies(spec)
            } else {
                payload::json_bodies(spec)
            });
            (0..cli.connections)
                .map(|_| Slot::Http(http::HttpSlot::new(target.clone(), bodies.clone())))
                .collect()
        }
        Protocol::Grpc => {
            let channels = grpc::connect(&cli.grpc_url, cli.grpc_channels).await?;
            let requests = Rc::new(grpc::requests(spec, &cli.model));
            (0..cli.connections)
                .map(|k| {
                    Slot::Grpc(grpc::GrpcSlot::new(
                        channels[k % channels.len()].clone(),
                        requests.clone(),
                    ))
                })
                .collect()
        }
    })
}
