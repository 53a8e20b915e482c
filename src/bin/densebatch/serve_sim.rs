//! `densebatch serve-sim`: serve models through the batching scheduler under an open-loop load.
//!
//! Without `--rate`, each model's capacity is measured first, alone: a short closed-loop run that
//! keeps its queue full, then an open-loop run offering 1.5 × that. What the open-loop run
//! achieves, with the load generator's threads beside the scheduler's, is the capacity the loads
//! refer to (`--loads`, default 0.7): the closed-loop figure overstates it. With several models, a
//! load of 1.0 offers each model `capacity / models`, so the shared CPUs are about saturated in
//! total.
//!
//! With `--scheduler-cpus`/`--generator-cpus` the two sides are pinned apart. Every run reports,
//! besides latency, what tells the machine from the program: each thread's CPU time, run-queue
//! wait (time runnable while something else had the CPU) and context switches, each CPU's busy
//! and steal time, and the generator's lag behind its schedule.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use densebatch::prelude::*;
use densebatch::{BatchRecord, ModelConfig, Request, Scheduler, SchedulerConfig, SchedulerThread};
use ndarray::Array2;
use serde::Serialize;

use crate::cli::{Arrivals, ServeSimArgs};
use crate::machine::{self, CpuSet, ThreadUsage};
use crate::model_source::{compile, load_model};
use crate::open_loop::{self, Schedule};
use crate::serve_plot;
use crate::serve_report::{
    BatchTotals, MachineRun, Measured, RunOutcome, ThreadRow, print_batch_table, print_bounds,
    print_latency_table, print_machine_table,
};

/// Offered load when neither `--rate` nor `--loads` is given.
const DEFAULT_LOAD: f64 = 0.7;
/// Closed-loop capacity run: warm-up, then measurement, per model.
const CAPACITY_WARMUP: Duration = Duration::from_millis(150);
const CAPACITY_MEASURE: Duration = Duration::from_millis(700);
/// The open-loop capacity probe offers this multiple of the closed-loop capacity; the rate it
/// achieves is the open-loop capacity.
const OPEN_PROBE_FACTOR: f64 = 1.5;
/// Longest open-loop capacity probe, seconds (it is as long as a run when that is shorter).
const OPEN_PROBE_MAX_SECS: f64 = 2.0;
/// Senders start together this long after the threads are spawned.
const START_DELAY: Duration = Duration::from_millis(20);
/// Batch records buffered between the workers and the aggregating thread.
const RECORD_CHANNEL: usize = 1 << 16;

/// One planned run: its load fraction (when set that way) and the rate offered to each model.
type Planned = (Option<f64>, Vec<f64>);

/// The scheduler's threads as they started: which, and their kernel thread ids.
type ThreadLog = Arc<Mutex<Vec<(SchedulerThread, i32)>>>;

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
    /// CPUs the scheduler's threads were pinned to.
    scheduler_cpus: Option<String>,
    /// CPUs the load generator's threads were pinned to.
    generator_cpus: Option<String>,
    /// Capacity per model, when measured.
    capacity_rps: Option<Vec<Capacity>>,
    runs: &'a [RunOutcome],
}

/// One model's capacity, requests per second.
#[derive(Debug, Clone, Serialize)]
struct Capacity {
    model: String,
    /// Open loop: what the scheduler achieved offered `OPEN_PROBE_FACTOR` × the closed-loop
    /// capacity, with the generator beside it. The loads are fractions of this.
    rps: f64,
    /// Closed loop: full batches back to back, the queue never empty.
    closed_loop_rps: f64,
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
    for (flag, cpus) in [
        ("--scheduler-cpus", &args.scheduler_cpus),
        ("--generator-cpus", &args.generator_cpus),
    ] {
        if let Some(cpus) = cpus {
            check_pinning(flag, cpus)?;
        }
    }
    let models = load_models(&args.models, args.seed)?;
    let model_config = ModelConfig::default()
        .max_batch_size(args.max_batch.get())
        .max_wait(Duration::from_micros(args.max_wait_us))
        .queue_capacity(args.queue_capacity.get());

