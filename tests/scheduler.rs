//! The batching scheduler end to end: batching, deadlines, backpressure, cancellation, drain,
//! isolation, validation, bit-identity, replacement under load, metrics.

mod scheduler_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use densebatch::prelude::*;
use densebatch::{
    BatchRecord, CloseReason, CpuLimits, ModelConfig, ModelState, Request, RequestError, Scheduler,
    SchedulerConfig, SubmitError,
};
use ndarray::{Array2, s};
use scheduler_support::{MARKER, OnMarker, PATIENCE, TestModel, model};

fn scheduler_with_records() -> (Scheduler, crossbeam_channel::Receiver<BatchRecord>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = SchedulerConfig::default().threads(2).record_sink(tx);
    (Scheduler::new(config).unwrap(), rx)
}

fn row(values: &[f32]) -> Request {
    Request::one(values.to_vec())
}

fn next_record(records: &crossbeam_channel::Receiver<BatchRecord>) -> BatchRecord {
    records.recv_timeout(PATIENCE).expect("a batch record")
}

#[test]
fn batches_close_when_full() {
    let (scheduler, records) = scheduler_with_records();
    let m = model(2, OnMarker::Nothing);
    let config = ModelConfig::default()
        .max_batch_size(4)
        .max_wait(Duration::from_secs(60));
    scheduler.load("m", m.clone(), config).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| scheduler.try_submit("m", row(&[i as f32, 0.5])).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let y = h.wait().unwrap();
        assert_eq!(y.row(0).to_vec(), [i as f32, 0.5]);
    }
    for _ in 0..2 {
        let r = next_record(&records);
        assert_eq!(
            (r.rows, r.requests, r.close_reason),
            (4, 4, CloseReason::Full)
        );
    }
    // Warmup computed 1+2+3+4 rows twice; serving computed 8.
    assert_eq!(m.rows(), 2 * 10 + 8);
}

#[test]
fn replies_arrive_whether_the_worker_and_caller_spin_or_sleep() {
    // No spinning, the default, and spins far longer than the gaps between requests.
    for spin in [
        Duration::ZERO,
        ModelConfig::default().get_idle_spin(),
        PATIENCE,
    ] {
        let scheduler = Scheduler::new(SchedulerConfig::default().threads(2)).unwrap();
        let m = model(1, OnMarker::Block);
        let config = ModelConfig::default()
            .max_batch_size(1)
            .idle_spin(spin)
            .reply_spin(spin);
        scheduler.load("m", m.clone(), config).unwrap();
        // A reply that comes long after the caller started waiting (beyond a short spin).
        let held = scheduler.try_submit("m", row(&[MARKER])).unwrap();
        m.entered_rx.recv_timeout(PATIENCE).unwrap();
        let releaser = thread::spawn({
            let m = m.clone();
            move || {
                thread::sleep(Duration::from_millis(5));
                m.release_tx.send(()).unwrap();
            }
        });
        assert_eq!(held.wait().unwrap().column(0).to_vec(), [MARKER]);
        releaser.join().unwrap();
        // Requests after idle gaps longer than a short spin: the worker sleeps and wakes.
        for i in 0..5 {
            thread::sleep(Duration::from_millis(2));
            let h = scheduler.try_submit("m", row(&[i as f32])).unwrap();
            assert_eq!(h.wait().unwrap().column(0).to_vec(), [i as f32], "{spin:?}");
        }
        scheduler.shutdown();
    }
}

