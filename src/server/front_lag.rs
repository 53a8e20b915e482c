//! How far behind the async front is: the signal that sheds load the model queues cannot see.
//!
//! When decoding requests (JSON above all) costs the front threads more than they have, work piles
//! up in the sockets and in the runtime's run queue, not in a model queue, so the queue bound never
//! refuses anything and every request waits longer than the last. A probe task asks to wake every
//! millisecond and records how late it woke: a ready task waits that long for a front thread, and so
//! does a request that just arrived. Over the limit, inference requests are refused (503, gRPC
//! UNAVAILABLE) before their tensors are decoded, which costs the front little, so it catches up.
//! The same signal as Node's event-loop delay that Fastify's `under-pressure` plugin sheds on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the probe asks to wake.
const PERIOD: Duration = Duration::from_millis(1);

/// The front's lag, shared by the probe and the handlers.
#[derive(Debug)]
pub(crate) struct FrontLag {
    /// What the clocks below count from.
    origin: Instant,
    /// How late the probe woke last time, in microseconds.
    last_micros: AtomicU64,
    /// When the probe is due to wake next, in microseconds from `origin`.
    due_micros: AtomicU64,
}

impl FrontLag {
    pub(crate) fn new() -> Self {
        FrontLag {
            origin: Instant::now(),
            last_micros: AtomicU64::new(0),
            due_micros: AtomicU64::new(u64::MAX),
        }
    }

    fn micros_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// The front's current lag: how late the probe woke last, or, if it is overdue now, by how
    /// much (a front stuck for long is seen before the probe gets to run).
    pub(crate) fn now(&self) -> Duration {
        let now = self.micros_since_origin(Instant::now());
        let overdue = now.saturating_sub(self.due_micros.load(Ordering::Relaxed));
        Duration::from_micros(overdue.max(self.last_micros.load(Ordering::Relaxed)))
    }

    /// Measures the lag until the runtime shuts down. Spawned once on the front's runtime.
    pub(crate) async fn probe(self: Arc<Self>) {
        loop {
            let due = Instant::now() + PERIOD;
            self.due_micros
                .store(self.micros_since_origin(due), Ordering::Relaxed);
            tokio::time::sleep_until(due.into()).await;
            let late = Instant::now().saturating_duration_since(due);
            self.last_micros.store(
                u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_front_shows_as_lag_and_an_idle_one_does_not() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lag = Arc::new(FrontLag::new());
        runtime.block_on(async {
            tokio::spawn(Arc::clone(&lag).probe());
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Idle: the probe wakes within a few timer ticks (generous for a busy machine).
            assert!(lag.now() < Duration::from_millis(15), "{:?}", lag.now());
            // A handler hogging the only front thread for 60 ms: the probe is overdue meanwhile.
            std::thread::sleep(Duration::from_millis(60));
            assert!(lag.now() >= Duration::from_millis(50), "{:?}", lag.now());
            // Recovered: the next wakes are on time again.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(lag.now() < Duration::from_millis(15), "{:?}", lag.now());
        });
    }
}
