//! A model's worker thread, and what all workers share ([`WorkerContext`]): receive → gather a batch → run it on the pool → scatter replies.
//!
//! Steady state allocates nothing per batch on this thread except the reply payloads (one
//! `Array2` per request, handed to the caller): the input and output buffers, the batch list and
//! the workspaces are sized for `max_batch_size` once, at start, and reused with `clear`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rayon::ThreadPool;

use super::config::{BatchPolicy, ThreadStart};
use super::instance::ModelShared;
use super::metrics::{BatchRecord, CloseReason, bump, nanos};
use super::policy::{ComputeProfile, Decision, OpenBatch, warmup_sizes};
use super::request::{Pending, RequestError};
use super::spin::poll_for;
use super::state::ModelState;
use crate::Predictor;
use crate::alloc_count::AllocScope;
use crate::predictor::Split;
use crate::run::predict_batch;
use crate::workspace::Workspace;

/// What every worker shares: the compute pool and where records are streamed.
#[derive(Debug, Clone)]
pub(crate) struct WorkerContext {
    pub(crate) pool: Arc<ThreadPool>,
    pub(crate) record_sink: Option<Sender<BatchRecord>>,
    pub(crate) inline_small_batches: bool,
    /// Whether idle workers may spin: not when the process has one CPU, where a spinning worker
    /// only delays the threads it shares that CPU with (the caller it just answered among them).
    pub(crate) spin_allowed: bool,
    /// Called first on each worker thread.
    pub(crate) thread_start: Option<ThreadStart>,
}

/// How warmup ended, sent to the thread that loads the model.
pub(crate) type WarmupOutcome = Result<(), WarmupFailure>;

/// Why a model could not be made ready.
#[derive(Debug)]
pub(crate) enum WarmupFailure {
    Model(crate::Error),
    Panicked,
}

/// The worker thread's body: warm up, report, then serve until the queue is closed and empty,
/// restarting the serving state after a panic.
pub(crate) fn run(
    context: WorkerContext,
    shared: Arc<ModelShared>,
    predictor: Arc<dyn Predictor>,
    queue: Receiver<Pending>,
    ready: Sender<WarmupOutcome>,
) {
    let mut worker = Worker::new(&context, &shared, &predictor, None);
    let warmup = catch_unwind(AssertUnwindSafe(|| worker.warm_up()));
    let outcome = match warmup {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WarmupFailure::Model(e)),
        Err(_) => Err(WarmupFailure::Panicked),
    };
    let failed = outcome.is_err();
    if !failed {
        shared.set_state(ModelState::Ready);
    }
    let _ = ready.send(outcome);
    if failed {
        return;
    }
    loop {
        match catch_unwind(AssertUnwindSafe(|| worker.serve(&queue))) {
            Ok(()) => break,
            Err(_) => {
                // Answer the batch that was running, then start over with fresh buffers and
                // workspaces (the panic may have left them half-written); keep what was queued.
                bump(&shared.counters.worker_restarts, 1);
                shared.set_state(ModelState::Degraded);
                let carry = worker.fail_batch_after_panic();
                let profile = worker.profile.clone();
                worker = Worker::new(&context, &shared, &predictor, carry);
                worker.profile = profile;
            }
        }
    }
    shared.set_state(ModelState::Stopped);
}

struct Worker {
    shared: Arc<ModelShared>,
    predictor: Arc<dyn Predictor>,
    pool: Arc<ThreadPool>,
    record_sink: Option<Sender<BatchRecord>>,
    inline_small_batches: bool,
    idle_spin: Duration,
    policy: BatchPolicy,
    input_width: usize,
    output_width: usize,
    workspaces: Vec<Workspace>,
    profile: ComputeProfile,
    // The batch being formed.
    batch: Vec<Pending>,
    input: Vec<f32>,
    output: Vec<f32>,
    /// Submit-to-reply and submit-to-close nanoseconds per request of the batch.
    latencies: Vec<(u64, u64)>,
    rows: usize,
    oldest: Option<Instant>,
    newest: Option<Instant>,
    earliest_deadline: Option<Instant>,
    expired: usize,
    cancelled: usize,
    /// A request that did not fit the last batch; it opens the next one.
    carry: Option<Pending>,
    sequence: u64,
}

