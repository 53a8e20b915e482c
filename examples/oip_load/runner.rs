//! The two ways of loading a server: open loop (requests due on a fixed schedule, each latency
//! taken from its scheduled time) and closed loop (every connection sends again as soon as its
//! answer is in: the most the server gives at that concurrency, i.e. its capacity).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::grpc::GrpcSlot;
use crate::http::HttpSlot;
use crate::schedule::{Arrivals, send_offsets, wait_until};
use crate::stats::{Outcome, Stats};

/// A bound on requests in flight: one per HTTP connection, one per gRPC stream slot.
pub enum Slot {
    Http(HttpSlot),
    Grpc(GrpcSlot),
}

impl Slot {
    async fn send(&mut self, i: usize, timeout: Duration) -> Outcome {
        let sent = match self {
            Slot::Http(slot) => tokio::time::timeout(timeout, slot.send(i)).await,
            Slot::Grpc(slot) => tokio::time::timeout(timeout, slot.send(i)).await,
        };
        sent.unwrap_or_else(|_| {
            if let Slot::Http(slot) = self {
                slot.reset();
            }
            Outcome::ClientTimeout
        })
    }
}

/// What one run produced.
pub struct Run {
    pub stats: Stats,
    /// Requests on the schedule.
    pub scheduled: u64,
    /// Requests sent (the rest found every slot busy until the run gave up on them).
    pub sent: u64,
    /// From the first scheduled send to the last reply (at least the run's duration).
    pub elapsed: Duration,
}

/// Open loop at `rate` requests/s for `duration`. A request waits for a free slot if all are
/// busy (its latency, from its scheduled time, includes that wait); requests still unsent
/// `give_up` after the schedule's end are counted as unsent.
#[allow(clippy::too_many_arguments)]
pub async fn open_loop(
    slots: &mut Vec<Slot>,
    rate: f64,
    duration: Duration,
    arrivals: Arrivals,
    seed: u64,
    timeout: Duration,
    give_up: Duration,
) -> Run {
    let offsets = send_offsets(rate, duration, arrivals, seed);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel();
    let n_slots = slots.len();
    for slot in slots.drain(..) {
        idle_tx.send(slot).expect("receiver alive");
    }
    let start = Instant::now() + Duration::from_millis(20);
    let stop_sending = start + duration + give_up;
    let mut sent = 0u64;
    for (i, offset) in offsets.iter().enumerate() {
        let due = start + *offset;
        wait_until(due).await;
        let mut slot = tokio::select! {
            slot = idle_rx.recv() => slot.expect("slots come back"),
            () = tokio::time::sleep_until(stop_sending) => break,
        };
        let now = Instant::now();
        if now >= stop_sending {
            idle_tx.send(slot).expect("receiver alive");
            break;
        }
        stats.borrow_mut().record_lag(now - due);
        sent += 1;
        let (stats, idle_tx) = (stats.clone(), idle_tx.clone());
        tokio::task::spawn_local(async move {
            let outcome = slot.send(i, timeout).await;
            stats.borrow_mut().record(outcome, due.elapsed());
            let _ = idle_tx.send(slot);
        });
    }
    // Every slot comes back once its request has ended (at the latest after `timeout`).
    for _ in 0..n_slots {
        slots.push(idle_rx.recv().await.expect("slots come back"));
    }
    let elapsed = start.elapsed().max(duration);
    let stats = Rc::try_unwrap(stats)
        .ok()
        .expect("all tasks done")
        .into_inner();
    Run {
        stats,
        scheduled: offsets.len() as u64,
        sent,
        elapsed,
    }
}

/// Closed loop for `duration`: every slot sends, waits for its answer, sends again.
pub async fn closed_loop(slots: &mut Vec<Slot>, duration: Duration, timeout: Duration) -> Run {
    let stats = Rc::new(RefCell::new(Stats::new()));
    let start = Instant::now();
    let end = start + duration;
    let sent = Rc::new(RefCell::new(0u64));
    let mut tasks = Vec::new();
    for (k, mut slot) in slots.drain(..).enumerate() {
        let (stats, sent) = (stats.clone(), sent.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut i = k;
            loop {
                let due = Instant::now();
                if due >= end {
                    break;
                }
                *sent.borrow_mut() += 1;
                let outcome = slot.send(i, timeout).await;
                stats.borrow_mut().record(outcome, due.elapsed());
                i += 1;
            }
            slot
        }));
    }
    for task in tasks {
        slots.push(task.await.expect("load task does not panic"));
    }
    let elapsed = start.elapsed();
    let stats = Rc::try_unwrap(stats)
        .ok()
        .expect("all tasks done")
        .into_inner();
    let sent = *sent.borrow();
    Run {
        stats,
        scheduled: sent,
        sent,
        elapsed,
    }
}