/// CPU time (user + system, in clock ticks) of this process's thread whose name is `comm`.
#[cfg(target_os = "linux")]
fn thread_cpu_ticks(comm: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).unwrap().trim() == comm {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // After the parenthesised name: fields 3.. of proc(5); utime and stime are 14 and 15.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            return fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
    }
    panic!("no thread named {comm}");
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_worker_spins_only_when_the_process_has_more_than_one_cpu() {
    use densebatch::CpuLimits;
    let spin = Duration::from_millis(300);
    for (cpus, name) in [(2, "s2"), (1, "s1")] {
        let limits = CpuLimits {
            affinity: Some(cpus),
            ..CpuLimits::default()
        };
        let scheduler =
            Scheduler::new(SchedulerConfig::default().threads(1).cpu_limits(limits)).unwrap();
        let config = ModelConfig::default().max_batch_size(1).idle_spin(spin);
        scheduler
            .load(name, model(1, OnMarker::Block), config)
            .unwrap();
        // After warmup the worker idles (spinning or asleep); one request, then an idle spell.
        thread::sleep(spin * 2);
        let before = thread_cpu_ticks(&format!("densebatch-{name}"));
        let h = scheduler.try_submit(name, row(&[1.0])).unwrap();
        assert_eq!(h.wait().unwrap().column(0).to_vec(), [1.0]);
        thread::sleep(spin * 2);
        let ticks = thread_cpu_ticks(&format!("densebatch-{name}")) - before;
        // Clock ticks are 10 ms: a 300 ms spin is ~30 of them, sleeping at once almost none.
        if cpus > 1 {
            assert!(
                ticks >= 8,
                "{cpus} CPUs: the worker spun only {ticks} ticks"
            );
        } else {
            assert!(
                ticks <= 5,
                "{cpus} CPU: the worker used {ticks} ticks while idle"
            );
        }
        scheduler.shutdown();
    }
}

#[test]
fn multi_row_requests_that_do_not_fit_open_the_next_batch() {
    let (scheduler, records) = scheduler_with_records();
    let config = ModelConfig::default()
        .max_batch_size(4)
        .max_wait(Duration::from_secs(60));
    scheduler
        .load("m", model(1, OnMarker::Nothing), config)
        .unwrap();
    let three = Request::new(Array2::from_shape_vec((3, 1), vec![1.0, 2.0, 3.0]).unwrap());
    let two = Request::new(Array2::from_shape_vec((2, 1), vec![4.0, 5.0]).unwrap());
    let h3 = scheduler.try_submit("m", three).unwrap();
    let h2 = scheduler.try_submit("m", two).unwrap();
    let h2b = scheduler.try_submit("m", row(&[6.0])).unwrap();
    let h1 = scheduler.try_submit("m", row(&[7.0])).unwrap();
    assert_eq!(h3.wait().unwrap().column(0).to_vec(), [1.0, 2.0, 3.0]);
    assert_eq!(h2.wait().unwrap().column(0).to_vec(), [4.0, 5.0]);
    assert_eq!(h2b.wait().unwrap().column(0).to_vec(), [6.0]);
    assert_eq!(h1.wait().unwrap().column(0).to_vec(), [7.0]);
    let first = next_record(&records);
    assert_eq!((first.rows, first.close_reason), (3, CloseReason::Full));
    let second = next_record(&records);
    assert_eq!((second.rows, second.close_reason), (4, CloseReason::Full));
}

#[test]
fn batches_close_after_max_wait() {
    let (scheduler, records) = scheduler_with_records();
    let wait = Duration::from_millis(200);
    let config = ModelConfig::default().max_batch_size(64).max_wait(wait);
    scheduler
        .load("m", model(1, OnMarker::Nothing), config)
        .unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..3)
        .map(|i| scheduler.try_submit("m", row(&[i as f32])).unwrap())
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    assert!(start.elapsed() >= wait);
    let r = next_record(&records);
    assert_eq!((r.rows, r.close_reason), (3, CloseReason::Wait));
    assert!(r.oldest_wait >= wait, "{r:?}");
    assert!(r.newest_wait <= r.oldest_wait);
    assert!(r.form_time <= r.oldest_wait);
}

#[test]
fn expired_requests_are_answered_without_compute() {
    let (scheduler, records) = scheduler_with_records();
    let m = model(1, OnMarker::Block);
    let config = ModelConfig::default().max_batch_size(1);
    scheduler.load("m", m.clone(), config).unwrap();
    let warm = m.rows();
    // Hold the worker in a batch, queue a request with a short deadline, let it pass.
    let blocker = scheduler.try_submit("m", row(&[MARKER])).unwrap();
    m.entered_rx.recv_timeout(PATIENCE).unwrap();
    let deadline = Instant::now() + Duration::from_millis(20);
    let late = scheduler
        .try_submit("m", row(&[1.0]).with_deadline(deadline))
        .unwrap();
    // Already past at submit time.
    let past = scheduler
        .try_submit("m", row(&[2.0]).with_deadline(Instant::now()))
        .unwrap();
    while Instant::now() < deadline {
        thread::yield_now();
    }
    m.release_tx.send(()).unwrap();
    assert_eq!(blocker.wait().unwrap()[[0, 0]], MARKER);
    assert!(matches!(late.wait(), Err(RequestError::DeadlineExceeded)));
    assert!(matches!(past.wait(), Err(RequestError::DeadlineExceeded)));
    assert_eq!(m.rows() - warm, 1, "only the blocker was computed");
    assert_eq!(next_record(&records).rows, 1);
    let snapshot = scheduler.metrics();
    assert_eq!(snapshot.model("m").unwrap().counters.expired, 2);
}

