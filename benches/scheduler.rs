//! Standalone entry for the scheduler benchmarks (`cargo bench --bench scheduler`).

#[path = "benchmarks/scheduler.rs"]
mod scheduler;

criterion::criterion_main!(scheduler::benches);