impl Worker {
    fn new(
        context: &WorkerContext,
        shared: &Arc<ModelShared>,
        predictor: &Arc<dyn Predictor>,
        carry: Option<Pending>,
    ) -> Self {
        let policy = shared.config.batch;
        let max = policy.max_batch_size;
        let (input_width, output_width) = (predictor.input_width(), predictor.output_width());
        Worker {
            shared: Arc::clone(shared),
            predictor: Arc::clone(predictor),
            pool: Arc::clone(&context.pool),
            record_sink: context.record_sink.clone(),
            inline_small_batches: context.inline_small_batches,
            idle_spin: if context.spin_allowed {
                shared.config.idle_spin
            } else {
                Duration::ZERO
            },
            policy,
            input_width,
            output_width,
            workspaces: predictor.new_workspaces(context.pool.current_num_threads()),
            profile: ComputeProfile::new(max),
            batch: Vec::with_capacity(max),
            input: Vec::with_capacity(max * input_width),
            output: Vec::with_capacity(max * output_width),
            latencies: Vec::with_capacity(max),
            rows: 0,
            oldest: None,
            newest: None,
            earliest_deadline: None,
            expired: 0,
            cancelled: 0,
            carry,
            sequence: 0,
        }
    }

    /// Runs every batch size (or, for large batches, every power of two and the largest) once
    /// per warmup round; keeps the fastest time per size.
    fn warm_up(&mut self) -> crate::Result<()> {
        let max = self.policy.max_batch_size;
        self.input.resize(max * self.input_width, 0.0);
        self.output.resize(max * self.output_width, 0.0);
        let mut best: Vec<(usize, Duration)> = warmup_sizes(max)
            .into_iter()
            .map(|rows| (rows, Duration::MAX))
            .collect();
        for _ in 0..self.shared.config.warmup_rounds.max(1) {
            for (rows, time) in &mut best {
                *time = (*time).min(self.compute(*rows)?);
            }
        }
        for &(rows, time) in &best {
            self.profile.set(rows, time);
        }
        self.profile.fill_gaps();
        *self.shared.warmup.lock().unwrap_or_else(|e| e.into_inner()) = best;
        self.input.clear();
        self.output.clear();
        Ok(())
    }

    /// Runs the first `rows` rows of the input buffer into the output buffer on the pool.
    fn compute(&mut self, rows: usize) -> crate::Result<Duration> {
        let inline = self.inline_small_batches && self.runs_inline(rows);
        let x = ArrayView2::from_shape(
            (rows, self.input_width),
            &self.input[..rows * self.input_width],
        )
        .expect("input buffer holds rows × width");
        let out = ArrayViewMut2::from_shape(
            (rows, self.output_width),
            &mut self.output[..rows * self.output_width],
        )
        .expect("output buffer holds rows × width");
        let (predictor, pool, workspaces) = (&self.predictor, &self.pool, &mut self.workspaces);
        let start = Instant::now();
        if inline {
            predict_batch(predictor.as_ref(), pool, workspaces, x, out)?;
        } else {
            // Kernels run on the pool (the thread budget's compute threads), not here.
            pool.install(|| predict_batch(predictor.as_ref(), pool, workspaces, x, out))?;
        }
        Ok(start.elapsed())
    }

    /// Whether the model runs `rows` rows on the calling thread when called from this worker
    /// (not a thread of the pool): the model's own split decides.
    fn runs_inline(&self, rows: usize) -> bool {
        let threads = self.pool.current_num_threads();
        self.predictor.split(rows, threads, false) == Split::Inline
    }

    /// Workspaces a batch of `rows` rows uses: one per task of the split `compute` runs.
    fn workspaces_used(&self, rows: usize) -> usize {
        let threads = self.pool.current_num_threads();
        let on_pool = !(self.inline_small_batches && self.runs_inline(rows));
        match self.predictor.split(rows, threads, on_pool) {
            Split::Rows { tasks, .. } => tasks.clamp(1, self.workspaces.len()),
            _ => 1,
        }
    }

    fn serve(&mut self, queue: &Receiver<Pending>) {
        loop {
            let first = match self.carry.take() {
                Some(p) => p,
                None => match self.next_request(queue) {
                    Some(p) => p,
                    None => return, // closed and empty: drained
                },
            };
            let opened = Instant::now();
            let alloc = AllocScope::start();
            self.admit(first, opened);
            if self.batch.is_empty() {
                // Cancelled or expired on arrival: the batch opens with the next request.
                continue;
            }
            let reason = self.gather(queue);
            self.run_batch(reason, opened, alloc);
        }
    }

    /// Waits for the request that opens the next batch, polling for the model's `idle_spin`
    /// (none on one CPU) before sleeping; `None` once the queue is closed and empty.
    fn next_request(&self, queue: &Receiver<Pending>) -> Option<Pending> {
        // `Some(None)`: closed and empty.
        let polled = poll_for(self.idle_spin, || match queue.try_recv() {
            Ok(p) => Some(Some(p)),
            Err(TryRecvError::Disconnected) => Some(None),
            Err(TryRecvError::Empty) => None,
        });
        polled.unwrap_or_else(|| queue.recv().ok())
    }