#[test]
fn a_near_deadline_closes_the_batch_early_and_is_met() {
    let (scheduler, records) = scheduler_with_records();
    // A generous reserve: the test suite's threads share two cores, so waking up can be slow.
    let config = ModelConfig::default()
        .max_batch_size(64)
        .max_wait(Duration::from_secs(60))
        .deadline_reserve(Duration::from_millis(150));
    scheduler
        .load("m", model(1, OnMarker::Nothing), config)
        .unwrap();
    let h = scheduler
        .try_submit("m", row(&[3.0]).with_timeout(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(h.wait().unwrap()[[0, 0]], 3.0);
    let r = next_record(&records);
    assert_eq!(r.close_reason, CloseReason::Deadline);
    assert!(r.oldest_wait < Duration::from_millis(300));
}

#[test]
fn full_queue_hands_the_request_back() {
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(2)).unwrap();
    let m = model(2, OnMarker::Block);
    let config = ModelConfig::default().max_batch_size(1).queue_capacity(2);
    scheduler.load("m", m.clone(), config).unwrap();
    let blocker = scheduler.try_submit("m", row(&[MARKER, 0.0])).unwrap();
    m.entered_rx.recv_timeout(PATIENCE).unwrap();
    let queued: Vec<_> = (0..2)
        .map(|i| scheduler.try_submit("m", row(&[i as f32, 1.0])).unwrap())
        .collect();
    match scheduler.try_submit("m", row(&[9.0, 8.0])) {
        Err(SubmitError::QueueFull(request)) => {
            assert_eq!(request.input().row(0).to_vec(), [9.0, 8.0]);
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    match scheduler.submit_timeout("m", row(&[7.0, 6.0]), Duration::from_millis(30)) {
        Err(SubmitError::Timeout(request)) => {
            assert_eq!(request.into_input().row(0).to_vec(), [7.0, 6.0]);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    m.release_tx.send(()).unwrap();
    blocker.wait().unwrap();
    for (i, h) in queued.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap().row(0).to_vec(), [i as f32, 1.0]);
    }
    let counters = scheduler.metrics().model("m").unwrap().counters;
    assert_eq!(
        (
            counters.accepted,
            counters.rejected_full,
            counters.rejected_timeout
        ),
        (3, 1, 1)
    );
}

#[test]
fn dropping_the_handle_cancels_before_compute() {
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(2)).unwrap();
    let m = Arc::new(TestModel::new(1, OnMarker::Block).tracking());
    let config = ModelConfig::default().max_batch_size(4);
    scheduler.load("m", m.clone(), config).unwrap();
    m.seen.lock().unwrap().clear();
    let blocker = scheduler.try_submit("m", row(&[MARKER])).unwrap();
    m.entered_rx.recv_timeout(PATIENCE).unwrap();
    drop(scheduler.try_submit("m", row(&[1.0])).unwrap());
    let kept = scheduler.try_submit("m", row(&[2.0])).unwrap();
    m.release_tx.send(()).unwrap();
    blocker.wait().unwrap();
    assert_eq!(kept.wait().unwrap()[[0, 0]], 2.0);
    assert_eq!(*m.seen.lock().unwrap(), [MARKER, 2.0]);
    assert_eq!(
        scheduler.metrics().model("m").unwrap().counters.cancelled,
        1
    );
}

#[test]
fn shutdown_drains_every_request_exactly_once_under_racing_submits() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 10_000;
    let scheduler = Arc::new(Scheduler::new(SchedulerConfig::default().threads(2)).unwrap());
    let m = model(1, OnMarker::Nothing);
    let config = ModelConfig::default()
        .max_batch_size(64)
        .queue_capacity(256)
        .max_wait(Duration::from_micros(200));
    scheduler.load("m", m, config).unwrap();
    let (halfway_tx, halfway_rx) = crossbeam_channel::unbounded();
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let scheduler = Arc::clone(&scheduler);
            let halfway = halfway_tx.clone();
            thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut refused = 0;
                for i in 0..PER_THREAD {
                    if i == PER_THREAD / 2 {
                        halfway.send(()).unwrap();
                    }
                    let id = (t * PER_THREAD + i) as f32;
                    match scheduler.submit_timeout("m", row(&[id]), PATIENCE) {
                        Ok(h) => accepted.push((id, h)),
                        Err(SubmitError::ShuttingDown(r)) => {
                            assert_eq!(r.input()[[0, 0]], id);
                            refused += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let ids: Vec<f32> = accepted
                    .into_iter()
                    .map(|(id, h)| {
                        let y = h.wait().expect("every accepted request is answered");
                        assert_eq!(y[[0, 0]], id);
                        id
                    })
                    .collect();
                (ids, refused)
            })
        })
        .collect();
    for _ in 0..THREADS {
        halfway_rx.recv_timeout(PATIENCE).unwrap();
    }
    let metrics_before = scheduler.metrics();
    scheduler.shutdown();
    let mut answered = HashSet::new();
    let mut refused = 0;
    for s in submitters {
        let (ids, r) = s.join().unwrap();
        refused += r;
        for id in ids {
            assert!(answered.insert(id.to_bits()), "id {id} answered twice");
        }
    }
    assert_eq!(answered.len() + refused, THREADS * PER_THREAD);
    assert!(answered.len() >= THREADS * PER_THREAD / 2);
    let accepted = metrics_before.model("m").unwrap().counters.accepted;
    assert!(accepted as usize <= answered.len());
    // A snapshot after shutdown still has the model, stopped, with its final counters.
    let after = scheduler.metrics();
    let model = after.model("m").unwrap();
    assert_eq!(model.state, ModelState::Stopped);
    assert_eq!(model.counters.accepted as usize, answered.len());
    assert_eq!(model.counters.completed as usize, answered.len());
    // After shutdown nothing more is taken.
    assert!(matches!(
        scheduler.try_submit("m", row(&[0.0])),
        Err(SubmitError::ShuttingDown(_))
    ));
}

