//! How one model is served: [`ModelConfig`] and its [`BatchPolicy`], both builders.
//!
//! Setters take and return the value (`ModelConfig::default().max_batch_size(8)`); getters are
//! `get_*`, as `std::process::Command`'s, since the setters hold the plain names.

use std::time::Duration;

use super::error::SchedulerError;

/// Per-model batching knobs: how large a batch may grow and how long it may wait.
///
/// ```
/// use std::time::Duration;
/// use densebatch::BatchPolicy;
/// let policy = BatchPolicy::default().max_batch_size(8).max_wait(Duration::from_micros(500));
/// assert_eq!(policy.get_max_batch_size(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchPolicy {
    pub(crate) max_batch_size: usize,
    pub(crate) max_wait: Duration,
    pub(crate) deadline_reserve: Duration,
}

impl Default for BatchPolicy {
    /// 32 rows, 1 ms: long enough to gather a batch under load (a dense model's full batch takes
    /// tens to hundreds of microseconds), short next to a network round trip. A zero default, as
    /// some servers ship, silently disables batching.
    fn default() -> Self {
        BatchPolicy {
            max_batch_size: 32,
            max_wait: Duration::from_millis(1),
            deadline_reserve: Duration::from_micros(200),
        }
    }
}

impl BatchPolicy {
    /// Sets the most rows a batch may hold (also the most rows one request may have).
    pub fn max_batch_size(mut self, rows: usize) -> Self {
        self.max_batch_size = rows;
        self
    }

    /// Sets how long the oldest request of a batch waits for company before the batch runs
    /// anyway.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets the time kept in hand before a deadline on top of the expected compute time: the
    /// worker's wake-up from a timed wait and the scatter are not free.
    pub fn deadline_reserve(mut self, reserve: Duration) -> Self {
        self.deadline_reserve = reserve;
        self
    }

    /// The most rows a batch may hold.
    pub fn get_max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    /// How long the oldest request waits for company.
    pub fn get_max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The time kept in hand before a deadline.
    pub fn get_deadline_reserve(&self) -> Duration {
        self.deadline_reserve
    }
}

/// How one model is served: its batching, queue, warmup and spinning.
///
/// What a request may hold (width, NaN/Inf) is the model's own policy
/// ([`crate::Predictor::check_input`]; for a compiled model, its
/// [`crate::NonFiniteInput`] compile option), not the scheduler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelConfig {
    pub(crate) batch: BatchPolicy,
    pub(crate) queue_capacity: usize,
    pub(crate) warmup_rounds: usize,
    pub(crate) idle_spin: Duration,
    pub(crate) reply_spin: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            batch: BatchPolicy::default(),
            queue_capacity: 1024,
            warmup_rounds: 2,
            // Long enough to catch a client's next submit right after a reply; short enough that
            // an idle worker (one per model) costs little CPU.
            idle_spin: Duration::from_micros(50),
            // Off: with many callers waiting at once, each spinning would take CPU from the
            // batches they wait for. A single latency-sensitive caller should turn it on.
            reply_spin: Duration::ZERO,
        }
    }
}

impl ModelConfig {
    /// Sets the whole batching policy.
    pub fn batch(mut self, policy: BatchPolicy) -> Self {
        self.batch = policy;
        self
    }

    /// Sets the batch's `max_batch_size` (see [`BatchPolicy::max_batch_size`]).
    pub fn max_batch_size(mut self, rows: usize) -> Self {
        self.batch.max_batch_size = rows;
        self
    }

    /// Sets the batch's `max_wait` (see [`BatchPolicy::max_wait`]).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.batch.max_wait = wait;
        self
    }

    /// Sets the time kept in hand before a deadline (see [`BatchPolicy::deadline_reserve`]).
    pub fn deadline_reserve(mut self, reserve: Duration) -> Self {
        self.batch.deadline_reserve = reserve;
        self
    }

    /// Sets how many requests the model's queue holds before `try_submit` answers `QueueFull`
    /// (and `submit` waits). Default 1024.
    pub fn queue_capacity(mut self, requests: usize) -> Self {
        self.queue_capacity = requests;
        self
    }

    /// Sets how many times every batch size is run at load before the model takes traffic.
    /// Default 2.
    pub fn warmup_rounds(mut self, rounds: usize) -> Self {
        self.warmup_rounds = rounds;
        self
    }

    /// Sets how long an idle worker polls its queue before it sleeps. A request arriving within
    /// that time is picked up at once instead of paying a thread wake-up (10–30 µs on a virtual
    /// machine); the price is that much CPU per idle spell. Zero sleeps at once. Default 50 µs;
    /// ignored when the process may use one CPU only, where spinning would hold up the very
    /// threads it waits for.
    pub fn idle_spin(mut self, spin: Duration) -> Self {
        self.idle_spin = spin;
        self
    }

    /// Sets how long [`crate::ReplyHandle::wait`] polls for the reply before it sleeps; the same
    /// trade on the caller's side (default zero). Set it a little above the expected latency of a
    /// request to keep the caller's wake-up out of it, when few callers wait at once.
    pub fn reply_spin(mut self, spin: Duration) -> Self {
        self.reply_spin = spin;
        self
    }

    /// The batching policy.
    pub fn get_batch(&self) -> BatchPolicy {
        self.batch
    }

    /// The queue capacity.
    pub fn get_queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// The warmup rounds.
    pub fn get_warmup_rounds(&self) -> usize {
        self.warmup_rounds
    }

    /// The idle worker's spin.
    pub fn get_idle_spin(&self) -> Duration {
        self.idle_spin
    }

    /// The waiting caller's spin.
    pub fn get_reply_spin(&self) -> Duration {
        self.reply_spin
    }

    pub(crate) fn validate(&self) -> Result<(), SchedulerError> {
        let at_least_one = |field| {
            Err(SchedulerError::InvalidConfig {
                field,
                reason: "must be at least 1",
            })
        };
        if self.batch.max_batch_size == 0 {
            return at_least_one("max_batch_size");
        }
        if self.queue_capacity == 0 {
            return at_least_one("queue_capacity");
        }
        Ok(())
    }
}

/// Which of the scheduler's threads is starting, as [`crate::SchedulerConfig::on_thread_start`]
/// tells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SchedulerThread {
    /// Thread `index` of the compute pool the scheduler built (not of a pool it was given).
    Pool {
        /// Its index in the pool, from 0.
        index: usize,
    },
    /// The worker of the model `model`: one per load, and a new one per replace.
    Worker {
        /// The model's name.
        model: String,
    },
}

/// The callback of [`crate::SchedulerConfig::on_thread_start`].
#[derive(Clone)]
pub(crate) struct ThreadStart(pub(crate) std::sync::Arc<dyn Fn(&SchedulerThread) + Send + Sync>);

impl ThreadStart {
    pub(crate) fn call(&self, thread: &SchedulerThread) {
        (self.0)(thread);
    }
}

impl std::fmt::Debug for ThreadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadStart(..)")
    }
}
