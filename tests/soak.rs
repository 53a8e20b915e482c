//! Soak: several models served at 90–110 % of the scheduler's capacity for a while, with models
//! replaced and unloaded at random, one model that panics now and then (and fails now and then),
//! one that is slow, deadlines and cancellations. At the end: every accepted request was answered
//! exactly once (accepted = completed + failed + panicked + expired + cancelled, per model
//! generation and in total, and every handle the test kept got its one reply, the right one), the
//! resident memory stayed flat after warm-up, and the thread count is back to where it started.
//!
//! `short_soak` runs in every `cargo test` (about 20 s). The long one is ignored; run it with
//! `DENSEBATCH_SOAK_SECS=600 cargo test --test soak -- --ignored --nocapture`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use densebatch::prelude::*;
use densebatch::{
    Counters, ModelConfig, Predictor, Reply, ReplyHandle, Request, RequestError, Scheduler,
    SchedulerConfig, Split, SubmitError, Workspace,
};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A first value that makes [`Flaky`] panic.
const PANIC_MARKER: f32 = -777.0;
/// A first value that makes [`Flaky`] return an error.
const FAIL_MARKER: f32 = -555.0;
/// How long the generator runs to find the scheduler's capacity before the soak proper.
const CALIBRATION: Duration = Duration::from_secs(3);
/// Longest any reply may take to arrive before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(60);

/// Copies its input plus one to its output after sleeping `delay` per batch; panics on a row
/// starting with [`PANIC_MARKER`] and fails a batch holding a row starting with [`FAIL_MARKER`].
#[derive(Debug)]
struct Flaky {
    width: usize,
    delay: Duration,
}

impl Predictor for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn input_width(&self) -> usize {
        self.width
    }
    fn output_width(&self) -> usize {
        self.width
    }
    fn flops_per_sample(&self) -> u64 {
        self.width as u64
    }
    fn new_workspace(&self) -> Workspace {
        Workspace::new(1, self.width)
    }
    fn split(&self, _rows: usize, _threads: usize, _caller_on_pool: bool) -> Split {
        Split::Inline
    }
    fn predict_into(
        &self,
        _workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> densebatch::Result<()> {
        if x.rows().into_iter().any(|r| r[0] == PANIC_MARKER) {
            panic!("soak: panic marker");
        }
        if x.rows().into_iter().any(|r| r[0] == FAIL_MARKER) {
            return Err(densebatch::Error::InputWidth {
                expected: 0,
                got: self.width,
            });
        }
        if !self.delay.is_zero() {
            thread::sleep(self.delay);
        }
        out.zip_mut_with(&x, |o, i| *o = i + 1.0);
        Ok(())
    }
}

/// One served model and how the test checks its replies.
struct Served {
    name: &'static str,
    predictor: Arc<dyn Predictor>,
    /// For the compiled models: the model, whose reference loops give every reply's exact bits.
    model: Option<Model>,
    width: usize,
    width_out: usize,
    config: ModelConfig,
    /// Requests per second offered at 100 % load.
    rate: f64,
    /// Whether it gets panic and failure markers.
    flaky: bool,
}

/// What the test expects of a reply it waits for.
struct Pending {
    model: usize,
    input: Array2<f32>,
    handle: ReplyHandle,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    accepted: u64,
    completed: u64,
    failed: u64,
    panicked: u64,
    expired: u64,
    cancelled: u64,
}

impl Tally {
    fn add(&mut self, c: &Counters) {
        self.accepted += c.accepted;
        self.completed += c.completed;
        self.failed += c.failed;
        self.panicked += c.panicked;
        self.expired += c.expired;
        self.cancelled += c.cancelled;
    }

    fn answered(&self) -> u64 {
        self.completed + self.failed + self.panicked + self.expired + self.cancelled
    }
}

/// The replies the test saw, by kind.
#[derive(Debug, Default)]
struct Seen {
    ok: u64,
    failed: u64,
    panicked: u64,
    expired: u64,
    checked_bits: u64,
}

