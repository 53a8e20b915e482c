//! Accuracy gates of bf16, int8 and full int8, measured, not assumed: against our f32 on random
//! standard-normal rows of each reference model (SQNR, minimum row cosine, argmax agreement) and
//! on the digits model's held-out samples (labels changed).

mod common;

use std::path::Path;

use common::{argmax, tensor_f32};
use densebatch::prelude::*;
use densebatch::{OutputError, Precision};
use ndarray::{Array2, Ix2};
use ndarray_rand::RandomExt;
use ndarray_rand::rand::SeedableRng;
use ndarray_rand::rand::rngs::StdRng;
use ndarray_rand::rand_distr::StandardNormal;

/// `precision` against f32 on `rows` random rows.
fn error_against_f32(model: &Model, precision: Precision, rows: usize) -> OutputError {
    let mut rng = StdRng::seed_from_u64(7);
    let x: Array2<f32> =
        Array2::random_using((rows, model.spec().input_width), StandardNormal, &mut rng);
    let session = |p| {
        model
            .compile_with(&CompileOptions::default().precision(p))
            .unwrap()
            .session(2)
            .unwrap()
    };
    let want = session(Precision::F32).predict(x.view()).unwrap();
    let got = session(precision).predict(x.view()).unwrap();
    OutputError::between(want.view(), got.view())
}

#[test]
fn reference_models_meet_the_precision_gates() {
    let Some(root) = common::refbench_models("reference_models_meet_the_precision_gates") else {
        return;
    };
    // wide-mlp takes 50 MFLOP a row: 2000 rows keep the test short.
    // The int8 argmax gate is the 99 % where we meet it; mnist-mlp (98.9 %) and wide-mlp
    // (97.7 % of 1000 rows in the CLI, 96.9 % of these 2000; 1024 outputs) do not: their random
    // weights leave many rows with near-equal top outputs, and per-channel int8 flips those. ONNX
    // Runtime's int8 files scored 97.0–99.5 % on the same models (dynamic per-channel 98.5 / 97.0 %).
    // Full int8 (activations quantised per row too), from `densebatch inspect --precision
    // int8-full`: tiny-mlp 38.5 dB and 99.26 %, mnist-mlp 35.3 dB and 98.43 %, wide-mlp 33.8 dB
    // and 96.5 % (1000 rows).
    for (name, rows, int8_agreement, full_agreement) in [
        ("tiny-mlp", 10_000, 0.99, 0.985),
        ("mnist-mlp", 10_000, 0.985, 0.98),
        ("wide-mlp", 2_000, 0.965, 0.95),
    ] {
        let model = Model::load(root.join(name)).unwrap();
        let bf16 = error_against_f32(&model, Precision::Bf16, rows);
        assert!(bf16.sqnr_db >= 45.0, "{name} bf16: {bf16:?}");
        // Rows whose outputs are all near zero have the worst cosine (tiny-mlp: 0.9986).
        assert!(bf16.min_cosine >= 0.998, "{name} bf16: {bf16:?}");
        // wide-mlp: 99.2 % (1000 rows); the others 99.8 % and more.
        assert!(bf16.argmax_agreement >= 0.99, "{name} bf16: {bf16:?}");
        let int8 = error_against_f32(&model, Precision::Int8, rows);
        assert!(int8.sqnr_db >= 32.0, "{name} int8: {int8:?}");
        assert!(int8.min_cosine >= 0.98, "{name} int8: {int8:?}");
        assert!(
            int8.argmax_agreement >= int8_agreement,
            "{name} int8: {int8:?}"
        );
        assert!(int8.sqnr_db < bf16.sqnr_db, "{name}: int8 cannot beat bf16");
        let full = error_against_f32(&model, Precision::Int8Full, rows);
        assert!(full.sqnr_db >= 32.0, "{name} int8-full: {full:?}");
        assert!(full.min_cosine >= 0.97, "{name} int8-full: {full:?}");
        assert!(
            full.argmax_agreement >= full_agreement,
            "{name} int8-full: {full:?}"
        );
    }
}

#[test]
fn digits_accuracy_holds_in_bf16_and_within_one_sample_in_int8_and_full_int8() {
    let dir = Path::new("models/digits");
    let model = Model::load(dir.join("model.json")).unwrap();
    let test = dir.join("test.safetensors");
    let x = tensor_f32(&test, "x").into_dimensionality::<Ix2>().unwrap();
    let labels = tensor_f32(&test, "labels");
    let correct = |precision| {
        let y = model
            .compile_with(&CompileOptions::default().precision(precision))
            .unwrap()
            .predict(x.view())
            .unwrap();
        y.outer_iter()
            .zip(labels.iter())
            .filter(|(row, label)| argmax(row.view()) as f32 == **label)
            .count()
    };
    let f32_correct = correct(Precision::F32);
    assert!(f32_correct > 400, "{f32_correct}");
    assert_eq!(correct(Precision::Bf16), f32_correct);
    assert!(correct(Precision::Int8).abs_diff(f32_correct) <= 1);
    assert!(correct(Precision::Int8Full).abs_diff(f32_correct) <= 1);
}

#[test]
fn weight_bytes_follow_the_precision() {
    let model = Model::random(&[100, 64, 10], Activation::Relu, Activation::Identity, 1);
    let bytes = |p| {
        model
            .compile_with(
                &CompileOptions::default()
                    .kernel(KernelKind::Portable)
                    .precision(p),
            )
            .unwrap()
            .weight_bytes()
    };
    // Portable panels are 16 wide: 100 × 64 and 64 × 16 (10 padded) weights, 74 biases.
    let weights = 100 * 64 + 64 * 16;
    assert_eq!(bytes(Precision::F32), 4 * weights + 4 * 74);
    assert_eq!(bytes(Precision::Bf16), 2 * weights + 4 * 74);
    assert_eq!(bytes(Precision::Int8), weights + 4 * 74 + 4 * 74);
    // Full int8 adds each column's code sum; both reductions are already multiples of 4.
    assert_eq!(bytes(Precision::Int8Full), weights + 3 * 4 * 74);
}