#[test]
fn a_panicking_model_does_not_disturb_another() {
    let scheduler = Arc::new(Scheduler::new(SchedulerConfig::default().threads(2)).unwrap());
    let config = ModelConfig::default()
        .max_batch_size(8)
        .max_wait(Duration::from_micros(100));
    scheduler
        .load("bad", model(1, OnMarker::Panic), config)
        .unwrap();
    scheduler
        .load("good", model(1, OnMarker::Nothing), config)
        .unwrap();
    let good_traffic = {
        let scheduler = Arc::clone(&scheduler);
        thread::spawn(move || {
            for i in 0..2000 {
                let h = scheduler
                    .submit_timeout("good", row(&[i as f32]), PATIENCE)
                    .unwrap();
                assert_eq!(h.wait().unwrap()[[0, 0]], i as f32);
            }
        })
    };
    for _ in 0..3 {
        let h = scheduler.try_submit("bad", row(&[MARKER])).unwrap();
        assert!(matches!(h.wait(), Err(RequestError::ModelPanicked)));
        // The restarted worker still serves ordinary requests.
        let h = scheduler.try_submit("bad", row(&[5.0])).unwrap();
        assert_eq!(h.wait().unwrap()[[0, 0]], 5.0);
    }
    good_traffic.join().unwrap();
    let snapshot = scheduler.metrics();
    let bad = snapshot.model("bad").unwrap();
    assert_eq!(bad.state, ModelState::Degraded);
    assert_eq!(
        (bad.counters.worker_restarts, bad.counters.panicked),
        (3, 3)
    );
    let good = snapshot.model("good").unwrap();
    assert_eq!(good.state, ModelState::Ready);
    assert_eq!(
        (good.counters.completed, good.counters.worker_restarts),
        (2000, 0)
    );
}

