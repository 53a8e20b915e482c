//! A sample's output bits do not depend on the batch size, its position, the thread count, the
//! path taken (inline or forked) or the kernel.

mod common;

use common::input;
use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::{Array2, s};
use proptest::prelude::*;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn run(m: &CompiledModel, threads: usize, x: ndarray::ArrayView2<f32>) -> Array2<f32> {
    let pool = pool(threads);
    let mut ws = m.new_workspaces(threads);
    let mut y = Array2::from_elem((x.nrows(), m.output_width()), f32::NAN);
    predict_batch(m, &pool, &mut ws, x, y.view_mut()).unwrap();
    y
}

fn assert_bits_eq(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>, what: &str) {
    for (j, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: column {j}: {x} vs {y}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Awkward widths, any batch size, any position, 1–4 threads, forced parallel splits.
    #[test]
    fn sample_bits_independent_of_batch_position_and_threads(
        widths in prop::collection::vec(1usize..70, 2..5),
        batch in 1usize..300,
        pos_frac in 0.0f64..1.0,
        threads in 1usize..=4,
        block_rows in prop::option::of(1usize..40),
        seed in 0u64..1000,
    ) {
        let model = Model::random(&widths, Activation::Gelu, Activation::Softmax, seed);
        let mut options = CompileOptions::default().tuning(Tuning::default().parallel_min_flops(1));
        if let Some(rows) = block_rows {
            options = options.block_rows(rows);
        }
        let m = model.compile_with(&options).unwrap();
        let x = input(batch, widths[0], seed);
        let pos = ((batch - 1) as f64 * pos_frac) as usize;
        let alone = m.predict(x.slice(s![pos..pos + 1, ..])).unwrap();
        let together = run(&m, threads, x.view());
        assert_bits_eq(together.row(pos), alone.row(0), "batched vs alone");
        prop_assert_eq!(together, model.predict_reference(x.view()).unwrap());
    }
}

#[test]
fn large_batches_and_every_thread_count_agree_bit_for_bit() {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Relu,
        Activation::Softmax,
        5,
    );
    let x = input(4096, 300, 9);
    let reference = model
        .compile()
        .unwrap()
        .predict(x.slice(s![..1, ..]))
        .unwrap();
    for kernel in common::kernels_under_test() {
        let m = model
            .compile_with(&CompileOptions::default().kernel(kernel))
            .unwrap();
        let y1 = run(&m, 1, x.view());
        assert_bits_eq(y1.row(0), reference.row(0), kernel.name());
        for threads in 2..=4 {
            assert_eq!(
                run(&m, threads, x.view()),
                y1,
                "{kernel:?} with {threads} threads"
            );
        }
        for batch in [1, 2, 15, 16, 17, 255, 1000] {
            let yb = run(&m, 2, x.slice(s![..batch, ..]));
            assert_eq!(yb, y1.slice(s![..batch, ..]), "{kernel:?} batch {batch}");
        }
    }
}
