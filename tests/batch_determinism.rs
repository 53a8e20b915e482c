//! A sample's output bits must not depend on the batch it arrives in: not on the batch size, its
//! position in the batch, the thread count, or which path (row split, column split, inline) runs
//! it. Checked bit for bit against the naive reference on a model whose widths are not multiples
//! of any panel width.

mod common;

use anyhow::Result;
use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::{Array2, s};

fn input(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let h = (i * 7919 + j * 104_729) % 2003;
        (h as f32 / 1001.0 - 1.0) * if h % 3 == 0 { 3.0 } else { 0.7 }
    })
}

fn pools() -> Vec<rayon::ThreadPool> {
    (1..=4)
        .map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect()
}

/// Every batch `x[start..start + len]` for the given lengths, on 1–4 threads, must reproduce the
/// reference rows bit for bit.
fn check_batches(
    compiled: &CompiledModel,
    reference: &Array2<f32>,
    x: &Array2<f32>,
    lens: &[usize],
) {
    let pools = pools();
    let total = x.nrows();
    for pool in &pools {
        let mut workspaces = compiled.new_workspaces(pool.current_num_threads());
        for &len in lens {
            // Vary the position too: batches start at different rows.
            let start = (len * 31) % (total - len + 1);
            let xb = x.slice(s![start..start + len, ..]);
            let mut y = Array2::from_elem((len, compiled.output_width()), f32::NAN);
            predict_batch(compiled, pool, &mut workspaces, xb, y.view_mut()).unwrap();
            for r in 0..len {
                for c in 0..y.ncols() {
                    let (got, want) = (y[[r, c]], reference[[start + r, c]]);
                    assert!(
                        got.to_bits() == want.to_bits(),
                        "threads={} len={len} start={start} row={r} col={c}: {got} vs reference {want}",
                        pool.current_num_threads()
                    );
                }
            }
        }
    }
}

fn lens() -> Vec<usize> {
    if common::under_memcheck() {
        // Every tile height (1–8 rows), both sides of a 13-row block and of 8 rows per thread on
        // 1–4 threads, and of the 64-row and 256-row blocks.
        return vec![
            1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 16, 17, 24, 25, 27, 32, 33, 64, 65, 257,
        ];
    }
    let mut lens: Vec<usize> = (1..=40).collect();
    lens.extend([
        47, 48, 49, 63, 64, 65, 97, 127, 128, 129, 200, 255, 256, 257, 300,
    ]);
    lens
}

#[test]
fn awkward_widths_are_bit_identical_on_every_path() -> Result<()> {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Relu,
        Activation::Softmax,
        7,
    );
    let x = input(300, 300);
    let reference = model.predict_reference(x.view())?;
    for kernel in common::kernels_under_test() {
        let options = [
            // The defaults: whatever paths the tuned thresholds pick.
            CompileOptions::default().kernel(kernel),
            // Every split as eager as possible, and blocks smaller than most batches: up to 8
            // rows per thread split by columns (several blocks from 14 rows), larger by rows.
            CompileOptions::default()
                .kernel(kernel)
                .block_rows(13)
                .tuning(
                    Tuning::default()
                        .parallel_min_flops(1)
                        .split_min_flops(1)
                        .column_split_rows_per_thread(8)
                        .prefetch_weights(true),
                ),
        ];
        for option in &options {
            let compiled = model.compile_with(option)?;
            check_batches(&compiled, &reference, &x, &lens());
        }
    }
    Ok(())
}

#[test]
fn hidden_gelu_and_identity_output_are_bit_identical() -> Result<()> {
    let model = Model::random(&[33, 71, 48, 5], Activation::Gelu, Activation::Identity, 3);
    let x = input(120, 33);
    let reference = model.predict_reference(x.view())?;
    let compiled = model.compile_with(
        &CompileOptions::default().tuning(
            Tuning::default()
                .split_min_flops(1)
                .parallel_min_flops(1)
                .column_split_rows_per_thread(4),
        ),
    )?;
    check_batches(&compiled, &reference, &x, &[1, 2, 3, 5, 8, 16, 17, 64, 120]);
    Ok(())
}

#[test]
fn weights_larger_than_a_cache_share_are_bit_identical() -> Result<()> {
    // 1100 × 2100 + 2100 × 9 floats ≈ 9.3 MB: past the streamed-weights threshold, so batches
    // up to 64 rows per thread are split by columns and larger ones by rows in 256-row blocks.
    let model = Model::random(&[1100, 2100, 9], Activation::Tanh, Activation::Softmax, 5);
    let x = input(300, 1100);
    let reference = model.predict_reference(x.view())?;
    let compiled = model.compile()?;
    let lens: &[usize] = if common::under_memcheck() {
        &[1, 7, 64, 65, 257]
    } else {
        &[1, 7, 17, 63, 64, 127, 128, 129, 255, 256, 257, 300]
    };
    check_batches(&compiled, &reference, &x, lens);
    Ok(())
}

