//! [`Team`]: helper threads that a caller outside any pool shares a fork with. The caller always
//! computes worker 0's share itself; idle helpers spin briefly before they sleep, and one that
//! is asleep or busy when a fork starts is not waited for.
//!
//! Written by hand because rayon has no cheap entry for a thread outside its pool:
//! `ThreadPool::install` hands the whole call to a pool thread and sleeps the caller on a
//! condition variable until it is done, and `in_place_scope` boxes every spawned job. On a VM a
//! wake-up of a sleeping thread on the other vCPU costs about 15 µs (a mutex and condition
//! variable ping-pong across two vCPUs of an Intel Xeon: 28–33 µs a round trip), as much as a
//! one-row mnist-mlp call computes; here no wake-up is on the caller's path.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One worker's share of a fork: `work(i)` for worker `i`.
pub(crate) type Work<'a> = dyn Fn(usize) + Sync + 'a;

/// How long an idle helper spins for the next fork before it sleeps. Covers the gap between
/// the layers of a call and between back-to-back calls from Python (a few µs), and costs one
/// core that long after the last call.
const SPIN: Duration = Duration::from_micros(100);

/// Helper threads for forks started by callers outside any pool (see the module docs).
pub(crate) struct Team {
    shared: Arc<Shared>,
    /// Helper threads started (they are not joined: see `Drop`).
    helpers: usize,
}

/// What the caller and the helpers share.
struct Shared {
    /// Bumped under the lock whenever a fork is published or the team shuts down; idle helpers
    /// spin on it.
    epoch: AtomicU64,
    /// Helpers running a share of the current fork. Raised under the lock, so once the caller
    /// has withdrawn its fork under the lock no helper can join it.
    active: AtomicUsize,
    state: Mutex<State>,
    /// Wakes sleeping helpers.
    wake: Condvar,
}

struct State {
    /// The fork on offer, if any.
    fork: Option<Offer>,
    /// A helper's panic during the current fork, for the caller to resume.
    panic: Option<Box<dyn Any + Send>>,
    /// Helpers asleep on `wake`.
    sleeping: usize,
    shutdown: bool,
}

/// A published fork: the caller's `work`, with its lifetime erased, and the worker indices
/// not yet taken.
struct Offer {
    work: *const Work<'static>,
    next_worker: usize,
    workers: usize,
}

// SAFETY: `work` points to a `Sync` closure; `Team::fork` withdraws the offer and waits until no
// helper runs it before the closure's borrow ends, so sending the pointer to a helper is sound.
unsafe impl Send for Offer {}

