//! Per kernel: one dense layer (`predict_into` on a single-layer model, one thread) for the layer
//! shapes of the reference models and an awkward one, then one shape under every activation (the
//! epilogue's cost is the gap to `identity`). Throughput is in FLOPs of the matrix product, so
//! criterion's "Gelem/s" reads as **GFLOP/s**.

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

/// One layer `rows × k → n` with `activation`, timed with `kernel`.
fn bench_layer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    kernel: KernelKind,
    (rows, k, n): (usize, usize, usize),
    activation: Activation,
    id: BenchmarkId,
) {
    let model = Model::random(&[k, n], activation, activation, 1);
    let compiled = model
        .compile_with(
            &CompileOptions::default()
                .kernel(kernel)
                .non_finite_input(densebatch::NonFiniteInput::Propagate),
        )
        .expect("supported kernel");
    let mut workspace = compiled.new_workspace();
    let x = super::input(rows, k);
    let mut y = Array2::<f32>::zeros((rows, n));
    group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
    group.bench_function(id, |b| {
        b.iter(|| {
            compiled
                .predict_into(&mut workspace, x.view(), y.view_mut())
                .expect("valid shapes")
        })
    });
}

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel GFLOP/s (elements = FLOPs)");
    group.sample_size(20);
    for kernel in KernelKind::all_supported() {
        for &(rows, k, n) in SHAPES {
            let id = BenchmarkId::new(kernel.name(), format!("m{rows}_k{k}_n{n}"));
            bench_layer(&mut group, kernel, (rows, k, n), Activation::Relu, id);
        }
    }
    group.finish();
}

fn activations(c: &mut Criterion) {
    let mut group = c.benchmark_group("activation epilogue, m128_k512_n512 (elements = FLOPs)");
    group.sample_size(20);
    for kernel in KernelKind::all_supported() {
        for activation in Activation::ALL {
            let id = BenchmarkId::new(kernel.name(), activation.name());
            bench_layer(&mut group, kernel, (128, 512, 512), activation, id);
        }
    }
    group.finish();
}

criterion_group!(benches, kernels, activations);
