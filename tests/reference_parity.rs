//! Every bundled model and the reference-harness check vectors, against float64 references.

mod common;

use std::path::Path;

use common::{argmax, max_row_relative_error, tensor_f32};
use densebatch::prelude::*;
use ndarray::{Array2, Ix2};

const TOLERANCE: f64 = 1e-5;

fn check_all_paths(model: &Model, x: &Array2<f32>, y_ref: &Array2<f32>) {
    let compiled = model.compile().unwrap();
    let fast = compiled.predict(x.view()).unwrap();
    let naive = model.predict_reference(x.view()).unwrap();
    // The fast kernels reproduce the naive loops exactly...
    assert_eq!(
        fast,
        naive,
        "{}: fast kernels differ from the reference loops",
        compiled.name()
    );
    // ...and both are within the tolerance of the float64 reference.
    let err = max_row_relative_error(fast.view(), y_ref.view());
    assert!(
        err <= TOLERANCE,
        "{}: relative error {err:e} > {TOLERANCE:e}",
        compiled.name()
    );
}

#[test]
fn digits_matches_float64_and_sklearn_on_every_held_out_sample() {
    let dir = Path::new("models/digits");
    let model = Model::load(dir.join("model.json")).unwrap();
    let test = dir.join("test.safetensors");
    let x = tensor_f32(&test, "x").into_dimensionality::<Ix2>().unwrap();
    let y_check = tensor_f32(&test, "y_check")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let labels = tensor_f32(&test, "labels");
    let sklearn = tensor_f32(&test, "sklearn_pred");
    check_all_paths(&model, &x, &y_check);

    let y = model.compile().unwrap().predict(x.view()).unwrap();
    let mut correct = 0;
    for (i, row) in y.outer_iter().enumerate() {
        let class = argmax(row);
        assert_eq!(
            class as f32, sklearn[i],
            "sample {i}: we say {class}, scikit-learn {}",
            sklearn[i]
        );
        correct += usize::from(class as f32 == labels[i]);
    }
    let accuracy = correct as f64 / y.nrows() as f64;
    assert!(accuracy > 0.95, "accuracy {accuracy}");
}

#[test]
fn tiny_mlp_matches_its_check_vectors() {
    let dir = Path::new("models/tiny-mlp");
    let model = Model::load(dir).unwrap();
    let check = dir.join("check.safetensors");
    let x = tensor_f32(&check, "x")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let y = tensor_f32(&check, "y")
        .into_dimensionality::<Ix2>()
        .unwrap();
    check_all_paths(&model, &x, &y);
}

/// The reference harness's three models in their own layout (manifest.json + .npy), when
/// generated under target/refbench/models (`.ci/run` does it; under `CI` they must be there).
#[test]
fn reference_harness_models_match_their_check_vectors() {
    let Some(root) = common::refbench_models("reference_harness_models_match_their_check_vectors")
    else {
        return;
    };
    for name in ["tiny-mlp", "mnist-mlp", "wide-mlp"] {
        let dir = root.join(name);
        let model = Model::load(&dir).unwrap();
        let x = common::read_npy_f32(&dir.join("x_check.npy"));
        let y = common::read_npy_f32(&dir.join("y_check.npy"));
        let x = x.into_dimensionality::<Ix2>().unwrap();
        let y = y.into_dimensionality::<Ix2>().unwrap();
        check_all_paths(&model, &x, &y);
    }
}
