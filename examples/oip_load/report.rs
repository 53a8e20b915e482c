//! One run's figures, as JSON and as a table row.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::runner::Run;

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        if h.is_empty() {
            return Self {
                count: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        Self {
            count: h.len(),
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Which server was loaded (free text).
    pub server: String,
    /// `http-binary`, `http-json` or `grpc`.
    pub protocol: String,
    /// `open` (fixed schedule) or `closed` (capacity).
    pub mode: &'static str,
    /// The offered rate as a fraction of the capacity, in a sweep.
    pub load: Option<f64>,
    /// Requests/s on the schedule (open loop).
    pub offered_rps: Option<f64>,
    /// Requests in flight at most.
    pub connections: usize,
    pub duration_s: f64,
    /// First scheduled send to last reply.
    pub elapsed_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    /// Scheduled but never sent: every slot stayed busy until the run gave up.
    pub unsent: u64,
    /// 200 with outputs.
    pub ok: u64,
    pub status_503: u64,
    pub status_504: u64,
    /// Any other status, by name.
    pub other_status: BTreeMap<String, u64>,
    /// 200 without outputs.
    pub bad_answer: u64,
    pub transport_errors: u64,
    pub client_timeouts: u64,
    pub first_transport_error: Option<String>,
    /// Successful requests per second of `elapsed_s` (throughput).
    pub goodput_rps: f64,
    /// Answered requests (any status) per second.
    pub reply_rps: f64,
    /// Scheduled send to end of reply, 200s.
    pub latency_ok_us: Percentiles,
    /// Scheduled send to end of reply, every answered request.
    pub latency_answered_us: Percentiles,
    /// Scheduled send to actual send.
    pub send_lag_us: Percentiles,
}

/// What a run was.
pub struct RunInfo<'a> {
    pub server: &'a str,
    pub protocol: &'a str,
    pub mode: &'static str,
    pub load: Option<f64>,
    pub offered_rps: Option<f64>,
    pub connections: usize,
    pub duration: Duration,
}

impl RunReport {
    pub fn new(info: &RunInfo<'_>, run: &Run) -> Self {
        let s = &run.stats;
        let elapsed = run.elapsed.as_secs_f64();
        let answered = s.ended() - s.transport - s.client_timeout;
        Self {
            server: info.server.to_string(),
            protocol: info.protocol.to_string(),
            mode: info.mode,
            load: info.load,
            offered_rps: info.offered_rps,
            connections: info.connections,
            duration_s: info.duration.as_secs_f64(),
            elapsed_s: elapsed,
            scheduled: run.scheduled,
            sent: run.sent,
            unsent: run.scheduled - run.sent,
            ok: s.ok,
            status_503: s.unavailable,
            status_504: s.deadline_exceeded,
            other_status: s.other.clone(),
            bad_answer: s.bad_answer,
            transport_errors: s.transport,
            client_timeouts: s.client_timeout,
            first_transport_error: s.first_transport_error.clone(),
            goodput_rps: s.ok as f64 / elapsed,
            reply_rps: answered as f64 / elapsed,
            latency_ok_us: Percentiles::of(&s.latency_ok),
            latency_answered_us: Percentiles::of(&s.latency_answered),
            send_lag_us: Percentiles::of(&s.send_lag),
        }
    }

    /// Requests that got no status (unsent, transport errors, client timeouts).
    pub fn unanswered(&self) -> u64 {
        self.unsent + self.transport_errors + self.client_timeouts
    }

    /// Answers other than 200, 503 and 504 (including 200s without outputs).
    pub fn unexpected(&self) -> u64 {
        self.other_status.values().sum::<u64>() + self.bad_answer
    }
}

/// The table header, in the same columns as [`row`].
pub fn header() -> String {
    format!(
        "| {:<10} | {:<11} | {:>5} | {:>9} | {:>9} | {:>8} | {:>7} | {:>6} | {:>5} | {:>5} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |\n|{}|",
        "server",
        "protocol",
        "load",
        "offered/s",
        "goodput/s",
        "200",
        "503",
        "504",
        "other",
        "lost",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "lag µs",
        "---|".repeat(15).trim_end_matches('|'),
    )
}

/// One run as a table row: load and offered rate (`closed` for a capacity run), counts, latency
/// of the 200s from their scheduled time, and the worst send lag.
pub fn row(r: &RunReport) -> String {
    let load = r.load.map_or_else(
        || {
            if r.mode == "closed" {
                "cap".to_string()
            } else {
                "-".into()
            }
        },
        |l| format!("{l:.2}"),
    );
    let offered = r
        .offered_rps
        .map_or_else(|| format!("c={}", r.connections), |o| format!("{o:.0}"));
    let l = &r.latency_ok_us;
    format!(
        "| {:<10} | {:<11} | {:>5} | {:>9} | {:>9.0} | {:>8} | {:>7} | {:>6} | {:>5} | {:>5} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} |",
        r.server,
        r.protocol,
        load,
        offered,
        r.goodput_rps,
        r.ok,
        r.status_503,
        r.status_504,
        r.unexpected(),
        r.unanswered(),
        l.p50,
        l.p90,
        l.p99,
        l.p99_9,
        r.send_lag_us.max,
    )
}