#[test]
fn bad_requests_are_refused_alone_and_never_poison_a_batch() {
    let (scheduler, records) = scheduler_with_records();
    let config = ModelConfig::default()
        .max_batch_size(4)
        .max_wait(Duration::from_secs(60));
    scheduler
        .load("m", model(2, OnMarker::Fail), config)
        .unwrap();
    match scheduler.try_submit("m", row(&[1.0, 2.0, 3.0])) {
        Err(SubmitError::Invalid { error, request }) => {
            assert!(matches!(
                *error,
                Error::InputWidth {
                    expected: 2,
                    got: 3
                }
            ));
            assert_eq!(request.rows(), 1);
        }
        other => panic!("{other:?}"),
    }
    match scheduler.try_submit("m", row(&[1.0, f32::NAN])) {
        Err(SubmitError::Invalid { error, .. }) => {
            assert!(matches!(
                *error,
                Error::NonFiniteInput { row: 0, col: 1, .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    match scheduler.try_submit("m", Request::new(Array2::zeros((5, 2)))) {
        Err(SubmitError::RowCount {
            rows: 5,
            max_batch_size: 4,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A batch the model fails: only the request that causes it gets the error.
    let handles: Vec<_> = [[1.0, 1.0], [MARKER, 2.0], [3.0, 3.0], [4.0, 4.0]]
        .iter()
        .map(|r| scheduler.try_submit("m", row(r)).unwrap())
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.wait()).collect();
    assert!(matches!(results[1], Err(RequestError::Model(_))));
    for i in [0, 2, 3] {
        assert_eq!(results[i].as_ref().unwrap()[[0, 1]], (i + 1) as f32);
    }
    let r = next_record(&records);
    assert_eq!((r.rows, r.requests, r.failed), (4, 3, 1));
    let counters = scheduler.metrics().model("m").unwrap().counters;
    assert_eq!(
        (
            counters.rejected_invalid,
            counters.failed,
            counters.completed
        ),
        (3, 1, 3)
    );
}

#[test]
fn outputs_are_bit_identical_to_direct_predict_batch() {
    bit_identical(false);
}

#[test]
fn outputs_are_bit_identical_with_small_batches_inline() {
    bit_identical(true);
}

fn bit_identical(inline: bool) {
    let model = Model::random(&[24, 64, 32, 10], Activation::Relu, Activation::Softmax, 9);
    let compiled = Arc::new(model.compile().unwrap());
    let config = SchedulerConfig::default()
        .threads(2)
        .inline_small_batches(inline);
    let scheduler = Scheduler::new(config).unwrap();
    assert_eq!(scheduler.budget().inline_small_batches(), inline);
    let config = ModelConfig::default()
        .max_batch_size(16)
        .max_wait(Duration::from_micros(300));
    scheduler.load("mlp", compiled.clone(), config).unwrap();
    let n = 300;
    let x = Array2::from_shape_fn((n, 24), |(i, j)| ((i * 31 + j * 7) as f32 * 0.013).sin());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut ws = compiled.new_workspaces(2);
    let mut direct = Array2::zeros((n, 10));
    predict_batch(&*compiled, &pool, &mut ws, x.view(), direct.view_mut()).unwrap();
    // Requests of 1 to 3 rows, all in flight together so they batch in varied ways.
    let mut start = 0;
    let mut pending = Vec::new();
    while start < n {
        let rows = 1 + start % 3;
        let end = (start + rows).min(n);
        let req = Request::new(x.slice(s![start..end, ..]).to_owned());
        pending.push((
            start,
            end,
            scheduler.submit_timeout("mlp", req, PATIENCE).unwrap(),
        ));
        start = end;
    }
    for (start, end, h) in pending {
        let y = h.wait().unwrap();
        let expected = direct.slice(s![start..end, ..]);
        let bits = |a: ndarray::ArrayView2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(y.view()), bits(expected));
    }
    assert_eq!(model.predict_reference(x.view()).unwrap(), direct);
}

#[test]
fn replace_under_load_loses_nothing() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 3000;
    let scheduler = Arc::new(Scheduler::new(SchedulerConfig::default().threads(2)).unwrap());
    let config = ModelConfig::default()
        .max_batch_size(32)
        .max_wait(Duration::from_micros(200));
    scheduler
        .load("m", model(1, OnMarker::Nothing), config)
        .unwrap();
    let (progress_tx, progress_rx) = crossbeam_channel::unbounded();
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let scheduler = Arc::clone(&scheduler);
            let progress = progress_tx.clone();
            thread::spawn(move || {
                let mut handles = Vec::new();
                for i in 0..PER_THREAD {
                    if i % (PER_THREAD / 3) == 0 {
                        progress.send(()).unwrap();
                    }
                    let id = (t * PER_THREAD + i) as f32;
                    let h = scheduler
                        .submit_timeout("m", row(&[id]), PATIENCE)
                        .expect("the name is served throughout");
                    handles.push((id, h));
                }
                let mut generations = HashSet::new();
                for (id, h) in handles {
                    let y = h.wait().expect("answered");
                    // Generation g adds 1000 × (g - 1).
                    let offset = y[[0, 0]] - id;
                    assert!([0.0, 1000.0, 2000.0].contains(&offset), "{offset}");
                    generations.insert(offset as u32);
                }
                generations
            })
        })
        .collect();
    for generation in 1..=2 {
        for _ in 0..THREADS {
            progress_rx.recv_timeout(PATIENCE).unwrap();
        }
        let next =
            Arc::new(TestModel::new(1, OnMarker::Nothing).with_offset(1000.0 * generation as f32));
        scheduler.replace("m", next, config).unwrap();
    }
    let mut seen = HashSet::new();
    for s in submitters {
        seen.extend(s.join().unwrap());
    }
    // Requests sent before the first replace ran on the first model; whether any submitter was
    // still sending after the second is up to timing, so ask the newest model directly.
    assert!(seen.contains(&0), "{seen:?}");
    let after = scheduler
        .submit_timeout("m", row(&[5.0]), PATIENCE)
        .expect("the name is served")
        .wait()
        .expect("answered");
    assert_eq!(
        after[[0, 0]],
        2005.0,
        "requests after a replace run on the new model"
    );
    let listed = scheduler.models();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].generation, listed[0].state),
        (3, ModelState::Ready)
    );
    let counters = scheduler.metrics().model("m").unwrap().counters;
    assert_eq!(counters.accepted, counters.completed);
}

