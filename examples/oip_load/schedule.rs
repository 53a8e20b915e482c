//! The open-loop send schedule: when each request is due, fixed before the run starts, so a slow
//! server cannot slow the arrivals down (no coordinated omission).

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio::time::Instant;

/// How requests arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced, `1 / rate` apart.
    Constant,
    /// A Poisson process: exponential gaps with mean `1 / rate`.
    Poisson,
}

/// The offsets from the run's start at which requests are due, for `rate` requests/s over
/// `duration`.
pub fn send_offsets(rate: f64, duration: Duration, arrivals: Arrivals, seed: u64) -> Vec<Duration> {
    let end = duration.as_secs_f64();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut offsets = Vec::with_capacity((rate * end) as usize + 1);
    let mut t = 0.0;
    let mut i = 0u64;
    while t < end {
        offsets.push(Duration::from_secs_f64(t));
        i += 1;
        t = match arrivals {
            Arrivals::Constant => i as f64 / rate,
            // Inverse transform of a uniform draw in (0, 1].
            Arrivals::Poisson => t - (1.0 - rng.random::<f64>()).ln() / rate,
        };
    }
    offsets
}

/// Waits until `due`. Tokio's timer ticks in milliseconds, far coarser than the gaps between
/// requests, so the last stretch is spent yielding to the runtime (which polls the sockets on
/// every yield): the generator's CPU stays busy, and sends leave within microseconds of their time.
pub async fn wait_until(due: Instant) {
    const TIMER_SLACK: Duration = Duration::from_micros(1500);
    let now = Instant::now();
    if due > now + TIMER_SLACK {
        tokio::time::sleep_until(due - TIMER_SLACK).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        let offsets = send_offsets(1000.0, Duration::from_millis(10), Arrivals::Constant, 1);
        assert_eq!(offsets.len(), 10);
        assert_eq!(offsets[0], Duration::ZERO);
        assert_eq!(offsets[9], Duration::from_secs_f64(0.009));
    }

    #[test]
    fn poisson_arrivals_have_the_asked_mean_rate() {
        let offsets = send_offsets(10_000.0, Duration::from_secs(2), Arrivals::Poisson, 7);
        // 20 000 expected; the count of a Poisson process has a standard deviation of about 141.
        assert!(
            (19_400..20_600).contains(&offsets.len()),
            "{}",
            offsets.len()
        );
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            offsets,
            send_offsets(10_000.0, Duration::from_secs(2), Arrivals::Poisson, 7)
        );
    }
}
