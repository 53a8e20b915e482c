//! Scheduler benchmarks on one model:
//!
//! ```text
//! cargo run --release --example serve_bench -- MODEL_DIR [SECONDS_PER_LOAD] [MAX_BATCH] [MAX_WAIT_US] [inline] [CPUS]
//! ```
//!
//! 1. **Added latency.** For a single-row request and for a full batch, the time from the last
//!    submit to the last reply through the scheduler, against a direct `predict_batch` of the same
//!    rows on the same pool, interleaved run by run. The difference is what the scheduler adds.
//!    The single row is timed back to back and at one call per millisecond (the CPU idle between
//!    calls, as under light network load).
//! 2. **Open loop.** Capacity is measured first: closed-loop (a producer blocking on the full
//!    queue: full batches back-to-back), then open-loop at 150 % of that. The open-loop figure, what
//!    the scheduler sustains while the load generator shares the machine, is the capacity the load
//!    levels refer to. Then requests arrive on a fixed schedule at 70 %, 90 % and 110 % of it, from
//!    a generator thread that never waits for replies (no coordinated omission); latency is measured
//!    from each request's *scheduled* send time to its reply. The generator wakes at most every
//!    200 µs and sends what is due, so arrivals come in small bursts.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use densebatch::prelude::*;
use densebatch::{
    CloseReason, ModelConfig, ReplyHandle, Request, Scheduler, SchedulerConfig, SubmitError,
};
use hdrhistogram::Histogram;
use ndarray::Array2;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model_dir) = args.first() else {
        bail!(
            "usage: serve_bench MODEL_DIR [SECONDS_PER_LOAD] [MAX_BATCH] [MAX_WAIT_US] [inline] [CPUS]"
        );
    };
    let seconds: f64 = args
        .get(1)
        .map_or(Ok(5.0), |s| s.parse())
        .context("SECONDS")?;
    let max_batch: usize = args
        .get(2)
        .map_or(Ok(32), |s| s.parse())
        .context("MAX_BATCH")?;
    let max_wait_us: u64 = args
        .get(3)
        .map_or(Ok(1000), |s| s.parse())
        .context("MAX_WAIT_US")?;
    let max_wait = Duration::from_micros(max_wait_us);
    let inline = args.get(4).is_some_and(|s| s == "inline");
    let cpus: Option<usize> = args.get(5).map(|s| s.parse()).transpose().context("CPUS")?;

    let model = Model::load(model_dir)?;
    let compiled: Arc<CompiledModel> = Arc::new(model.compile()?);
    let mut config = SchedulerConfig::default().inline_small_batches(inline);
    if let Some(cpus) = cpus {
        config = config.threads(cpus);
    }
    let scheduler = Scheduler::new(config)?;
    println!("{}", scheduler.budget());
    println!(
        "model {} ({} → {}), kernel {:?}, max_batch_size {max_batch}, max_wait {max_wait:?}",
        compiled.name(),
        compiled.input_width(),
        compiled.output_width(),
        compiled.kernel()
    );
    let width = compiled.input_width();
    let inputs = Array2::from_shape_fn((4096, width), |(i, j)| {
        (((i * 7919 + j * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 1.7
    });
    let sample = |i: usize| {
        Request::new(
            inputs
                .row(i % 4096)
                .to_owned()
                .insert_axis(ndarray::Axis(0)),
        )
    };

    added_latency(&scheduler, &compiled, &inputs, max_batch)?;

    let config = ModelConfig::default()
        .max_batch_size(max_batch)
        .max_wait(max_wait)
        .queue_capacity(4096);
    scheduler.load("open", compiled.clone(), config)?;
    let full_batch = scheduler
        .metrics()
        .model("open")
        .unwrap()
        .warmup
        .last()
        .unwrap()
        .1;
    let closed_loop = measure_capacity(&scheduler, &sample, seconds.min(3.0))?;
    let saturated = scheduler
        .metrics()
        .model("open")
        .unwrap()
        .compute
        .p50()
        .as_secs_f64()
        * 1e6;
    println!("compute p50 while saturated: {saturated:.1} µs");
    println!(
        "\ncapacity closed-loop (saturated, full batches): {closed_loop:.0} req/s; full-batch compute at warmup {:.1} µs; \
         70 % goal p99 ≤ max_wait + 2 × full batch = {:.1} µs",
        micros(full_batch),
        micros(max_wait + 2 * full_batch)
    );
    println!(
        "\n| load | target req/s | achieved req/s | p50 µs | p99 µs | p99.9 µs | scheduler p99 µs | mean batch | compute p50 µs | compute p99 µs | rejected | closes full/wait/deadline/drain |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    // A fresh instance per run so histograms and counters are per run.
    scheduler.replace("open", compiled.clone(), config)?;
    let capacity = open_loop(&scheduler, &sample, closed_loop * 1.5, seconds, "capacity")?;
    for fraction in [0.7, 0.9, 1.1] {
        scheduler.replace("open", compiled.clone(), config)?;
        let label = format!("{:.0} %", fraction * 100.0);
        open_loop(&scheduler, &sample, capacity * fraction, seconds, &label)?;
    }
    scheduler.shutdown();
    Ok(())
}

/// How long the added-latency client polls for its replies before sleeping: longer than a full
/// batch's compute, as a latency-sensitive caller would set it, so that the caller's own wake-up
/// is not counted as scheduler overhead.
const REPLY_SPIN: Duration = Duration::from_millis(5);

/// The pause between calls of the light-load rows: one request per millisecond, as in the network
/// path's light-load figures.
const LIGHT_LOAD_GAP: Duration = Duration::from_millis(1);

/// The open-loop generator's shortest sleep.
const TICK: Duration = Duration::from_micros(200);

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Added latency: scheduler (submit → reply) minus direct `predict_batch`, same rows, same pool
/// size, interleaved.
fn added_latency(
    scheduler: &Scheduler,
    compiled: &Arc<CompiledModel>,
    inputs: &Array2<f32>,
    max_batch: usize,
) -> Result<()> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(scheduler.budget().pool_threads())
        .build()?;
    let mut workspaces = compiled.new_workspaces(pool.current_num_threads());
    println!(
        "\n| rows | pause between calls | direct p50 µs | direct p99 µs | scheduler p50 µs | scheduler p99 µs | added p50 µs | added p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // One row back to back, then one row per millisecond (the light load the network
    // benchmarks use, with the CPU idle between calls), then a full batch back to back.
    for (rows, gap) in [
        (1, Duration::ZERO),
        (1, LIGHT_LOAD_GAP),
        (max_batch, Duration::ZERO),
    ] {
        // max_wait far away: the batch closes exactly when its last row arrives (full). A caller
        // that pauses between calls, or shares one CPU with the worker, blocks on its reply as
        // a plain `Scheduler::predict` does: spinning, it would hold the CPU the worker needs.
        let reply_spin = if gap.is_zero() && scheduler.budget().cpus() > 1 {
            REPLY_SPIN
        } else {
            Duration::ZERO
        };
        let config = ModelConfig::default()
            .max_batch_size(rows)
            .max_wait(Duration::from_secs(10))
            .reply_spin(reply_spin);
        scheduler.load("added", compiled.clone(), config)?;
        let x = inputs.slice(ndarray::s![..rows, ..]).to_owned();
        let mut y = Array2::zeros((rows, compiled.output_width()));
        let requests: Vec<Request> = (0..rows)
            .map(|i| Request::new(x.slice(ndarray::s![i..i + 1, ..]).to_owned()))
            .collect();
        let mut direct = Histogram::<u64>::new(3)?;
        let mut through = Histogram::<u64>::new(3)?;
        let iterations = match (rows, gap.is_zero()) {
            (1, true) => 20_000,
            (1, false) => 4_000,
            _ => 2_000,
        };
        for it in 0..iterations + 200 {
            thread::sleep(gap);
            let t = Instant::now();
            predict_batch(&**compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
            let d = t.elapsed();
            thread::sleep(gap);
            let mut handles: Vec<ReplyHandle> = Vec::with_capacity(rows);
            for r in &requests[..rows - 1] {
                handles.push(
                    scheduler
                        .try_submit("added", r.clone())
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                );
            }
            let last = requests[rows - 1].clone();
            let t = Instant::now();
            handles.push(
                scheduler
                    .try_submit("added", last)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            for h in handles {
                h.wait()?;
            }
            let s = t.elapsed();
            if it >= 200 {
                direct.record(d.as_nanos() as u64)?;
                through.record(s.as_nanos() as u64)?;
            }
        }
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        println!(
            "| {rows} | {gap:?} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            q(&direct, 0.5),
            q(&direct, 0.99),
            q(&through, 0.5),
            q(&through, 0.99),
            q(&through, 0.5) - q(&direct, 0.5),
            q(&through, 0.99) - q(&direct, 0.99),
        );
        scheduler.unload("added")?;
    }
    Ok(())
}

/// Throughput with the queue never empty: a producer blocks on the full queue, a consumer
/// waits replies in order.
fn measure_capacity(
    scheduler: &Scheduler,
    sample: &(dyn Fn(usize) -> Request + Sync),
    seconds: f64,
) -> Result<f64> {
    let (tx, rx) = crossbeam_channel::bounded::<ReplyHandle>(8192);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    thread::scope(|s| {
        s.spawn(move || {
            let mut i = 0;
            while Instant::now() < deadline {
                let h = scheduler
                    .submit_timeout("open", sample(i), Duration::from_secs(10))
                    .expect("queue drains");
                tx.send(h).expect("consumer alive");
                i += 1;
            }
        });
        let start = Instant::now();
        let mut done = 0u64;
        for h in rx {
            h.wait().expect("reply");
            done += 1;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    })
}

/// One open-loop run at `rate` requests per second for `seconds`; prints its row under `label`
/// and returns the achieved rate.
fn open_loop(
    scheduler: &Scheduler,
    sample: &(dyn Fn(usize) -> Request + Sync),
    rate: f64,
    seconds: f64,
    label: &str,
) -> Result<f64> {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, ReplyHandle)>();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let start = Instant::now() + Duration::from_millis(5);
    let (rejected, finished) = thread::scope(|s| {
        let generator = s.spawn(move || {
            let mut rejected = 0u64;
            let mut i = 0;
            while i < total {
                let now = Instant::now();
                // Send everything due; the schedule never waits for replies.
                while i < total && start + interval * i as u32 <= now {
                    let scheduled = start + interval * i as u32;
                    match scheduler.try_submit("open", sample(i)) {
                        Ok(h) => tx.send((scheduled, h)).expect("collector alive"),
                        Err(SubmitError::QueueFull(_)) => rejected += 1,
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                }
                if i < total {
                    // Wake at most every TICK: waking the generator for every request would
                    // steal the two cores from the pool. Requests due within a tick go out
                    // together; their latency still counts from their scheduled time.
                    let next = start + interval * i as u32;
                    if let Some(gap) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(gap.max(TICK));
                    }
                }
            }
            rejected
        });
        for (scheduled, h) in rx {
            h.wait().expect("reply");
            latency.saturating_record(Instant::now().duration_since(scheduled).as_nanos() as u64);
        }
        (generator.join().expect("generator"), Instant::now())
    });
    let elapsed = finished.duration_since(start).as_secs_f64();
    let snapshot = scheduler.metrics();
    let m = snapshot.model("open").expect("loaded");
    let closes = CloseReason::ALL.map(|r| m.counters.closes(r).to_string());
    let q = |q: f64| latency.value_at_quantile(q) as f64 / 1e3;
    let achieved = latency.len() as f64 / elapsed;
    println!(
        "| {label} | {rate:.0} | {achieved:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {rejected} | {} |",
        q(0.5),
        q(0.99),
        q(0.999),
        m.request_latency.p99().as_secs_f64() * 1e6,
        m.batch_rows.mean(),
        m.compute.p50().as_secs_f64() * 1e6,
        m.compute.p99().as_secs_f64() * 1e6,
        closes.join("/"),
    );
    Ok(achieved)
}
