//! Per-batch memory accounting: with the counting allocator installed, a steady-state batch
//! allocates exactly its reply payloads on the worker thread, and the record says so.

use std::sync::Arc;
use std::time::Duration;

use densebatch::prelude::*;
use densebatch::{CountingAllocator, ModelConfig, Request, Scheduler, SchedulerConfig};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[test]
fn steady_state_batches_allocate_only_reply_payloads() {
    const BATCH: usize = 8;
    const ROUNDS: usize = 200;
    let model = Model::random(&[16, 64, 10], Activation::Relu, Activation::Identity, 3);
    let compiled = Arc::new(model.compile().unwrap());
    // Bounded sink: an unbounded channel would allocate on the worker thread as it grows.
    let (tx, records) = crossbeam_channel::bounded(ROUNDS + 8);
    let scheduler = Scheduler::new(SchedulerConfig::default().threads(2).record_sink(tx)).unwrap();
    let config = ModelConfig::default()
        .max_batch_size(BATCH)
        .max_wait(Duration::from_secs(60));
    scheduler.load("m", compiled.clone(), config).unwrap();
    for round in 0..ROUNDS {
        let handles: Vec<_> = (0..BATCH)
            .map(|i| {
                let x = vec![(round * BATCH + i) as f32 * 0.01; 16];
                scheduler.try_submit("m", Request::one(x)).unwrap()
            })
            .collect();
        for h in handles {
            assert_eq!(h.wait().unwrap().dim(), (1, 10));
        }
    }
    let payload = (BATCH * 10 * size_of::<f32>()) as u64;
    let all: Vec<_> = (0..ROUNDS)
        .map(|_| records.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    let steady = &all[10..];
    for r in steady {
        assert!(r.alloc_counted);
        assert_eq!(r.rows, BATCH);
        assert!(r.alloc_count >= BATCH as u64, "{r:?}");
        assert!(r.alloc_bytes >= payload, "{r:?}");
        // Preallocated scratch: input and output rows plus at least one workspace.
        assert!(r.scratch_bytes >= BATCH * (16 + 10) * size_of::<f32>());
    }
    // Occasional extra allocations come from the pool's job queue growing a block; the
    // typical batch allocates exactly one payload per request.
    let exact = steady
        .iter()
        .filter(|r| r.alloc_count == BATCH as u64 && r.alloc_bytes == payload)
        .count();
    assert!(
        exact * 10 >= steady.len() * 9,
        "{exact} of {} batches allocated exactly the payloads; first others: {:?}",
        steady.len(),
        steady
            .iter()
            .filter(|r| r.alloc_bytes != payload)
            .take(3)
            .collect::<Vec<_>>()
    );
    let snapshot = scheduler.metrics();
    let m = snapshot.model("m").unwrap();
    assert_eq!(m.batch_alloc_bytes.quantile(0.5), payload);
}