#[test]
fn registry_loads_lists_and_unloads() {
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(1)).unwrap();
    let config = ModelConfig::default().max_batch_size(2);
    scheduler
        .load("a", model(1, OnMarker::Nothing), config)
        .unwrap();
    scheduler
        .load("b", model(3, OnMarker::Nothing), config)
        .unwrap();
    assert!(matches!(
        scheduler.load("a", model(1, OnMarker::Nothing), config),
        Err(densebatch::SchedulerError::AlreadyLoaded(_))
    ));
    assert!(matches!(
        scheduler.replace("zzz", model(1, OnMarker::Nothing), config),
        Err(densebatch::SchedulerError::UnknownModel(_))
    ));
    assert!(matches!(
        scheduler.load("c", model(1, OnMarker::Nothing), config.max_batch_size(0)),
        Err(densebatch::SchedulerError::InvalidConfig {
            field: "max_batch_size",
            ..
        })
    ));
    let names: Vec<_> = scheduler
        .models()
        .into_iter()
        .map(|m| (m.name, m.state))
        .collect();
    assert_eq!(
        names,
        [
            ("a".to_string(), ModelState::Ready),
            ("b".to_string(), ModelState::Ready)
        ]
    );
    let h = scheduler.try_submit("a", row(&[1.0])).unwrap();
    scheduler.unload("a").unwrap();
    assert_eq!(
        h.wait().unwrap()[[0, 0]],
        1.0,
        "accepted before unload: answered"
    );
    assert!(matches!(
        scheduler.try_submit("a", row(&[1.0])),
        Err(SubmitError::UnknownModel { .. })
    ));
    assert_eq!(scheduler.models().len(), 1);
    // Warmup measured every batch size.
    let snapshot = scheduler.metrics();
    let warmup = &snapshot.model("b").unwrap().warmup;
    assert_eq!(warmup.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn a_model_failing_warmup_is_not_loaded() {
    #[derive(Debug)]
    struct Broken;
    impl Predictor for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn input_width(&self) -> usize {
            1
        }
        fn output_width(&self) -> usize {
            1
        }
        fn flops_per_sample(&self) -> u64 {
            1
        }
        fn new_workspace(&self) -> Workspace {
            Workspace::new(1, 1)
        }
        fn predict_into(
            &self,
            _: &mut Workspace,
            _: ndarray::ArrayView2<'_, f32>,
            _: ndarray::ArrayViewMut2<'_, f32>,
        ) -> densebatch::Result<()> {
            Err(Error::InputWidth {
                expected: 1,
                got: 2,
            })
        }
    }
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(1)).unwrap();
    let err = scheduler
        .load("x", Arc::new(Broken), ModelConfig::default())
        .unwrap_err();
    assert!(
        matches!(err, densebatch::SchedulerError::Warmup { .. }),
        "{err}"
    );
    assert!(scheduler.models().is_empty());
}