fn statm_rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until `name`'s current generation has answered everything it accepted (no traffic
/// reaches it meanwhile: the caller holds its gate), and returns its counters.
fn drain(scheduler: &Scheduler, name: &str) -> Counters {
    let start = Instant::now();
    loop {
        let metrics = scheduler.metrics();
        let c = metrics.model(name).expect("model loaded").counters;
        let mut t = Tally::default();
        t.add(&c);
        if t.answered() == t.accepted {
            return c;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{name}: {} accepted, {} answered after {PATIENCE:?}",
            t.accepted,
            t.answered()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs a full batch of each model a few times through the scheduler, and gives each model the
/// request rate at which all of them together take the compute pool's whole time.
fn calibrate(scheduler: &Scheduler, served: &mut [Served]) {
    let cpu_bound = served.iter().filter(|s| s.model.is_some()).count() as f64;
    for s in served.iter_mut() {
        let rows = s.config.get_batch().get_max_batch_size();
        let x = Array2::from_elem((rows, s.width), 0.5f32);
        let reps = 20;
        let start = Instant::now();
        for _ in 0..reps {
            scheduler.predict(s.name, x.view()).unwrap();
        }
        let per_row = start.elapsed().as_secs_f64() / (reps * rows) as f64;
        // The compiled models share the pool; the others spend their time off it.
        let share = if s.model.is_some() { cpu_bound } else { 1.0 };
        s.rate = 1.0 / per_row / share;
    }
}

fn soak(duration: Duration, seed: u64) {
    // The flaky model's panics are expected: keep their messages out of the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"soak: panic marker") {
            default_hook(info);
        }
    }));
    let threads_before = thread_count();
    let mut rng = StdRng::seed_from_u64(seed);
    let fast = ModelConfig::default()
        .max_batch_size(32)
        .max_wait(Duration::from_millis(1))
        .queue_capacity(256)
        .warmup_rounds(1);
    let mlp_a = Model::random(
        &[784, 512, 512, 10],
        Activation::Relu,
        Activation::Softmax,
        1,
    );
    let mlp_b = Model::random(
        &[300, 257, 129, 7],
        Activation::Gelu,
        Activation::Identity,
        2,
    );
    let mut served = vec![
        Served {
            name: "mlp-a",
            predictor: Arc::new(mlp_a.compile().unwrap()),
            model: Some(mlp_a),
            width: 784,
            width_out: 10,
            config: fast,
            rate: 0.0,
            flaky: false,
        },
        Served {
            name: "mlp-b",
            predictor: Arc::new(mlp_b.compile().unwrap()),
            model: Some(mlp_b),
            width: 300,
            width_out: 7,
            config: fast,
            rate: 0.0,
            flaky: false,
        },
        Served {
            name: "flaky",
            predictor: Arc::new(Flaky {
                width: 8,
                delay: Duration::from_millis(1),
            }),
            model: None,
            width: 8,
            width_out: 8,
            config: fast,
            rate: 0.0,
            flaky: true,
        },
        Served {
            name: "slow",
            predictor: Arc::new(Flaky {
                width: 4,
                delay: Duration::from_millis(4),
            }),
            model: None,
            width: 4,
            width_out: 4,
            config: fast.max_batch_size(8).queue_capacity(64),
            rate: 0.0,
            flaky: false,
        },
    ];

    let scheduler = Scheduler::new(SchedulerConfig::default().threads(2)).unwrap();
    for s in &served {
        scheduler
            .load(s.name, s.predictor.clone(), s.config)
            .unwrap();
    }
    calibrate(&scheduler, &mut served);
    let gates: Vec<RwLock<()>> = served.iter().map(|_| RwLock::new(())).collect();
    let stop = AtomicBool::new(false);
    let chaos_on = AtomicBool::new(false);
    // Bounded, so that a collector falling behind slows the generator (and shows as its lag)
    // instead of growing the process's memory.
    let (to_collector, pending): (Sender<Pending>, Receiver<Pending>) =
        crossbeam_channel::bounded(64);
    let replaced = Mutex::new(0u64);
    let unloaded = Mutex::new(0u64);
    let refused: Mutex<HashMap<&'static str, u64>> = Mutex::new(HashMap::new());
    let mut cancelled_by_test = 0u64;
    let mut accepted_by_test = 0u64;
    let mut rss = Vec::new();
    let warm_up = duration.mul_f64(0.4);

    let start = Instant::now();

    let seen = thread::scope(|scope| {
        // Replies: every handle kept must get exactly its own answer within PATIENCE.
        let collector = scope.spawn(|| {
            let mut seen = Seen::default();
            for p in pending.iter() {
                let reply: Reply = p
                    .handle
                    .wait_timeout(PATIENCE)
                    .unwrap_or_else(|| panic!("{}: a reply was lost", served[p.model].name));
                match reply {
                    Ok(y) => {
                        seen.ok += 1;
                        let s = &served[p.model];
                        assert_eq!(y.dim(), (p.input.nrows(), s.width_out), "{}", s.name);
                        match &s.model {
                            // The reference loops cost more than the kernels: check one in 64.
                            Some(model) if seen.ok % 64 == 0 => {
                                let want = model.predict_reference(p.input.view()).unwrap();
                                assert_eq!(y, want, "{}: wrong bits", s.name);
                                seen.checked_bits += 1;
                            }
                            Some(_) => {}
                            None => {
                                let right = y.iter().zip(&p.input).all(|(o, i)| *o == i + 1.0);
                                assert!(right, "{}: wrong reply", s.name);
                                seen.checked_bits += 1;
                            }
                        }
                    }
                    Err(RequestError::DeadlineExceeded) => seen.expired += 1,
                    Err(RequestError::Model(_)) => seen.failed += 1,
                    Err(RequestError::ModelPanicked) => seen.panicked += 1,
                    Err(e) => panic!("{}: {e}", served[p.model].name),
                }
            }
            seen
        });

        // Chaos: now and then one model is replaced, or unloaded for a moment and loaded again.
        let chaos = scope.spawn(|| {
            let mut rng = StdRng::seed_from_u64(seed ^ 0xC4A05);
            let mut drained = Tally::default();
            while !chaos_on.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
            }
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = rng.random_range(0..served.len());
                let s = &served[i];
                let gate = gates[i].write().unwrap();
                drained.add(&drain(&scheduler, s.name));
                if rng.random_bool(0.7) {
                    scheduler
                        .replace(s.name, s.predictor.clone(), s.config)
                        .unwrap();
                    *replaced.lock().unwrap() += 1;
                    drop(gate);
                } else {
                    scheduler.unload(s.name).unwrap();
                    *unloaded.lock().unwrap() += 1;
                    thread::sleep(Duration::from_millis(rng.random_range(20..200)));
                    scheduler
                        .load(s.name, s.predictor.clone(), s.config)
                        .unwrap();
                    drop(gate);
                }
            }
            drained
        });

        // The open-loop generator: each model's requests due by now, at a load swinging between
        // 90 and 110 % of capacity.
        //
        // Capacity is what the scheduler completes while this generator and the collector share
        // the machine with it: the first CALIBRATION offers 1.5 × each model's rate measured
        // alone (an overload) without chaos, and what each model completes in it is its capacity.
        let mut rates: Vec<f64> = served.iter().map(|s| s.rate).collect();
        let completed_at = |scheduler: &Scheduler| -> Vec<u64> {
            let m = scheduler.metrics();
            served
                .iter()
                .map(|s| m.model(s.name).unwrap().counters.completed)
                .collect()
        };
        let completed_before = completed_at(&scheduler);
        let mut calibrating = true;
        let mut credit = vec![0.0f64; served.len()];
        let mut offered = vec![0u64; served.len()];
        let mut unoffered = 0u64;
        let mut last = Instant::now();
        let mut lagged = Duration::ZERO;
        let mut next_rss = Instant::now();
        let mut id = 0f32;
        while start.elapsed() < CALIBRATION + duration {
            thread::sleep(Duration::from_micros(500));
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64();
            if dt > 0.010 && !calibrating {
                lagged += now.duration_since(last);
            }
            last = now;
            if calibrating && start.elapsed() >= CALIBRATION {
                let completed = completed_at(&scheduler);
                for (i, rate) in rates.iter_mut().enumerate() {
                    *rate =
                        (completed[i] - completed_before[i]) as f64 / start.elapsed().as_secs_f64();
                }
                offered.iter_mut().for_each(|n| *n = 0);
                calibrating = false;
                chaos_on.store(true, Ordering::Relaxed);
            }
            let phase = start.elapsed().as_secs_f64() / 5.0 * std::f64::consts::TAU;
            let load = if calibrating {
                1.5
            } else {
                1.0 + 0.1 * phase.sin()
            };
            for (i, s) in served.iter().enumerate() {
                credit[i] += rates[i] * load * dt;
                // A generator that fell behind does not catch up in one burst: requests more
                // than 20 ms overdue are not offered (and counted).
                let cap = rates[i] * 0.02 + 1.0;
                if credit[i] > cap {
                    if !calibrating {
                        unoffered += (credit[i] - cap) as u64;
                    }
                    credit[i] = cap;
                }
                while credit[i] >= 1.0 {
                    credit[i] -= 1.0;
                    offered[i] += 1;
                    id += 1.0;
                    let rows = if rng.random_bool(0.9) { 1 } else { 2 };
                    let mut x = Array2::from_shape_fn((rows, s.width), |(r, c)| {
                        ((id + r as f32 * 0.5 + c as f32 * 0.25) % 97.0) / 97.0 - 0.5
                    });
                    if s.flaky {
                        let roll: f64 = rng.random();
                        if roll < 0.002 {
                            x[[0, 0]] = PANIC_MARKER;
                        } else if roll < 0.005 {
                            x[[0, 0]] = FAIL_MARKER;
                        }
                    }
                    let mut request = Request::new(x.clone());
                    let roll: f64 = rng.random();
                    if roll < 0.15 {
                        request = request
                            .with_timeout(Duration::from_micros(rng.random_range(200..20_000)));
                    }
                    // A model being replaced or unloaded takes no traffic (so that its counts
                    // can be closed); the generator does not wait for it.
                    let Ok(gate) = gates[i].try_read() else {
                        *refused.lock().unwrap().entry("swapping").or_default() += 1;
                        continue;
                    };
                    let submitted = if roll > 0.9 {
                        scheduler.submit_timeout(s.name, request, Duration::from_millis(2))
                    } else {
                        scheduler.try_submit(s.name, request)
                    };
                    drop(gate);
                    match submitted {
                        Ok(handle) => {
                            accepted_by_test += 1;
                            if rng.random_bool(0.05) {
                                // Cancelled: the caller gives up at once.
                                cancelled_by_test += 1;
                                drop(handle);
                            } else {
                                to_collector
                                    .send(Pending {
                                        model: i,
                                        input: x,
                                        handle,
                                    })
                                    .unwrap();
                            }
                        }
                        Err(
                            e @ (SubmitError::QueueFull(_)
                            | SubmitError::Timeout(_)
                            | SubmitError::UnknownModel { .. }),
                        ) => {
                            let kind = match e {
                                SubmitError::QueueFull(_) => "queue full",
                                SubmitError::Timeout(_) => "timeout",
                                _ => "unloaded",
                            };
                            *refused.lock().unwrap().entry(kind).or_default() += 1;
                        }
                        Err(e) => panic!("{}: {e}", s.name),
                    }
                }
            }
            if now >= next_rss && !calibrating {
                rss.push((start.elapsed(), statm_rss_bytes()));
                next_rss = now + Duration::from_millis(500);
            }
        }
        let secs = (start.elapsed() - CALIBRATION).as_secs_f64();
        eprintln!(
            "soak: {secs:.1} s, generator behind schedule by more than 10 ms for {:.1} s in all, \
             {unoffered} requests not offered; offered {:?} req/s against capacities {:?} \
             (alone: {:?})",
            lagged.as_secs_f64(),
            offered
                .iter()
                .map(|&n| (n as f64 / secs).round())
                .collect::<Vec<_>>(),
            rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            served.iter().map(|s| s.rate.round()).collect::<Vec<_>>()
        );
        stop.store(true, Ordering::Relaxed);
        drop(to_collector);
        let drained = chaos.join().unwrap();
        // Every model's last generation: no traffic reaches it now.
        let mut last_gen = Tally::default();
        for s in &served {
            last_gen.add(&drain(&scheduler, s.name));
        }
        let seen = collector.join().unwrap();
        (seen, drained, last_gen)
    });
    let (seen, drained, last_gen) = seen;
    // Generations replaced or unloaded, and the last ones; the calibration's requests included.
    let totals = Tally {
        accepted: drained.accepted + last_gen.accepted,
        completed: drained.completed + last_gen.completed,
        failed: drained.failed + last_gen.failed,
        panicked: drained.panicked + last_gen.panicked,
        expired: drained.expired + last_gen.expired,
        cancelled: drained.cancelled + last_gen.cancelled,
    };
    scheduler.shutdown();
    drop(scheduler);

    let calibration: u64 = served.len() as u64 * 20;
    let refused = refused.into_inner().unwrap();
    let replaced = replaced.into_inner().unwrap();
    let unloaded = unloaded.into_inner().unwrap();
    eprintln!(
        "soak {:?}: accepted {} (by the test {accepted_by_test} + calibration {calibration}), \
         completed {}, failed {}, panicked {}, expired {}, cancelled {} (dropped by the test \
         {cancelled_by_test}); replies checked {} of which bit-checked {}; refused {refused:?}; \
         replaced {replaced}, unloaded {unloaded}; rates {:?} req/s",
        duration,
        totals.accepted,
        totals.completed,
        totals.failed,
        totals.panicked,
        totals.expired,
        totals.cancelled,
        seen.ok + seen.failed + seen.panicked + seen.expired,
        seen.checked_bits,
        served.iter().map(|s| s.rate.round()).collect::<Vec<_>>(),
    );

    // Exactly one answer per accepted request, in the scheduler's counts and the test's own.
    assert_eq!(totals.accepted, totals.answered(), "{totals:?}");
    assert_eq!(totals.accepted, accepted_by_test + calibration);
    let waited = accepted_by_test - cancelled_by_test;
    assert_eq!(
        seen.ok + seen.failed + seen.panicked + seen.expired,
        waited,
        "every handle kept got one reply"
    );
    // A dropped handle is cancelled unless its request had already run (or expired).
    assert!(totals.cancelled <= cancelled_by_test);
    assert!(totals.completed >= seen.ok + calibration);
    assert!(totals.panicked >= seen.panicked && totals.failed >= seen.failed);
    assert!(totals.expired >= seen.expired);
    // The chaos really happened, and the load was high enough to refuse and expire some.
    assert!(seen.panicked > 0 && seen.failed > 0, "{seen:?}");
    assert!(replaced + unloaded > 0);
    assert!(seen.checked_bits > 0);

    // Resident memory flat after warm-up: the mean of the last third of the samples past it
    // within 5 % of the mean of the first third. The working set itself swings by a few MiB with
    // the queues' fill (a sample's high is no trend); a leak shows as a rising mean.
    let after: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| t.saturating_sub(CALIBRATION) >= warm_up)
        .map(|&(_, b)| b)
        .collect();
    let third = after.len() / 3;
    assert!(third >= 2, "too few RSS samples: {}", after.len());
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let early = mean(&after[..third]);
    let late = mean(&after[after.len() - third..]);
    let peak = *after.iter().max().unwrap();
    let low = *after.iter().min().unwrap();
    eprintln!(
        "soak rss after warm-up: first third {:.0} KiB, last third {:.0} KiB ({:+.2} %), \
         range {}–{} KiB over {} samples",
        early / 1024.0,
        late / 1024.0,
        (late / early - 1.0) * 100.0,
        low / 1024,
        peak / 1024,
        after.len()
    );
    // The short soak's dozen seconds past warm-up are too few for the allocator to settle (its
    // per-thread arenas still grow as replaced models start new worker threads): it reports, the
    // long one asserts.
    if duration >= Duration::from_secs(120) {
        assert!(
            late <= early * 1.05,
            "RSS grew from a mean of {early:.0} to {late:.0} bytes after warm-up"
        );
    }

    // Every thread the scheduler started has ended (the pool's threads exit after it is dropped).
    let deadline = Instant::now() + Duration::from_secs(10);
    while thread_count() > threads_before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "soak threads: {threads_before} before, {} after",
        thread_count()
    );
    assert_eq!(thread_count(), threads_before);
}

/// The soaks measure the process's threads and memory: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn short_soak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    soak(Duration::from_secs(20), 1);
}

#[test]
#[ignore = "long: DENSEBATCH_SOAK_SECS (default 600) seconds"]
fn long_soak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let secs = std::env::var("DENSEBATCH_SOAK_SECS")
        .map(|s| {
            s.parse()
                .expect("DENSEBATCH_SOAK_SECS: a number of seconds")
        })
        .unwrap_or(600);
    soak(Duration::from_secs(secs), 2);
}
