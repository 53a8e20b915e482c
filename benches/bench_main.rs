//! Criterion benches: `cargo bench --bench bench_main` (filter with `-- NAME`). Each module is one
//! group of benchmarks; setup (model, compile, pool, buffers) happens outside the timed loop.

use criterion::criterion_main;

mod benchmarks;

criterion_main! {
    benchmarks::kernels::benches,
    benchmarks::predict_batch::benches,
    benchmarks::scheduler::benches,
}