    /// Adds `pending` to the batch unless it was cancelled or has expired.
    fn admit(&mut self, pending: Pending, now: Instant) {
        if pending.responder.is_cancelled() {
            self.cancel(pending);
            return;
        }
        if pending.request.deadline().is_some_and(|d| d <= now) {
            self.expire(pending);
            return;
        }
        self.input.extend_from_slice(pending.request.as_slice());
        self.rows += pending.request.rows();
        self.oldest = Some(
            self.oldest
                .map_or(pending.submitted, |t| t.min(pending.submitted)),
        );
        self.newest = Some(
            self.newest
                .map_or(pending.submitted, |t| t.max(pending.submitted)),
        );
        if let Some(d) = pending.request.deadline() {
            self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
        }
        self.batch.push(pending);
    }

    /// Takes `pending` in, or keeps it for the next batch if it does not fit (then the batch
    /// is full).
    fn offer(&mut self, pending: Pending) -> Option<CloseReason> {
        if self.rows + pending.request.rows() > self.policy.max_batch_size {
            self.carry = Some(pending);
            return Some(CloseReason::Full);
        }
        self.admit(pending, Instant::now());
        None
    }

    /// Gathers requests until the policy closes the batch.
    fn gather(&mut self, queue: &Receiver<Pending>) -> CloseReason {
        loop {
            // What is already queued joins first, without waiting.
            while self.rows < self.policy.max_batch_size {
                match queue.try_recv() {
                    Ok(p) => {
                        if let Some(reason) = self.offer(p) {
                            return reason;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return CloseReason::Drain;
                    }
                }
            }
            // The batch opened with an admitted request, so it has an oldest.
            let oldest = self.oldest.unwrap_or_else(Instant::now);
            let open = OpenBatch {
                rows: self.rows,
                oldest_submitted: oldest,
                earliest_deadline: self.earliest_deadline,
                expected_compute: self.profile.expected(self.rows + 1),
            };
            match self.policy.decide(&open, Instant::now()) {
                Decision::Close(reason) => return reason,
                Decision::WaitUntil(until) => match queue.recv_deadline(until) {
                    Ok(p) => {
                        if let Some(reason) = self.offer(p) {
                            return reason;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return CloseReason::Drain,
                },
            }
        }
    }

    /// Drops from the batch what expired or was cancelled while it formed, compacting the
    /// input buffer in place.
    fn drop_stale(&mut self, now: Instant) {
        let stale = |p: &Pending| {
            p.responder.is_cancelled() || p.request.deadline().is_some_and(|d| d <= now)
        };
        if !self.batch.iter().any(stale) {
            return;
        }
        let width = self.input_width;
        let (mut read, mut write, mut kept) = (0, 0, 0);
        for i in 0..self.batch.len() {
            let rows = self.batch[i].request.rows();
            if stale(&self.batch[i]) {
                read += rows * width;
                continue;
            }
            self.input.copy_within(read..read + rows * width, write);
            read += rows * width;
            write += rows * width;
            self.batch.swap(kept, i);
            kept += 1;
        }
        let mut batch = std::mem::take(&mut self.batch);
        for p in batch.drain(kept..) {
            self.rows -= p.request.rows();
            if p.responder.is_cancelled() {
                self.cancel(p);
            } else {
                self.expire(p);
            }
        }
        self.batch = batch;
        self.input.truncate(write);
    }

    // Counters move before the caller is answered, so a caller that has its reply sees them.
    fn cancel(&mut self, pending: Pending) {
        self.cancelled += 1;
        bump(&self.shared.counters.cancelled, 1);
        pending.responder.disarm();
    }

    fn expire(&mut self, pending: Pending) {
        self.expired += 1;
        bump(&self.shared.counters.expired, 1);
        pending.responder.reply(Err(RequestError::DeadlineExceeded));
    }

    fn run_batch(&mut self, reason: CloseReason, opened: Instant, alloc: AllocScope) {
        let closed = Instant::now();
        self.drop_stale(closed);
        let shared = Arc::clone(&self.shared);
        let counters = &shared.counters;
        if self.batch.is_empty() {
            self.reset();
            return;
        }
        let rows = self.rows;
        self.output.resize(rows * self.output_width, 0.0);
        let outcome = self.compute(rows);
        let compute_time = match &outcome {
            Ok(t) => *t,
            Err(_) => closed.elapsed(),
        };
        if outcome.is_ok() {
            self.profile.observe(rows, compute_time);
        }
        let scatter_start = Instant::now();
        let failed = match outcome {
            Ok(_) => {
                self.scatter(closed);
                0
            }
            Err(_) => self.retry_one_by_one(closed),
        };
        let scatter_time = scatter_start.elapsed();
        let usage = alloc.finish();
        let tasks = self.workspaces_used(rows);
        let scratch_bytes = rows * (self.input_width + self.output_width) * size_of::<f32>()
            + self.workspaces[..tasks]
                .iter()
                .map(Workspace::bytes)
                .sum::<usize>();
        let record = BatchRecord {
            model: Arc::clone(&self.shared.name),
            sequence: self.sequence,
            rows,
            requests: self.latencies.len() - failed,
            expired: self.expired,
            cancelled: self.cancelled,
            failed,
            close_reason: reason,
            oldest_wait: closed - self.oldest.unwrap_or(closed),
            newest_wait: closed.saturating_duration_since(self.newest.unwrap_or(closed)),
            form_time: closed - opened,
            compute_time,
            scatter_time,
            scratch_bytes,
            alloc_bytes: usage.bytes,
            alloc_count: usage.count,
            alloc_peak_bytes: usage.peak_live_bytes,
            alloc_counted: usage.counted,
        };
        self.sequence += 1;
        bump(&counters.batches, 1);
        counters.closed(reason);
        {
            let mut histograms = self
                .shared
                .histograms
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for &(latency, wait) in &self.latencies {
                histograms.request_latency.saturating_record(latency.max(1));
                histograms.queue_wait.saturating_record(wait.max(1));
            }
            histograms.record_batch(&record);
        }
        if let Some(sink) = &self.record_sink
            && sink.try_send(record).is_err()
        {
            bump(&counters.records_dropped, 1);
        }
        self.reset();
    }

    /// Answers every request of the batch with its rows of the output.
    fn scatter(&mut self, closed: Instant) {
        let width = self.output_width;
        let mut row = 0;
        bump(&self.shared.counters.completed, self.batch.len() as u64);
        for p in self.batch.drain(..) {
            let rows = p.request.rows();
            let values = self.output[row * width..(row + rows) * width].to_vec();
            row += rows;
            let result = Array2::from_shape_vec((rows, width), values).expect("rows × width");
            let wait = nanos(closed - p.submitted);
            p.responder.reply(Ok(result));
            self.latencies.push((nanos(p.submitted.elapsed()), wait));
        }
    }

    /// The batch failed: runs each request alone so only the failing ones get the error.
    /// Returns how many failed.
    fn retry_one_by_one(&mut self, closed: Instant) -> usize {
        let (iw, ow) = (self.input_width, self.output_width);
        let mut failed = 0;
        let mut row = 0;
        // Taken out (and put back, keeping its capacity) so the loop can borrow the buffers.
        let mut batch = std::mem::take(&mut self.batch);
        for p in batch.drain(..) {
            let rows = p.request.rows();
            let x = ArrayView2::from_shape((rows, iw), &self.input[row * iw..(row + rows) * iw])
                .expect("rows × width");
            let mut out = Array2::zeros((rows, ow));
            row += rows;
            let (predictor, pool, workspaces) = (&self.predictor, &self.pool, &mut self.workspaces);
            let result = pool
                .install(|| predict_batch(predictor.as_ref(), pool, workspaces, x, out.view_mut()));
            let wait = nanos(closed - p.submitted);
            match result {
                Ok(()) => {
                    bump(&self.shared.counters.completed, 1);
                    p.responder.reply(Ok(out));
                }
                Err(e) => {
                    failed += 1;
                    bump(&self.shared.counters.failed, 1);
                    p.responder.reply(Err(RequestError::Model(e)));
                }
            }
            self.latencies.push((nanos(p.submitted.elapsed()), wait));
        }
        self.batch = batch;
        failed
    }

    /// Answers the requests of the batch a panic interrupted; returns the request waiting for
    /// the next batch, which the restarted worker serves.
    fn fail_batch_after_panic(&mut self) -> Option<Pending> {
        bump(&self.shared.counters.panicked, self.batch.len() as u64);
        for p in self.batch.drain(..) {
            p.responder.reply(Err(RequestError::ModelPanicked));
        }
        self.carry.take()
    }

    fn reset(&mut self) {
        self.batch.clear();
        self.input.clear();
        self.output.clear();
        self.latencies.clear();
        self.rows = 0;
        self.oldest = None;
        self.newest = None;
        self.earliest_deadline = None;
        self.expired = 0;
        self.cancelled = 0;
    }
}