impl Team {
    /// A team with `helpers` helper threads named `{name}-{i}`.
    pub(crate) fn new(helpers: usize, name: &str) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            state: Mutex::new(State {
                fork: None,
                panic: None,
                sleeping: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
        });
        let mut team = Team { shared, helpers: 0 };
        for i in 0..helpers {
            let shared = Arc::clone(&team.shared);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.help())?;
            // On an error above, dropping `team` stops the helpers started so far.
            team.helpers += 1;
        }
        Ok(team)
    }

    /// Workers a fork can have: the caller and the helpers.
    pub(crate) fn threads(&self) -> usize {
        self.helpers + 1
    }

    /// Runs `work(0)` on the calling thread and `work(i)` for `i` in `1..workers` on whichever
    /// helpers are free to take them before `work(0)` returns; returns when every share that
    /// started has finished. So `work` must finish the whole job from worker 0 alone (it claims
    /// parts of the job, as the row and column splits do). A fork while another caller's fork
    /// is running, or from inside a share, runs `work(0)` alone. A panic in any share is resumed
    /// on the caller once every share has stopped.
    pub(crate) fn fork(&self, workers: usize, work: &Work<'_>) {
        if workers <= 1 || self.helpers == 0 || !self.offer(workers, work) {
            return work(0);
        }
        let own = panic::catch_unwind(AssertUnwindSafe(|| work(0)));
        self.shared.lock().fork = None;
        let helper_panic = self.wait_for_helpers();
        if let Err(payload) = own {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = helper_panic {
            panic::resume_unwind(payload);
        }
    }

    /// Publishes a fork of `workers` workers unless another is running; wakes sleeping helpers.
    fn offer(&self, workers: usize, work: &Work<'_>) -> bool {
        let mut state = self.shared.lock();
        if state.fork.is_some() || self.shared.active.load(Ordering::Acquire) != 0 {
            return false;
        }
        // SAFETY: only the lifetime is erased. Helpers dereference the pointer only after taking
        // a worker index from the offer under the lock, and `fork` withdraws the offer under the
        // lock and then waits for `active` to reach zero before it returns, so every use ends
        // while `work` is still borrowed.
        let work = unsafe { std::mem::transmute::<*const Work<'_>, *const Work<'static>>(work) };
        state.fork = Some(Offer {
            work,
            next_worker: 1,
            workers,
        });
        self.shared.epoch.fetch_add(1, Ordering::Release);
        if state.sleeping > 0 {
            self.shared.wake.notify_all();
        }
        true
    }

    /// Waits until no helper runs a share of the withdrawn fork; returns a helper's panic.
    fn wait_for_helpers(&self) -> Option<Box<dyn Any + Send>> {
        let mut spins = 0u32;
        // Acquire: the helpers' writes to the output happen before their decrement.
        while self.shared.active.load(Ordering::Acquire) != 0 {
            spins = spins.saturating_add(1);
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // A helper descheduled mid-share: let other threads have this core meanwhile.
                std::thread::yield_now();
            }
        }
        self.shared.lock().panic.take()
    }
}

