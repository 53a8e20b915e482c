//! When a batch closes ([`BatchPolicy`]'s decision over an [`OpenBatch`]), the compute-time
//! profile the decision uses, and the batch sizes warmup runs: pure data and pure functions, so
//! the rules are unit-tested alone.

use std::time::{Duration, Instant};

use super::config::BatchPolicy;
use super::metrics::{CloseReason, nanos};

/// What the worker knows about the batch it is forming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenBatch {
    /// Rows gathered so far (at least one request's worth).
    pub(crate) rows: usize,
    /// When its oldest request was submitted.
    pub(crate) oldest_submitted: Instant,
    /// The earliest deadline among its requests, if any has one.
    pub(crate) earliest_deadline: Option<Instant>,
    /// Expected compute time if one more request joins (from warmup and recent batches).
    pub(crate) expected_compute: Duration,
}

/// The closing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the batch now.
    Close(CloseReason),
    /// Keep gathering until this instant at the latest, then ask again.
    WaitUntil(Instant),
}

impl BatchPolicy {
    /// Decides whether `batch` closes at `now`, and if not, until when it may wait.
    ///
    /// It closes when full, when the oldest request has waited `max_wait`, or when waiting any
    /// longer would leave less than `expected_compute + deadline_reserve` before the earliest
    /// deadline.
    pub(crate) fn decide(&self, batch: &OpenBatch, now: Instant) -> Decision {
        if batch.rows >= self.max_batch_size {
            return Decision::Close(CloseReason::Full);
        }
        let wait_limit = batch.oldest_submitted + self.max_wait;
        let deadline_limit = batch.earliest_deadline.map(|d| {
            let needed = batch.expected_compute + self.deadline_reserve;
            d.checked_sub(needed).unwrap_or(d)
        });
        match deadline_limit {
            Some(limit) if limit < wait_limit => {
                if now >= limit {
                    Decision::Close(CloseReason::Deadline)
                } else {
                    Decision::WaitUntil(limit)
                }
            }
            _ => {
                if now >= wait_limit {
                    Decision::Close(CloseReason::Wait)
                } else {
                    Decision::WaitUntil(wait_limit)
                }
            }
        }
    }
}

/// Measured compute time per batch size, seeded by warmup and refreshed by every batch.
#[derive(Debug, Clone)]
pub(crate) struct ComputeProfile {
    /// Nanoseconds for `i + 1` rows.
    nanos: Vec<u64>,
}

impl ComputeProfile {
    pub(crate) fn new(max_batch_size: usize) -> Self {
        ComputeProfile {
            nanos: vec![0; max_batch_size.max(1)],
        }
    }

    /// Sets the time for `rows` rows (warmup).
    pub(crate) fn set(&mut self, rows: usize, time: Duration) {
        if let Some(slot) = self.nanos.get_mut(rows.max(1) - 1) {
            *slot = nanos(time);
        }
    }

    /// Folds a new measurement in, weighting the past 7:1 so one slow batch does not swing it.
    pub(crate) fn observe(&mut self, rows: usize, time: Duration) {
        if let Some(slot) = self.nanos.get_mut(rows.max(1) - 1) {
            let new = nanos(time);
            *slot = if *slot == 0 {
                new
            } else {
                (*slot * 7 + new) / 8
            };
        }
    }

    /// Gives each size not measured the time of the next larger measured size (an upper bound,
    /// so the deadline closer errs early).
    pub(crate) fn fill_gaps(&mut self) {
        let mut above = 0;
        for slot in self.nanos.iter_mut().rev() {
            if *slot == 0 {
                *slot = above;
            } else {
                above = *slot;
            }
        }
    }

    /// Expected time for `rows` rows (clamped to the largest size known).
    pub(crate) fn expected(&self, rows: usize) -> Duration {
        let i = rows.clamp(1, self.nanos.len()) - 1;
        Duration::from_nanos(self.nanos[i])
    }
}

/// Largest `max_batch_size` for which warmup runs every size; above it, the powers of two.
const WARM_EVERY_SIZE_UP_TO: usize = 64;