/// A minimal executor: polls on the current thread, parks until woken.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(PATIENCE);
    }
}

#[test]
fn replies_can_be_awaited_and_waited_with_a_timeout() {
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(1)).unwrap();
    let m = model(1, OnMarker::Block);
    scheduler
        .load("m", m.clone(), ModelConfig::default().max_batch_size(1))
        .unwrap();
    let h = scheduler.try_submit("m", row(&[MARKER])).unwrap();
    m.entered_rx.recv_timeout(PATIENCE).unwrap();
    assert!(h.wait_timeout(Duration::from_millis(10)).is_none());
    assert!(!h.is_ready());
    m.release_tx.send(()).unwrap();
    assert_eq!(h.wait_timeout(PATIENCE).unwrap().unwrap()[[0, 0]], MARKER);
    let h = scheduler.try_submit("m", row(&[4.0])).unwrap();
    let y = block_on(async { h.await });
    assert_eq!(y.unwrap()[[0, 0]], 4.0);
}

#[test]
fn metrics_snapshot_and_prometheus_text() {
    let (tx, records) = crossbeam_channel::unbounded();
    let limits = CpuLimits {
        affinity: Some(2),
        quota: Some(1.5),
        fallback: None,
    };
    let config = SchedulerConfig::default()
        .cpu_limits(limits)
        .record_ring(4)
        .record_sink(tx);
    let scheduler = Scheduler::new(config).unwrap();
    assert_eq!(scheduler.budget().cpus(), 2);
    assert_eq!(scheduler.budget().pool_threads(), 2);
    let config = ModelConfig::default()
        .max_batch_size(2)
        .max_wait(Duration::from_secs(60));
    scheduler
        .load("m\"x", model(1, OnMarker::Nothing), config)
        .unwrap();
    let handles: Vec<_> = (0..20)
        .map(|i| scheduler.try_submit("m\"x", row(&[i as f32])).unwrap())
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    let streamed: Vec<_> = (0..10).map(|_| next_record(&records)).collect();
    let snapshot = scheduler.metrics();
    let m = snapshot.model("m\"x").unwrap();
    assert_eq!(m.counters.batches, 10);
    assert_eq!(m.counters.closes(CloseReason::Full), 10);
    assert_eq!(m.request_latency.count(), 20);
    assert_eq!(m.batch_rows.quantile(0.5), 2);
    let recent: Vec<u64> = m.recent.iter().map(|r| r.sequence).collect();
    assert_eq!(recent, [6, 7, 8, 9]);
    assert_eq!(m.recent.last(), streamed.last());
    let latency = m.request_latency.summary();
    assert!(latency.p50 <= latency.p99 && latency.p99 <= latency.p999);
    let text = snapshot.to_prometheus();
    let expect = [
        "densebatch_requests_completed_total{model=\"m\\\"x\",generation=\"1\"} 20",
        "densebatch_batches_total{model=\"m\\\"x\",generation=\"1\",reason=\"full\"} 10",
        "densebatch_model_state{model=\"m\\\"x\",generation=\"1\",state=\"ready\"} 1",
        "densebatch_queue_depth{model=\"m\\\"x\",generation=\"1\"} 0",
        "densebatch_request_latency_seconds_count{model=\"m\\\"x\",generation=\"1\"} 20",
        "densebatch_batch_rows_bucket{model=\"m\\\"x\",generation=\"1\",le=\"2\"} 10",
        "densebatch_batch_rows_bucket{model=\"m\\\"x\",generation=\"1\",le=\"1\"} 0",
        "densebatch_cpus 2",
    ];
    for line in expect {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert_well_formed_prometheus(&text);
}

/// Every line is a `# HELP`/`# TYPE` comment or `name{labels} value` / `name value` with a
/// numeric value, and every sample's metric family has a `# TYPE`.
fn assert_well_formed_prometheus(text: &str) {
    let mut typed = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string(), kind).is_none(), "{line}");
        }
    }
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment `{line}`");
        let (series, value) = line.rsplit_once(' ').expect("name value");
        assert!(value.parse::<f64>().is_ok(), "value of `{line}`");
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                assert!(labels.contains("=\""), "labels of `{line}`");
                name
            }
            None => series,
        };
        assert!(valid_name(name), "name of `{line}`");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f) == Some(&"histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no # TYPE for `{line}`");
    }
    for name in [
        "densebatch_worker_restarts_total",
        "densebatch_batch_records_dropped_total",
        "densebatch_batch_alloc_bytes",
    ] {
        assert!(typed.contains_key(name), "{name} missing");
    }
}

