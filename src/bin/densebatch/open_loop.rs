//! The open-loop client of one model: a sender that submits on a fixed schedule whatever the
//! replies do, and a collector that waits for the replies.
//!
//! Latency is measured from each request's *scheduled* send time, so a sender running late (or a
//! full queue) shows up as latency instead of silently lowering the offered load (no coordinated
//! omission).

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use densebatch::{ReplyHandle, Request, RequestError, Scheduler, SubmitError};
use hdrhistogram::Histogram;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::Arrivals;

/// Distinct random inputs each sender cycles through, so the send loop only copies one sample.
const INPUT_POOL: usize = 256;

/// Highest latency the histograms hold (ns); larger values are clamped to it.
const MAX_LATENCY_NS: u64 = 600_000_000_000;

/// What one model is offered.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// How long requests are sent for.
    pub duration: Duration,
    /// How arrivals are spaced.
    pub arrivals: Arrivals,
    /// Deadline after each scheduled send time, if any.
    pub deadline: Option<Duration>,
    /// Seed of the gaps and the inputs.
    pub seed: u64,
}

/// What a sender did.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// Requests submitted (accepted or not).
    pub sent: u64,
    /// Requests `try_submit` refused (queue full, or any other refusal).
    pub rejected: u64,
    /// The first refusal other than a full queue, which should never happen here.
    pub unexpected_refusal: Option<String>,
    /// Largest delay between a scheduled send time and the actual submit.
    pub max_lag: Duration,
    /// Mean of that delay.
    pub mean_lag: Duration,
    /// Every submit's delay behind its scheduled time (ns; zero counts as 1).
    pub lag: Histogram<u64>,
}

impl Default for SendReport {
    fn default() -> Self {
        SendReport {
            sent: 0,
            rejected: 0,
            unexpected_refusal: None,
            max_lag: Duration::ZERO,
            mean_lag: Duration::ZERO,
            lag: latency_histogram(),
        }
    }
}

/// What a collector saw.
#[derive(Debug)]
pub struct CollectReport {
    /// Requests answered with outputs.
    pub ok: u64,
    /// Requests answered `DeadlineExceeded`.
    pub expired: u64,
    /// Requests answered with any other error.
    pub failed: u64,
    /// Scheduled-send-to-reply latency of every `ok` request (ns).
    pub latency: Histogram<u64>,
    /// When the last reply arrived.
    pub last_reply: Option<Instant>,
}

/// An accepted request on its way to the collector.
pub type InFlight = (ReplyHandle, Instant);

/// Random samples for a model of `width` inputs.
pub fn input_pool(width: usize, seed: u64) -> Vec<Array2<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..INPUT_POOL)
        .map(|_| Array2::from_shape_fn((1, width), |_| rng.random::<f32>()))
        .collect()
}

/// Sends `schedule` to `model` from `start` on, handing accepted requests to `collector`.
///
/// Waits for each slot (see [`wait_until`]); when late (preemption) it sends at once to catch
/// up, and reports how late it was.
pub fn send(
    scheduler: &Scheduler,
    model: &str,
    inputs: &[Array2<f32>],
    schedule: &Schedule,
    start: Instant,
    collector: &Sender<InFlight>,
) -> SendReport {
    let mut rng = StdRng::seed_from_u64(schedule.seed);
    let mut report = SendReport::default();
    let mut lag_total = Duration::ZERO;
    let end = schedule.duration.as_secs_f64();
    let mut offset = first_offset(schedule, &mut rng);
    while offset < end {
        let slot = start + Duration::from_secs_f64(offset);
        wait_until(slot);
        let lag = Instant::now().saturating_duration_since(slot);
        report.max_lag = report.max_lag.max(lag);
        lag_total += lag;
        let lag_ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        report.lag.saturating_record(lag_ns.max(1));

        let input = &inputs[report.sent as usize % inputs.len()];
        let mut request = Request::new(input.clone());
        if let Some(deadline) = schedule.deadline {
            request = request.with_deadline(slot + deadline);
        }
        report.sent += 1;
        match scheduler.try_submit(model, request) {
            // The collector outlives every sender, so this send only fails if it panicked;
            // the count check at the end then reports the request as unanswered.
            Ok(handle) => {
                let _ = collector.send((handle, slot));
            }
            Err(SubmitError::QueueFull(_)) => report.rejected += 1,
            Err(other) => {
                report.rejected += 1;
                report
                    .unexpected_refusal
                    .get_or_insert_with(|| other.to_string());
            }
        }
        offset += gap(schedule, &mut rng);
    }
    report.mean_lag = lag_total / report.sent.max(1) as u32;
    report
}

/// Gaps shorter than this are waited out on the CPU instead of asleep: a sleep costs a system
/// call and a timer (on a virtual machine, exits to the host) worth several microseconds, as
/// much as the gap itself at a hundred thousand requests per second.
const SLEEP_AT_LEAST: Duration = Duration::from_micros(50);

/// Returns at `slot`, not before: sleeps through long gaps (on time, when the thread asked for
/// precise sleeps) and yields the CPU through short ones, so that the collector sharing it runs
/// as soon as a reply wakes it. (A plain spin here let the collector wait for the spinning
/// sender's time slice: end-to-end p99s of 2–5 ms where the scheduler's own were 0.7–2.)
fn wait_until(slot: Instant) {
    let now = Instant::now();
    if slot > now + SLEEP_AT_LEAST {
        std::thread::sleep(slot - now);
    }
    while Instant::now() < slot {
        std::thread::yield_now();
    }
}

/// Waits for every reply handed over until all senders are done.
///
/// Replies are awaited in submission order; a model answers its queue in order, so the time a
/// reply is seen is the time it arrived, up to the scatter of one batch.
pub fn collect(in_flight: Receiver<InFlight>) -> CollectReport {
    let mut report = CollectReport {
        ok: 0,
        expired: 0,
        failed: 0,
        latency: latency_histogram(),
        last_reply: None,
    };
    for (handle, slot) in in_flight {
        let reply = handle.wait();
        let now = Instant::now();
        report.last_reply = Some(now);
        match reply {
            Ok(_) => {
                report.ok += 1;
                let ns = u64::try_from((now - slot).as_nanos()).unwrap_or(u64::MAX);
                report.latency.saturating_record(ns.max(1));
            }
            Err(RequestError::DeadlineExceeded) => report.expired += 1,
            Err(_) => report.failed += 1,
        }
    }
    report
}

/// An empty latency histogram (ns, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

fn first_offset(schedule: &Schedule, rng: &mut StdRng) -> f64 {
    match schedule.arrivals {
        Arrivals::Constant => 0.0,
        Arrivals::Poisson => gap(schedule, rng),
    }
}

/// Seconds to the next arrival.
fn gap(schedule: &Schedule, rng: &mut StdRng) -> f64 {
    match schedule.arrivals {
        Arrivals::Constant => 1.0 / schedule.rate,
        // Inverse-transform sampling of the exponential distribution: one line, so no
        // distribution crate. `1 - u` lies in (0, 1], keeping the logarithm finite.
        Arrivals::Poisson => -(1.0 - rng.random::<f64>()).ln() / schedule.rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_at_the_slot_never_before() {
        crate::machine::precise_sleeps();
        for gap_us in [0, 3, 20, 49, 51, 200, 2_000] {
            let slot = Instant::now() + Duration::from_micros(gap_us);
            wait_until(slot);
            assert!(
                Instant::now() >= slot,
                "returned early for a {gap_us} µs gap"
            );
        }
    }
}