/// Tells the helpers to stop and does not wait for them: they own their share of the state, and
/// in a process forked from the one that started them they do not exist, so joining them there
/// would wait forever.
impl Drop for Team {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.shutdown = true;
        self.shared.epoch.fetch_add(1, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Team")
            .field("helpers", &self.helpers)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Shares run outside the lock and their panics are caught: a poisoned lock's state is
        // still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A helper's loop: waits for a fork, takes a worker index and runs that share.
    fn help(&self) {
        let mut seen = 0;
        loop {
            seen = self.wait_for_news(seen);
            let mut state = self.lock();
            if state.shutdown {
                return;
            }
            let Some(offer) = state.fork.as_mut().filter(|o| o.next_worker < o.workers) else {
                continue;
            };
            let (work, worker) = (offer.work, offer.next_worker);
            offer.next_worker += 1;
            self.active.fetch_add(1, Ordering::Relaxed);
            drop(state);
            // SAFETY: the index was taken from a published offer under the lock and `active`
            // raised there, so the caller is still inside `Team::fork`, waiting for `active` to
            // drop before `work`'s borrow ends.
            let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*work)(worker) }));
            if let Err(payload) = result {
                self.lock().panic.get_or_insert(payload);
            }
            // Release: this share's writes happen before the caller sees the count drop.
            self.active.fetch_sub(1, Ordering::Release);
        }
    }

    /// Spins for up to [`SPIN`] until the epoch moves past `seen`, then sleeps until it does;
    /// returns the new epoch.
    fn wait_for_news(&self, seen: u64) -> u64 {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen {
                return epoch;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() >= SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        let mut state = self.lock();
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen || state.shutdown {
                return epoch;
            }
            state.sleeping += 1;
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            state.sleeping -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Claims `parts` parts one at a time; every share takes from the same counter.
    fn claim_all(next: &AtomicUsize, done: &[AtomicUsize], worker_seen: &[AtomicBool], i: usize) {
        worker_seen[i].store(true, Ordering::Relaxed);
        loop {
            let p = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = done.get(p) else { break };
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_part_runs_exactly_once_and_the_caller_is_worker_zero() {
        let team = Team::new(2, "test-team").unwrap();
        assert_eq!(team.threads(), 3);
        for round in 0..2_000 {
            let next = AtomicUsize::new(0);
            let done: Vec<AtomicUsize> = (0..97).map(|_| AtomicUsize::new(0)).collect();
            let seen: Vec<AtomicBool> = (0..3).map(|_| AtomicBool::new(false)).collect();
            let caller = std::thread::current().id();
            team.fork(3, &|i| {
                if i == 0 {
                    assert_eq!(std::thread::current().id(), caller);
                }
                claim_all(&next, &done, &seen, i);
            });
            assert!(seen[0].load(Ordering::Relaxed), "round {round}");
            assert!(done.iter().all(|d| d.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn helpers_take_shares_and_sleeping_helpers_wake() {
        let team = Team::new(1, "test-team").unwrap();
        // After sleeping, the helper must still answer forks; a long share gives it time to.
        for _ in 0..5 {
            std::thread::sleep(SPIN * 5);
            let helper_ran = AtomicBool::new(false);
            let start = Instant::now();
            team.fork(2, &|i| {
                if i == 1 {
                    helper_ran.store(true, Ordering::Relaxed);
                } else {
                    while !helper_ran.load(Ordering::Relaxed) && start.elapsed().as_secs() < 5 {
                        std::hint::spin_loop();
                    }
                }
            });
            assert!(helper_ran.load(Ordering::Relaxed));
        }
    }

    #[test]
    fn a_panic_in_any_share_reaches_the_caller_after_all_shares_stop() {
        let team = Team::new(1, "test-team").unwrap();
        for panicking in [0, 1] {
            let finished = AtomicUsize::new(0);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                team.fork(2, &|i| {
                    // Both shares start before either ends, so the helper's share runs.
                    let start = Instant::now();
                    while finished.load(Ordering::Relaxed) == 0
                        && i == 0
                        && start.elapsed() < Duration::from_secs(2)
                    {
                        std::hint::spin_loop();
                    }
                    if i == panicking {
                        finished.fetch_add(1, Ordering::Relaxed);
                        panic!("share {i}");
                    }
                    finished.fetch_add(1, Ordering::Relaxed);
                })
            }));
            let payload = result.expect_err("the panic is resumed");
            assert_eq!(
                payload.downcast_ref::<String>().unwrap(),
                &format!("share {panicking}")
            );
            // The team still works.
            let count = AtomicUsize::new(0);
            team.fork(2, &|_| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert!(count.load(Ordering::Relaxed) >= 1);
        }
    }

    #[test]
    fn a_helper_panic_does_not_let_the_caller_return_before_the_other_shares_end() {
        let team = Team::new(2, "test-team").unwrap();
        let started = AtomicUsize::new(0);
        let slow_share_done = AtomicBool::new(false);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            team.fork(3, &|i| {
                started.fetch_add(1, Ordering::SeqCst);
                match i {
                    0 => {
                        let start = Instant::now();
                        while started.load(Ordering::SeqCst) < 3
                            && start.elapsed() < Duration::from_secs(2)
                        {
                            std::hint::spin_loop();
                        }
                    }
                    1 => panic!("share 1"),
                    _ => {
                        std::thread::sleep(Duration::from_millis(50));
                        slow_share_done.store(true, Ordering::SeqCst);
                    }
                }
            })
        }));
        assert!(result.is_err(), "the helper's panic is resumed");
        assert_eq!(started.load(Ordering::SeqCst), 3, "all three shares ran");
        assert!(
            slow_share_done.load(Ordering::SeqCst),
            "fork returned during a share"
        );
    }

    #[test]
    fn concurrent_and_nested_forks_run_alone_instead_of_waiting() {
        let team = Arc::new(Team::new(1, "test-team").unwrap());
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        let next = AtomicUsize::new(0);
                        team.fork(2, &|_| {
                            // A nested fork on the same team: runs alone, never deadlocks.
                            team.fork(2, &|_| {});
                            while next.fetch_add(1, Ordering::Relaxed) < 10 {
                                total.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 500 * 10);
    }
}
