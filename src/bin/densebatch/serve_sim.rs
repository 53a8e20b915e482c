//! `densebatch serve-sim`: serve models through the batching scheduler under an open-loop load.
//!
//! Without `--rate`, each model's capacity is first measured with a short closed-loop run that
//! keeps its queue full; offered loads are then fractions of it (`--loads`, default 0.7). With
//! several models, a load of 1.0 offers each model `capacity / models`, so the shared CPUs are
//! about saturated in total.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use densebatch::prelude::*;
use densebatch::{BatchRecord, ModelConfig, Request, Scheduler, SchedulerConfig};
use ndarray::Array2;
use serde::Serialize;

use crate::cli::{Arrivals, ServeSimArgs};
use crate::model_source::{compile, load_model};
use crate::open_loop::{self, Schedule};
use crate::serve_plot;
use crate::serve_report::{
    BatchTotals, Measured, RunOutcome, print_batch_table, print_latency_table,
};

/// Offered load when neither `--rate` nor `--loads` is given.
const DEFAULT_LOAD: f64 = 0.7;
/// Closed-loop capacity run: warm-up, then measurement, per model.
const CAPACITY_WARMUP: Duration = Duration::from_millis(150);
const CAPACITY_MEASURE: Duration = Duration::from_millis(700);
/// Senders start together this long after the threads are spawned.
const START_DELAY: Duration = Duration::from_millis(20);
/// Batch records buffered between the workers and the aggregating thread.
const RECORD_CHANNEL: usize = 1 << 16;

/// One planned run: its load fraction (when set that way) and the rate offered to each model.
type Planned = (Option<f64>, Vec<f64>);

/// A model ready to serve.
struct Served {
    name: String,
    compiled: Arc<CompiledModel>,
    inputs: Vec<Array2<f32>>,
}

/// The whole JSON document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    arrivals: Arrivals,
    duration_s: f64,
    max_batch: usize,
    max_wait_us: u64,
    deadline_us: Option<u64>,
    queue_capacity: usize,
    pool_threads: usize,
    seed: u64,
    /// Closed-loop capacity per model (requests per second), when measured.
    capacity_rps: Option<Vec<Capacity>>,
    runs: &'a [RunOutcome],
}

#[derive(Debug, Clone, Serialize)]
struct Capacity {
    model: String,
    rps: f64,
}

pub fn run(args: &ServeSimArgs) -> Result<()> {
    if let Some(plot) = &args.plot {
        ensure!(
            plot.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg")),
            "--plot {}: only .svg output is supported",
            plot.display()
        );
    }
    let models = load_models(&args.models, args.seed)?;
    let model_config = ModelConfig::default()
        .max_batch_size(args.max_batch.get())
        .max_wait(Duration::from_micros(args.max_wait_us))
        .queue_capacity(args.queue_capacity.get());

    let probe = Scheduler::new(scheduler_config(args))?;
    println!("{}", probe.budget());
    let pool_threads = probe.budget().pool_threads();
    drop(probe);
    for m in &models {
        println!(
            "model        {} ({} → {}), kernel {}, {:.0} FLOP/sample",
            m.name,
            m.compiled.input_width(),
            m.compiled.output_width(),
            m.compiled.kernel().name(),
            m.compiled.flops_per_sample() as f64
        );
    }
    println!(
        "serving      max batch {}, max wait {} µs, queue {}, deadline {}; {:?} arrivals for {} s",
        args.max_batch,
        args.max_wait_us,
        args.queue_capacity,
        args.deadline_us
            .map_or("none".to_string(), |d| format!("{d} µs")),
        args.arrivals,
        args.duration
    );

    // Each run offers each model a rate; with `--rate` there is one run and no capacity.
    let (capacities, plan): (Option<Vec<Capacity>>, Vec<Planned>) = match args.rate {
        Some(rate) => (None, vec![(None, vec![rate; models.len()])]),
        None => {
            let capacities = measure_capacities(args, &models, model_config)?;
            let loads = if args.loads.is_empty() {
                vec![DEFAULT_LOAD]
            } else {
                args.loads.clone()
            };
            let share = models.len() as f64;
            let plan = loads
                .iter()
                .map(|&load| {
                    let rates = capacities.iter().map(|c| load * c.rps / share).collect();
                    (Some(load), rates)
                })
                .collect();
            (Some(capacities), plan)
        }
    };

    let mut runs = Vec::new();
    for (i, (load, rates)) in plan.iter().enumerate() {
        let seed = args.seed.wrapping_add(1000 * i as u64);
        let measured = run_open_loop(args, &models, model_config, rates, seed)?;
        let total = Measured::total(&measured);
        let mut unbalanced = Vec::new();
        for m in measured.iter().chain([&total]) {
            if !m.balanced() {
                unbalanced.push(format!(
                    "{}: sent {} != ok {} + rejected {} + expired {} + failed {}",
                    m.model, m.send.sent, m.ok, m.send.rejected, m.expired, m.failed
                ));
            }
            if let Some(refusal) = &m.send.unexpected_refusal {
                eprintln!("warning: {}: a submit was refused: {refusal}", m.model);
            }
        }
        runs.push(RunOutcome {
            load: *load,
            models: measured.iter().map(Measured::outcome).collect(),
            total: total.outcome(),
        });
        if !unbalanced.is_empty() {
            print_tables(&runs, args.max_batch.get());
            bail!(
                "requests not answered exactly once: {}",
                unbalanced.join("; ")
            );
        }
    }
    print_tables(&runs, args.max_batch.get());

    if let Some(path) = &args.json {
        let document = Document {
            arrivals: args.arrivals,
            duration_s: args.duration,
            max_batch: args.max_batch.get(),
            max_wait_us: args.max_wait_us,
            deadline_us: args.deadline_us,
            queue_capacity: args.queue_capacity.get(),
            pool_threads,
            seed: args.seed,
            capacity_rps: capacities,
            runs: &runs,
        };
        let text = serde_json::to_string_pretty(&document)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("json         {}", path.display());
    }
    if let Some(path) = &args.plot {
        serve_plot::draw(path, &runs)?;
        println!("plot         {}", path.display());
    }
    Ok(())
}