#[test]
fn predict_serves_and_reports_every_failure_as_a_serve_error() {
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(1)).unwrap();
    let config = ModelConfig::default().max_batch_size(2).queue_capacity(1);
    scheduler
        .load("m", model(2, OnMarker::Panic), config)
        .unwrap();
    let y = scheduler
        .predict("m", ndarray::arr2(&[[1.0, 2.0]]).view())
        .unwrap();
    assert_eq!(y, ndarray::arr2(&[[1.0, 2.0]]));
    let x = |rows: &[[f32; 2]]| Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
    assert!(matches!(
        scheduler.predict("zzz", x(&[[1.0, 2.0]]).view()),
        Err(densebatch::ServeError::UnknownModel(name)) if name == "zzz"
    ));
    assert!(matches!(
        scheduler.predict("m", x(&[[1.0, f32::INFINITY]]).view()),
        Err(densebatch::ServeError::Invalid(
            Error::NonFiniteInput { .. }
        ))
    ));
    assert!(matches!(
        scheduler.predict("m", x(&[[1.0, 2.0]; 3]).view()),
        Err(densebatch::ServeError::RowCount {
            rows: 3,
            max_batch_size: 2
        })
    ));
    assert!(matches!(
        scheduler.predict("m", x(&[[MARKER, 2.0]]).view()),
        Err(densebatch::ServeError::ModelPanicked)
    ));
    // `submit` waits for room: more requests than the queue holds all get in and answered.
    let handles: Vec<_> = (0..20)
        .map(|i| scheduler.submit("m", row(&[i as f32, 0.0])).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.wait().unwrap()[[0, 0]], i as f32);
    }
    let counters = scheduler.metrics().model("m").unwrap().counters;
    assert_eq!((counters.completed, counters.rejected_full), (21, 0));
    scheduler.shutdown();
    assert!(matches!(
        scheduler.predict("m", x(&[[1.0, 2.0]]).view()),
        Err(densebatch::ServeError::ShuttingDown)
    ));
}

#[test]
fn thread_start_runs_on_every_pool_thread_and_worker() {
    use densebatch::SchedulerThread;
    use std::sync::Mutex;
    /// Each start: which thread, and its name.
    type Starts = Vec<(SchedulerThread, Option<String>)>;
    let seen: Arc<Mutex<Starts>> = Arc::default();
    let log = Arc::clone(&seen);
    let config = SchedulerConfig::default()
        .threads(2)
        .on_thread_start(move |thread| {
            let name = thread::current().name().map(str::to_string);
            log.lock().unwrap().push((thread.clone(), name));
        });
    let scheduler = Scheduler::new(config).unwrap();
    let m = model(2, OnMarker::Nothing);
    scheduler
        .load("m", m.clone(), ModelConfig::default())
        .unwrap();
    scheduler.replace("m", m, ModelConfig::default()).unwrap();
    let worker = (
        SchedulerThread::Worker {
            model: "m".to_string(),
        },
        Some("densebatch-m".to_string()),
    );
    // Pool threads start on their own time; wait for both.
    let until = Instant::now() + PATIENCE;
    loop {
        let seen = seen.lock().unwrap().clone();
        let pool: HashSet<usize> = seen
            .iter()
            .filter_map(|(t, name)| match t {
                SchedulerThread::Pool { index } => {
                    assert_eq!(
                        name.as_deref(),
                        Some(format!("densebatch-pool-{index}").as_str())
                    );
                    Some(*index)
                }
                _ => None,
            })
            .collect();
        let workers = seen.iter().filter(|s| **s == worker).count();
        assert_eq!(workers, 2, "one start per load and per replace: {seen:?}");
        if pool == HashSet::from([0, 1]) {
            assert_eq!(seen.len(), 4, "{seen:?}");
            break;
        }
        assert!(
            Instant::now() < until,
            "pool threads not all seen: {seen:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    scheduler.shutdown();
}
