//! Per kernel: one dense layer (`predict_into` on a single-layer model, one thread) for the layer
//! shapes of the reference models and an awkward one. Throughput is in FLOPs, so criterion's
//! "Gelem/s" reads as **GFLOP/s**.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use densebatch::KernelKind;
use densebatch::prelude::*;
use ndarray::Array2;

/// (rows, k, n): batch × layer shape.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 784, 512),
    (8, 784, 512),
    (128, 784, 512),
    (512, 512, 512),
    (1, 4096, 4096),
    (32, 4096, 4096),
    (512, 16, 32),
    (100, 300, 257),
];

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel GFLOP/s (elements = FLOPs)");
    group.sample_size(20);
    for kernel in KernelKind::all_supported() {
        for &(rows, k, n) in SHAPES {
            let model = Model::random(&[k, n], Activation::Relu, Activation::Relu, 1);
            let compiled = model
                .compile(&CompileOptions {
                    kernel: Some(kernel),
                    non_finite_input: densebatch::NonFiniteInput::Propagate,
                    ..CompileOptions::default()
                })
                .expect("supported kernel");
            let mut workspace = compiled.new_workspace();
            let x = super::input(rows, k);
            let mut y = Array2::<f32>::zeros((rows, n));
            group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            group.bench_function(
                BenchmarkId::new(kernel.name(), format!("m{rows}_k{k}_n{n}")),
                |b| {
                    b.iter(|| {
                        compiled
                            .predict_into(&mut workspace, x.view(), y.view_mut())
                            .expect("valid shapes")
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