fn print_tables(runs: &[RunOutcome], max_batch: usize) {
    println!();
    println!("latency from scheduled send to reply (ok requests); lag = send behind schedule, µs");
    print_latency_table(runs);
    println!();
    println!("batches (alloc = heap bytes the worker allocated per batch: the reply arrays)");
    print_batch_table(runs, max_batch);
}

fn scheduler_config(args: &ServeSimArgs) -> SchedulerConfig {
    let config = SchedulerConfig::default();
    match args.threads {
        Some(threads) => config.threads(threads.get()),
        None => config,
    }
}

fn load_models(paths: &[impl AsRef<Path>], seed: u64) -> Result<Vec<Served>> {
    let mut models: Vec<Served> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let path = path.as_ref();
        let model = load_model(path).with_context(|| path.display().to_string())?;
        let compiled = compile(&model, densebatch::Precision::F32)?;
        // The same model twice is served as two models with distinct names.
        let base = compiled.name().to_string();
        let mut name = base.clone();
        let mut n = 1;
        while models.iter().any(|m| m.name == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let inputs = open_loop::input_pool(compiled.input_width(), seed ^ (i as u64) << 32);
        models.push(Served {
            name,
            compiled: Arc::new(compiled),
            inputs,
        });
    }
    Ok(models)
}

/// Each model's throughput alone, closed loop: one client keeps `4 × max_batch` requests in
/// flight (within the queue), so the worker always finds full batches.
fn measure_capacities(
    args: &ServeSimArgs,
    models: &[Served],
    config: ModelConfig,
) -> Result<Vec<Capacity>> {
    let window = (4 * args.max_batch.get()).min(args.queue_capacity.get());
    let mut capacities = Vec::new();
    for m in models {
        let scheduler = Scheduler::new(scheduler_config(args))?;
        scheduler.load(&m.name, m.compiled.clone(), config)?;
        let mut in_flight: VecDeque<densebatch::ReplyHandle> = VecDeque::with_capacity(window);
        let started = Instant::now();
        let (measure_from, measure_to) = (
            started + CAPACITY_WARMUP,
            started + CAPACITY_WARMUP + CAPACITY_MEASURE,
        );
        let mut done_in_window = 0u64;
        let mut sent = 0usize;
        loop {
            let now = Instant::now();
            if now >= measure_to {
                break;
            }
            if in_flight.len() < window {
                let input = m.inputs[sent % m.inputs.len()].clone();
                let handle = scheduler
                    .submit_timeout(&m.name, Request::new(input), Duration::from_secs(5))
                    .map_err(|e| anyhow::anyhow!("{}: capacity run: {e}", m.name))?;
                in_flight.push_back(handle);
                sent += 1;
            } else if let Some(handle) = in_flight.pop_front() {
                handle
                    .wait()
                    .map_err(|e| anyhow::anyhow!("{}: capacity run: {e}", m.name))?;
                if Instant::now() >= measure_from {
                    done_in_window += 1;
                }
            }
        }
        for handle in in_flight {
            let _ = handle.wait();
        }
        scheduler.shutdown();
        let rps = done_in_window as f64 / CAPACITY_MEASURE.as_secs_f64();
        ensure!(
            rps > 0.0,
            "{}: no request completed in the capacity run",
            m.name
        );
        println!(
            "capacity     {}: {rps:.0} req/s (closed loop, {window} in flight, {:.1} s)",
            m.name,
            CAPACITY_MEASURE.as_secs_f64()
        );
        capacities.push(Capacity {
            model: m.name.clone(),
            rps,
        });
    }
    Ok(capacities)
}

