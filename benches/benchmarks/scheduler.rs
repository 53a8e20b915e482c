//! What the scheduler adds to one request: a submit → reply round trip for a single row,
//! against a direct `predict_batch` of that row, on a small model (so the difference is the
//! scheduler, not the kernels). The open-loop and full-model numbers come from
//! `examples/serve_bench.rs`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use densebatch::prelude::*;
use densebatch::{ModelConfig, Request, Scheduler, SchedulerConfig};
use ndarray::Array2;

fn round_trip(c: &mut Criterion) {
    let model = Model::random(&[16, 32, 4], Activation::Relu, Activation::Identity, 5);
    let compiled = Arc::new(model.compile().unwrap());
    let x = Array2::from_shape_fn((1, 16), |(_, j)| j as f32 * 0.1);
    let mut group = c.benchmark_group("scheduler_one_row");
    group.measurement_time(Duration::from_secs(3));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut workspaces = compiled.new_workspaces(2);
    let mut y = Array2::zeros((1, 4));
    group.bench_function("direct_predict_batch", |b| {
        b.iter(|| {
            predict_batch(&*compiled, &pool, &mut workspaces, x.view(), y.view_mut()).unwrap()
        })
    });

    for inline in [false, true] {
        let scheduler = Scheduler::new(
            SchedulerConfig::default()
                .threads(2)
                .inline_small_batches(inline),
        )
        .unwrap();
        let config = ModelConfig::default()
            .max_batch_size(1)
            .max_wait(Duration::from_secs(1));
        scheduler.load("m", compiled.clone(), config).unwrap();
        let name = if inline {
            "scheduler_inline_small_batches"
        } else {
            "scheduler_pool_only"
        };
        let request = Request::new(x.clone());
        group.bench_function(name, |b| {
            b.iter(|| {
                scheduler
                    .try_submit("m", request.clone())
                    .unwrap()
                    .wait()
                    .unwrap()
            })
        });
        scheduler.shutdown();
    }
    group.finish();
}

criterion_group!(benches, round_trip);