/// The batch sizes warmup runs: every size up to 64, else the powers of two below
/// `max_batch_size` and `max_batch_size` itself.
pub(crate) fn warmup_sizes(max_batch_size: usize) -> Vec<usize> {
    if max_batch_size <= WARM_EVERY_SIZE_UP_TO {
        return (1..=max_batch_size).collect();
    }
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2))
        .take_while(|&s| s < max_batch_size)
        .collect();
    sizes.push(max_batch_size);
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BatchPolicy {
        BatchPolicy::default()
            .max_batch_size(4)
            .max_wait(Duration::from_millis(10))
            .deadline_reserve(Duration::from_millis(1))
    }

    fn batch(t0: Instant, rows: usize, deadline_ms: Option<u64>, compute_ms: u64) -> OpenBatch {
        OpenBatch {
            rows,
            oldest_submitted: t0,
            earliest_deadline: deadline_ms.map(|d| t0 + Duration::from_millis(d)),
            expected_compute: Duration::from_millis(compute_ms),
        }
    }

    #[test]
    fn full_batch_closes_at_once() {
        let t0 = Instant::now();
        let d = policy().decide(&batch(t0, 4, None, 1), t0);
        assert_eq!(d, Decision::Close(CloseReason::Full));
        let d = policy().decide(&batch(t0, 5, Some(0), 1), t0);
        assert_eq!(d, Decision::Close(CloseReason::Full));
    }

    #[test]
    fn waits_until_max_wait_then_closes() {
        let t0 = Instant::now();
        let b = batch(t0, 1, None, 1);
        let ms = Duration::from_millis;
        assert_eq!(
            policy().decide(&b, t0 + ms(3)),
            Decision::WaitUntil(t0 + ms(10))
        );
        assert_eq!(
            policy().decide(&b, t0 + ms(10)),
            Decision::Close(CloseReason::Wait)
        );
    }

    #[test]
    fn far_deadline_does_not_shorten_the_wait() {
        let t0 = Instant::now();
        let b = batch(t0, 2, Some(100), 5);
        assert_eq!(
            policy().decide(&b, t0),
            Decision::WaitUntil(t0 + Duration::from_millis(10))
        );
    }

    #[test]
    fn near_deadline_closes_early_by_the_compute_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Deadline 8 ms, compute 3 ms, reserve 1 ms: close at 4 ms.
        let b = batch(t0, 2, Some(8), 3);
        assert_eq!(policy().decide(&b, t0), Decision::WaitUntil(t0 + ms(4)));
        assert_eq!(
            policy().decide(&b, t0 + ms(4)),
            Decision::Close(CloseReason::Deadline)
        );
        // A deadline already closer than the compute time closes at once.
        let b = batch(t0, 1, Some(1), 3);
        assert_eq!(
            policy().decide(&b, t0),
            Decision::Close(CloseReason::Deadline)
        );
    }

    #[test]
    fn warmup_covers_every_size_or_the_powers_of_two() {
        assert_eq!(warmup_sizes(1), [1]);
        assert_eq!(warmup_sizes(5), [1, 2, 3, 4, 5]);
        assert_eq!(warmup_sizes(64).len(), 64);
        assert_eq!(warmup_sizes(100), [1, 2, 4, 8, 16, 32, 64, 100]);
        assert_eq!(warmup_sizes(128), [1, 2, 4, 8, 16, 32, 64, 128]);
    }

    #[test]
    fn profile_gaps_take_the_next_larger_measurement() {
        let mut p = ComputeProfile::new(8);
        p.set(1, Duration::from_nanos(10));
        p.set(4, Duration::from_nanos(40));
        p.set(8, Duration::from_nanos(80));
        p.fill_gaps();
        let got: Vec<u64> = (1..=8).map(|r| p.expected(r).as_nanos() as u64).collect();
        assert_eq!(got, [10, 40, 40, 40, 80, 80, 80, 80]);
    }

    #[test]
    fn profile_clamps_sizes_and_smooths_updates() {
        let mut p = ComputeProfile::new(3);
        p.set(1, Duration::from_nanos(100));
        p.set(3, Duration::from_nanos(300));
        assert_eq!(p.expected(0), Duration::from_nanos(100));
        assert_eq!(p.expected(9), Duration::from_nanos(300));
        p.observe(3, Duration::from_nanos(1100));
        assert_eq!(p.expected(3), Duration::from_nanos(400));
        p.observe(2, Duration::from_nanos(50));
        assert_eq!(p.expected(2), Duration::from_nanos(50));
    }
}