#[test]
fn weights_in_huge_pages_give_the_reference_bits() -> Result<()> {
    // 700 × 800 weights are 2.2 MB, more than one 2 MiB huge page.
    let model = Model::random(&[700, 800, 10], Activation::Relu, Activation::Softmax, 11);
    let x = input(70, 700);
    let reference = model.predict_reference(x.view())?;
    for kernel in common::kernels_under_test() {
        let compiled = model.compile_with(
            &CompileOptions::default().kernel(kernel).tuning(
                Tuning::default()
                    .huge_pages(true)
                    .column_split_rows_per_thread(4)
                    .split_min_flops(1),
            ),
        )?;
        check_batches(&compiled, &reference, &x, &[1, 3, 8, 9, 33, 70]);
    }
    Ok(())
}

#[test]
fn every_precision_is_bit_identical_on_every_kernel_and_path() -> Result<()> {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Relu,
        Activation::Softmax,
        13,
    );
    let x = input(300, 300);
    for precision in [Precision::Bf16, Precision::Int8, Precision::Int8Full] {
        let reference = model.predict_reference_with(x.view(), precision)?;
        // Not the f32 bits: the precision changes the result, by a little.
        let f32_reference = model.predict_reference(x.view())?;
        assert_ne!(reference, f32_reference, "{precision}");
        assert!(
            (&reference - &f32_reference).iter().all(|d| d.abs() < 0.05),
            "{precision}"
        );
        for kernel in common::kernels_under_test() {
            for option in [
                CompileOptions::default().kernel(kernel),
                CompileOptions::default()
                    .kernel(kernel)
                    .block_rows(13)
                    .tuning(
                        Tuning::default()
                            .parallel_min_flops(1)
                            .split_min_flops(1)
                            .column_split_rows_per_thread(8)
                            .prefetch_weights(true),
                    ),
            ] {
                let compiled = model.compile_with(&option.precision(precision))?;
                assert_eq!(compiled.precision(), precision);
                check_batches(&compiled, &reference, &x, &lens());
            }
        }
    }
    Ok(())
}

/// Dynamic int8 schemes that quantise activations with one scale per batch give a row a result
/// that depends on its batch-mates; int8 weights with f32 activations must not, nor full int8,
/// which quantises each row on its own.
#[test]
fn an_int8_row_does_not_depend_on_its_batch_mates() -> Result<()> {
    let model = Model::random(&[64, 96, 10], Activation::Relu, Activation::Identity, 21);
    for precision in [Precision::Int8, Precision::Int8Full] {
        let compiled = model.compile_with(&CompileOptions::default().precision(precision))?;
        let row = input(1, 64);
        let alone = compiled.predict(row.view())?;
        for scale in [1e-3f32, 1.0, 1e3] {
            for mates in [1, 7, 40] {
                let mut batch = input(mates + 1, 64).mapv(|v| v * scale);
                batch.row_mut(mates / 2).assign(&row.row(0));
                let y = compiled.predict(batch.view())?;
                let got = y.row(mates / 2);
                assert!(
                    got.iter()
                        .zip(alone.row(0))
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{precision}: batch-mates ×{scale}, {mates} of them: {got} vs alone {}",
                    alone.row(0)
                );
            }
        }
    }
    Ok(())
}

#[test]
fn full_int8_refuses_reductions_it_cannot_sum_exactly() {
    let limit = densebatch::MAX_INT8_FULL_K;
    let full = CompileOptions::default().precision(Precision::Int8Full);
    let too_wide = Model::random(&[limit + 1, 2], Activation::Relu, Activation::Identity, 1);
    let err = too_wide.compile_with(&full).unwrap_err();
    assert!(
        matches!(err, densebatch::Error::PrecisionLimit { layer: 0, inputs, limit: l, .. } if inputs == limit + 1 && l == limit),
        "{err}"
    );
    assert!(too_wide.compile_with(&CompileOptions::default()).is_ok());
    let widest = Model::random(&[limit, 2], Activation::Relu, Activation::Identity, 1);
    let x = input(3, limit).mapv(|v| v.signum() * 100.0);
    let compiled = widest.compile_with(&full).unwrap();
    assert_eq!(
        compiled.predict(x.view()).unwrap(),
        widest
            .predict_reference_with(x.view(), Precision::Int8Full)
            .unwrap()
    );
}
