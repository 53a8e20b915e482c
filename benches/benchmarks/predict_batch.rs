//! Per model × batch × threads: `predict_batch` on an explicit pool, models with the reference
//! models' shapes (random weights: the work, not the values, matters). Two groups: throughput in
//! samples (criterion's "elem/s" = **samples/s**) and in FLOPs ("Gelem/s" = **GFLOP/s**).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use densebatch::prelude::*;
use ndarray::Array2;

struct Shape {
    name: &'static str,
    widths: &'static [usize],
    output: Activation,
    batches: &'static [usize],
}

const MODELS: &[Shape] = &[
    Shape {
        name: "tiny-mlp",
        widths: &[16, 32, 4],
        output: Activation::Identity,
        batches: &[1, 8, 32, 128, 512, 2048],
    },
    Shape {
        name: "mnist-mlp",
        widths: &[784, 512, 512, 10],
        output: Activation::Softmax,
        batches: &[1, 8, 32, 128, 512, 2048],
    },
    Shape {
        name: "wide-mlp",
        widths: &[1024, 4096, 4096, 1024],
        output: Activation::Identity,
        batches: &[1, 8, 32, 128],
    },
    Shape {
        name: "awkward-300-257-129-7",
        widths: &[300, 257, 129, 7],
        output: Activation::Softmax,
        batches: &[1, 8, 128, 2048],
    },
];

fn run(c: &mut Criterion, unit: &str, per_sample: impl Fn(&CompiledModel) -> u64) {
    let mut group = c.benchmark_group(format!("predict_batch {unit}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for shape in MODELS {
        let model = Model::random(shape.widths, Activation::Relu, shape.output, 1);
        let compiled = model.compile().expect("compiles");
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut workspaces = compiled.new_workspaces(threads);
            for &batch in shape.batches {
                let x = super::input(batch, compiled.input_width());
                let mut y = Array2::<f32>::zeros((batch, compiled.output_width()));
                group.throughput(Throughput::Elements(batch as u64 * per_sample(&compiled)));
                group.bench_function(
                    BenchmarkId::new(shape.name, format!("b{batch}_t{threads}")),
                    |b| {
                        b.iter(|| {
                            predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())
                                .expect("valid shapes")
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

fn samples(c: &mut Criterion) {
    run(c, "samples/s (elements = samples)", |_| 1);
}

fn gflops(c: &mut Criterion) {
    run(c, "GFLOP/s (elements = FLOPs)", |m| m.flops_per_sample());
}

criterion_group!(benches, samples, gflops);