/// One open-loop run: a fresh scheduler serving every model, one sender and one collector
/// thread per model, the batch records gathered on another thread.
fn run_open_loop(
    args: &ServeSimArgs,
    models: &[Served],
    config: ModelConfig,
    rates: &[f64],
    seed: u64,
) -> Result<Vec<Measured>> {
    let (record_tx, record_rx) = crossbeam_channel::bounded::<BatchRecord>(RECORD_CHANNEL);
    let scheduler = Scheduler::new(scheduler_config(args).record_sink(record_tx))?;
    for m in models {
        scheduler.load(&m.name, m.compiled.clone(), config)?;
    }
    // Warmup batches are not part of the run.
    while record_rx.try_recv().is_ok() {}
    let aggregator = std::thread::spawn(move || {
        let mut totals: HashMap<Arc<str>, BatchTotals> = HashMap::new();
        for record in record_rx {
            totals
                .entry(Arc::clone(&record.model))
                .or_default()
                .add(&record);
        }
        totals
    });

    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now() + START_DELAY;
    let reports = std::thread::scope(|s| {
        let clients: Vec<_> = models
            .iter()
            .zip(rates)
            .enumerate()
            .map(|(i, (m, &rate))| {
                let schedule = Schedule {
                    rate,
                    duration,
                    arrivals: args.arrivals,
                    deadline: args.deadline_us.map(Duration::from_micros),
                    seed: seed.wrapping_add(i as u64),
                };
                let (tx, rx) = crossbeam_channel::bounded(
                    args.queue_capacity.get() + 8 * args.max_batch.get() + 1024,
                );
                let collector = s.spawn(move || open_loop::collect(rx));
                let scheduler = &scheduler;
                let sender = s.spawn(move || {
                    open_loop::send(scheduler, &m.name, &m.inputs, &schedule, start, &tx)
                });
                (sender, collector)
            })
            .collect();
        clients
            .into_iter()
            .map(|(sender, collector)| {
                let sent = sender.join().expect("the sender does not panic");
                let collected = collector.join().expect("the collector does not panic");
                (sent, collected)
            })
            .collect::<Vec<_>>()
    });
    let snapshot = scheduler.metrics();
    scheduler.shutdown();
    drop(scheduler);
    let mut batches = aggregator.join().expect("the aggregator does not panic");

    let mut measured = Vec::new();
    for ((m, &rate), (sent, collected)) in models.iter().zip(rates).zip(reports) {
        let elapsed = collected
            .last_reply
            .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64())
            .max(args.duration);
        if let Some(s) = snapshot.model(&m.name) {
            let c = &s.counters;
            if c.records_dropped > 0 {
                eprintln!(
                    "warning: {}: {} batch records dropped; batch statistics are partial",
                    m.name, c.records_dropped
                );
            }
            // The scheduler's own counts must agree with what the client saw.
            ensure!(
                c.accepted == collected.ok + collected.expired + collected.failed,
                "{}: the scheduler accepted {} requests, the client got {} answers",
                m.name,
                c.accepted,
                collected.ok + collected.expired + collected.failed
            );
        }
        let totals = batches.remove(m.name.as_str()).unwrap_or_default();
        measured.push(Measured::new(
            m.name.clone(),
            rate,
            elapsed,
            sent,
            collected,
            totals,
        ));
    }
    Ok(measured)
}