    let probe = Scheduler::new(scheduler_config(args, &ThreadLog::default()))?;
    println!("{}", probe.budget());
    let pool_threads = probe.budget().pool_threads();
    drop(probe);
    print_pinning(args, pool_threads, models.len());
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
            let rps: Vec<f64> = capacities.iter().map(|c| c.rps).collect();
            (Some(capacities), planned_rates(&loads, &rps))
        }
    };

    let mut runs = Vec::new();
    for (i, (load, rates)) in plan.iter().enumerate() {
        let seed = args.seed.wrapping_add(1000 * i as u64);
        let duration = Duration::from_secs_f64(args.duration);
        let (measured, machine) =
            run_open_loop(args, &models, model_config, rates, duration, seed)?;
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
            machine,
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
            scheduler_cpus: args.scheduler_cpus.as_ref().map(ToString::to_string),
            generator_cpus: args.generator_cpus.as_ref().map(ToString::to_string),
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
    print_bounds(runs);
    println!();
    println!("batches (alloc = heap bytes the worker allocated per batch: the reply arrays)");
    print_batch_table(runs, max_batch);
    if runs.iter().any(|r| r.machine.is_some()) {
        println!();
        println!(
            "threads and CPUs over each run (runq = runnable, waiting for a CPU; cs = context switches)"
        );
        print_machine_table(runs);
    }
}

/// The rates of each run: `load × capacity / models` to each model, so that a load of 1.0
/// about saturates the shared CPUs.
fn planned_rates(loads: &[f64], capacities: &[f64]) -> Vec<Planned> {
    let share = capacities.len() as f64;
    loads
        .iter()
        .map(|&load| {
            let rates = capacities.iter().map(|c| load * c / share).collect();
            (Some(load), rates)
        })
        .collect()
}

/// The pool's size: `--threads`, else one per `--scheduler-cpus` CPU, else the budget's.
fn pool_threads(args: &ServeSimArgs) -> Option<usize> {
    args.threads
        .map(std::num::NonZeroUsize::get)
        .or(args.scheduler_cpus.as_ref().map(CpuSet::len))
}

/// The scheduler's settings; every thread it starts is pinned (with `--scheduler-cpus`) and
/// noted in `log`.
fn scheduler_config(args: &ServeSimArgs, log: &ThreadLog) -> SchedulerConfig {
    let mut config = SchedulerConfig::default();
    if let Some(threads) = pool_threads(args) {
        config = config.threads(threads);
    }
    let (pin, log) = (args.scheduler_cpus.clone(), Arc::clone(log));
    config.on_thread_start(move |thread| {
        if let Some(cpus) = &pin
            && let Err(e) = machine::pin_current_thread(cpus)
        {
            eprintln!("warning: cannot pin {thread:?} to CPUs {cpus}: {e}");
        }
        if let Some(tid) = machine::current_tid() {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((thread.clone(), tid));
        }
    })
}

/// Refuses a CPU set this process may not run on, before any thread is started.
fn check_pinning(flag: &str, cpus: &CpuSet) -> Result<()> {
    ensure!(cpus.len() > 0, "{flag}: no CPU given");
    let cpus = cpus.clone();
    let pinned = std::thread::spawn(move || machine::pin_current_thread(&cpus))
        .join()
        .expect("pinning does not panic");
    pinned.with_context(|| format!("{flag}: cannot pin a thread there"))
}

/// Says where the threads run, and whether either side has more busy threads than CPUs.
fn print_pinning(args: &ServeSimArgs, pool_threads: usize, models: usize) {
    let show = |cpus: &Option<CpuSet>| {
        cpus.as_ref()
            .map_or("any CPU".to_string(), |c| format!("CPUs {c}"))
    };
    println!(
        "threads      scheduler: {pool_threads} pool + {models} worker(s) on {}; generator: {} \
         (a sender and a collector per model, one for batch records) on {}",
        show(&args.scheduler_cpus),
        2 * models + 1,
        show(&args.generator_cpus),
    );
    if let Some(cpus) = &args.scheduler_cpus
        && pool_threads > cpus.len()
    {
        eprintln!(
            "warning: {pool_threads} pool threads on {} CPU(s): oversubscribed",
            cpus.len()
        );
    }
    if let (Some(a), Some(b)) = (&args.scheduler_cpus, &args.generator_cpus)
        && a.cpus().iter().any(|c| b.cpus().contains(c))
    {
        eprintln!("warning: --scheduler-cpus {a} and --generator-cpus {b} overlap");
    }
}

