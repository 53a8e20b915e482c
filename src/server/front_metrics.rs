//! Counters of the network front (replies by protocol and status), rendered as Prometheus text
//! after the scheduler's own metrics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The HTTP statuses the server answers with; gRPC replies are counted under the same code.
const CODES: [u16; 10] = [200, 400, 404, 413, 429, 500, 501, 503, 504, 0];

/// Replies counted by protocol and status.
#[derive(Debug, Default)]
pub(crate) struct FrontCounters {
    http: [AtomicU64; CODES.len()],
    grpc: [AtomicU64; CODES.len()],
}

/// Which protocol a reply went out by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    Http,
    Grpc,
}

impl FrontCounters {
    /// Counts one reply with HTTP status `code` (any other code counts as 0, "other").
    pub(crate) fn count(&self, protocol: Protocol, code: u16) {
        let slot = CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(CODES.len() - 1);
        let counters = match protocol {
            Protocol::Http => &self.http,
            Protocol::Grpc => &self.grpc,
        };
        counters[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters, the readiness gauges and the front's lag as Prometheus text.
    pub(crate) fn to_prometheus(&self, ready: bool, draining: bool, lag: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP densebatch_front_replies_total Inference replies sent, by protocol and the HTTP status they map to (0: other)."
        );
        let _ = writeln!(out, "# TYPE densebatch_front_replies_total counter");
        for (protocol, counters) in [("http", &self.http), ("grpc", &self.grpc)] {
            for (code, n) in CODES.iter().zip(counters) {
                let _ = writeln!(
                    out,
                    "densebatch_front_replies_total{{protocol=\"{protocol}\",code=\"{code}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        for (name, help, value) in [
            (
                "densebatch_ready",
                "1 when every model is warm and the server is not draining.",
                ready,
            ),
            (
                "densebatch_draining",
                "1 from SIGTERM/SIGINT on, while accepted requests finish.",
                draining,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", u8::from(value));
        }
        let _ = writeln!(
            out,
            "# HELP densebatch_front_lag_seconds How late the network front's probe last woke; inference is refused above the limit."
        );
        let _ = writeln!(out, "# TYPE densebatch_front_lag_seconds gauge");
        let _ = writeln!(out, "densebatch_front_lag_seconds {}", lag.as_secs_f64());
        out
    }
}
