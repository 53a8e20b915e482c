//! What came back: a count per kind of answer and latency histograms, from each request's
//! scheduled send time.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200 (gRPC OK) carrying outputs.
    Ok,
    /// 503 / UNAVAILABLE: refused, the server's queue is full (or it is draining).
    Unavailable,
    /// 504 / DEADLINE_EXCEEDED: the request's deadline passed before it was computed.
    DeadlineExceeded,
    /// Any other status, named (`"400"`, `"INTERNAL"`, ...).
    Other(String),
    /// A 200 without outputs in its body.
    BadAnswer,
    /// No status came back: the connection failed or was reset.
    Transport(String),
    /// No answer within the client's own timeout.
    ClientTimeout,
}

/// Counts and histograms of one run.
pub struct Stats {
    pub ok: u64,
    pub unavailable: u64,
    pub deadline_exceeded: u64,
    pub other: BTreeMap<String, u64>,
    pub bad_answer: u64,
    pub transport: u64,
    pub client_timeout: u64,
    /// The first transport error's text, to say what went wrong.
    pub first_transport_error: Option<String>,
    /// Scheduled send to the end of the reply, successful requests (ns).
    pub latency_ok: Histogram<u64>,
    /// Scheduled send to the end of the reply, every answered request (ns).
    pub latency_answered: Histogram<u64>,
    /// Scheduled send to actual send (ns): how far behind its schedule the generator ran.
    pub send_lag: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    (d.as_nanos() as u64).clamp(1, 100_000_000_000)
}

impl Stats {
    pub fn new() -> Self {
        Self {
            ok: 0,
            unavailable: 0,
            deadline_exceeded: 0,
            other: BTreeMap::new(),
            bad_answer: 0,
            transport: 0,
            client_timeout: 0,
            first_transport_error: None,
            latency_ok: histogram(),
            latency_answered: histogram(),
            send_lag: histogram(),
        }
    }

    /// Records a request that ended `latency` after its scheduled send time.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let answered = !matches!(outcome, Outcome::Transport(_) | Outcome::ClientTimeout);
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency_ok
                    .record(nanos(latency))
                    .expect("clamped into bounds");
            }
            Outcome::Unavailable => self.unavailable += 1,
            Outcome::DeadlineExceeded => self.deadline_exceeded += 1,
            Outcome::Other(status) => *self.other.entry(status).or_default() += 1,
            Outcome::BadAnswer => self.bad_answer += 1,
            Outcome::Transport(error) => {
                self.transport += 1;
                self.first_transport_error.get_or_insert(error);
            }
            Outcome::ClientTimeout => self.client_timeout += 1,
        }
        if answered {
            self.latency_answered
                .record(nanos(latency))
                .expect("clamped into bounds");
        }
    }

    /// Records how late a request left.
    pub fn record_lag(&mut self, lag: Duration) {
        self.send_lag
            .record(nanos(lag))
            .expect("clamped into bounds");
    }

    /// Every request that ended, whatever the way.
    pub fn ended(&self) -> u64 {
        self.ok
            + self.unavailable
            + self.deadline_exceeded
            + self.other.values().sum::<u64>()
            + self.bad_answer
            + self.transport
            + self.client_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_counted_once() {
        let mut stats = Stats::new();
        let ms = Duration::from_millis(1);
        for outcome in [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Unavailable,
            Outcome::DeadlineExceeded,
            Outcome::Other("400".into()),
            Outcome::BadAnswer,
            Outcome::Transport("reset".into()),
            Outcome::ClientTimeout,
        ] {
            stats.record(outcome, ms);
        }
        assert_eq!(stats.ended(), 8);
        assert_eq!(
            (stats.ok, stats.unavailable, stats.deadline_exceeded),
            (2, 1, 1)
        );
        assert_eq!(stats.other["400"], 1);
        assert_eq!(stats.latency_ok.len(), 2);
        assert_eq!(stats.latency_answered.len(), 6);
        assert_eq!(stats.first_transport_error.as_deref(), Some("reset"));
    }
}