/// Each logged scheduler thread's usage now (threads that have exited are left out).
fn scheduler_usage(log: &ThreadLog) -> Vec<(SchedulerThread, i32, ThreadUsage)> {
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    log.into_iter()
        .filter_map(|(thread, tid)| ThreadUsage::of(tid).map(|u| (thread, tid, u)))
        .collect()
}

fn thread_label(thread: &SchedulerThread) -> String {
    match thread {
        SchedulerThread::Pool { index } => format!("pool {index}"),
        SchedulerThread::Worker { model } => format!("worker {model}"),
        other => format!("{other:?}"),
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

/// Each model's capacity alone: closed loop, then open loop at `OPEN_PROBE_FACTOR` × that.
fn measure_capacities(
    args: &ServeSimArgs,
    models: &[Served],
    config: ModelConfig,
) -> Result<Vec<Capacity>> {
    let mut capacities = Vec::new();
    for (i, m) in models.iter().enumerate() {
        // The closed-loop client is a load-generator thread too.
        let closed = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("gen-capacity".to_string())
                .spawn_scoped(s, || {
                    machine::measured(args.generator_cpus.as_ref(), || {
                        closed_loop_capacity(args, m, config)
                    })
                    .0
                })
                .context("cannot start the capacity client")?
                .join()
                .map_err(|_| anyhow::anyhow!("the capacity client panicked"))?
        })?;
        let probe_secs = args.duration.min(OPEN_PROBE_MAX_SECS);
        let probe_rate = closed * OPEN_PROBE_FACTOR;
        let seed = args.seed.wrapping_add(777 + i as u64);
        let (measured, _) = run_open_loop(
            args,
            std::slice::from_ref(m),
            config,
            &[probe_rate],
            Duration::from_secs_f64(probe_secs),
            seed,
        )?;
        let probe = measured[0].outcome();
        let open = probe.achieved_rps;
        ensure!(
            open > 0.0,
            "{}: no request completed in the open-loop capacity run",
            m.name
        );
        println!(
            "capacity     {}: open loop {open:.0} req/s (offered {probe_rate:.0}, {OPEN_PROBE_FACTOR} × \
             the closed-loop {closed:.0}, for {probe_secs:.1} s; {} rejected); loads refer to it",
            m.name, probe.rejected
        );
        capacities.push(Capacity {
            model: m.name.clone(),
            rps: open,
            closed_loop_rps: closed,
        });
    }
    Ok(capacities)
}

/// A model's throughput alone, closed loop: one client keeps `4 × max_batch` requests in flight
/// (within the queue), so the worker always finds full batches.
fn closed_loop_capacity(args: &ServeSimArgs, m: &Served, config: ModelConfig) -> Result<f64> {
    let window = (4 * args.max_batch.get()).min(args.queue_capacity.get());
    let scheduler = Scheduler::new(scheduler_config(args, &ThreadLog::default()))?;
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
    Ok(rps)
}

/// One open-loop run: a fresh scheduler serving every model, one sender and one collector
/// thread per model, the batch records gathered on another thread; with what the threads and
/// CPUs did over it.
fn run_open_loop(
    args: &ServeSimArgs,
    models: &[Served],
    config: ModelConfig,
    rates: &[f64],
    duration: Duration,
    seed: u64,
) -> Result<(Vec<Measured>, Option<MachineRun>)> {
    let gen_cpus = args.generator_cpus.as_ref();
    let log = ThreadLog::default();
    let (record_tx, record_rx) = crossbeam_channel::bounded::<BatchRecord>(RECORD_CHANNEL);
    let scheduler = Scheduler::new(scheduler_config(args, &log).record_sink(record_tx))?;
    for m in models {
        scheduler.load(&m.name, m.compiled.clone(), config)?;
    }
    // Warmup batches are not part of the run.
    while record_rx.try_recv().is_ok() {}
    let aggregator = std::thread::Builder::new()
        .name("gen-records".to_string())
        .spawn({
            let gen_cpus = gen_cpus.cloned();
            move || {
                machine::measured(gen_cpus.as_ref(), || {
                    // The records are tallied after the fact; the sender and collector on the
                    // same CPU must never wait for this.
                    machine::idle_priority();
                    let mut totals: HashMap<Arc<str>, BatchTotals> = HashMap::new();
                    for record in record_rx {
                        totals
                            .entry(Arc::clone(&record.model))
                            .or_default()
                            .add(&record);
                    }
                    totals
                })
            }
        })
        .context("cannot start the batch-record thread")?;

    let others_before = machine::other_threads();
    let cpus_before = machine::cpu_ticks();
    let threads_before = scheduler_usage(&log);
    let wall_before = Instant::now();
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
                let collector = std::thread::Builder::new()
                    .name(format!("gen-collect-{i}"))
                    .spawn_scoped(s, move || {
                        machine::measured(gen_cpus, || open_loop::collect(rx))
                    })
                    .expect("a collector thread starts");
                let scheduler = &scheduler;
                let sender = std::thread::Builder::new()
                    .name(format!("gen-send-{i}"))
                    .spawn_scoped(s, move || {
                        machine::measured(gen_cpus, || {
                            machine::precise_sleeps();
                            open_loop::send(scheduler, &m.name, &m.inputs, &schedule, start, &tx)
                        })
                    })
                    .expect("a sender thread starts");
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
    let wall = wall_before.elapsed();
    let threads_after = scheduler_usage(&log);
    let cpus_after = machine::cpu_ticks();
    let others = machine::others_between(&others_before, &machine::other_threads());
    let snapshot = scheduler.metrics();
    scheduler.shutdown();
    drop(scheduler);
    let (mut batches, records_usage) = aggregator.join().expect("the aggregator does not panic");

    // Our threads over the run: the scheduler's from /proc, the generator's from themselves.
    let mut rows = Vec::new();
    for (thread, tid, after) in &threads_after {
        let before = threads_before
            .iter()
            .find(|(_, t, _)| t == tid)
            .map_or(ThreadUsage::default(), |(_, _, u)| *u);
        rows.push(ThreadRow::new(
            thread_label(thread),
            args.scheduler_cpus.as_ref(),
            after.since(before),
        ));
    }
    for (m, ((_, send_usage), (_, collect_usage))) in models.iter().zip(&reports) {
        if let Some(u) = send_usage {
            rows.push(ThreadRow::new(format!("sender {}", m.name), gen_cpus, *u));
        }
        if let Some(u) = collect_usage {
            rows.push(ThreadRow::new(
                format!("collector {}", m.name),
                gen_cpus,
                *u,
            ));
        }
    }
    if let Some(u) = records_usage {
        rows.push(ThreadRow::new("records".to_string(), gen_cpus, u));
    }
    let cpus = machine::cpus_between(&cpus_before, &cpus_after);
    let machine_run = (!rows.is_empty()).then_some(MachineRun {
        wall_ms: wall.as_secs_f64() * 1e3,
        threads: rows,
        cpus,
        others,
    });

    let mut measured = Vec::new();
    for ((m, &rate), ((sent, _), (collected, _))) in models.iter().zip(rates).zip(reports) {
        let elapsed = collected
            .last_reply
            .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64())
            .max(duration.as_secs_f64());
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
        let mut one = Measured::new(m.name.clone(), rate, elapsed, sent, collected, totals);
        one.max_wait = config.get_batch().get_max_wait();
        one.full_batch_compute = snapshot
            .model(&m.name)
            .and_then(|s| s.warmup.iter().max_by_key(|(rows, _)| *rows))
            .map(|(_, time)| *time);
        one.scheduler_p99 = snapshot.model(&m.name).map(|s| s.request_latency.p99());
        measured.push(one);
    }
    Ok((measured, machine_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_are_fractions_of_the_capacity_shared_between_models() {
        let plan = planned_rates(&[0.5, 1.0], &[1000.0, 300.0]);
        assert_eq!(
            plan,
            [
                (Some(0.5), vec![250.0, 75.0]),
                (Some(1.0), vec![500.0, 150.0])
            ]
        );
        assert_eq!(
            planned_rates(&[0.7], &[2000.0]),
            [(Some(0.7), vec![1400.0])]
        );
    }
}
