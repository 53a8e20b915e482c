//! Predict with an ONNX model exported by a real exporter (scikit-learn's `MLPRegressor` through
//! skl2onnx, trained on the bundled diabetes data) and check it against ONNX Runtime's output for
//! the same inputs, saved beside it.
//!
//! `cargo run --release --example onnx_predict`

use std::path::Path;

use densebatch::prelude::*;

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");

    let session = Model::load(fixtures.join("sklearn_mlp.onnx"))?
        .compile()?
        .session(2)?;
    let x = read_npy(&fixtures.join("sklearn_mlp.x.npy"))?;
    let y = session.predict(x.view())?;

    let expected = read_npy(&fixtures.join("sklearn_mlp.y_onnxruntime.npy"))?;
    // Relative to the largest output, as the outputs are regression targets in the hundreds.
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max_error = y
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0f32, f32::max);
    println!(
        "{} rows × {} outputs, largest relative difference from ONNX Runtime {max_error:.2e}",
        y.nrows(),
        y.ncols()
    );
    assert_eq!(y.dim(), expected.dim());
    assert!(max_error <= 1e-5, "agrees with ONNX Runtime");
    Ok(())
}

/// A float32 `.npy` file as a 2-D array (through the npyz crate).
fn read_npy(path: &Path) -> Result<ndarray::Array2<f32>, Box<dyn std::error::Error>> {
    let file = npyz::NpyFile::new(std::fs::File::open(path)?)?;
    let shape = file.shape().to_vec();
    let [rows, cols] = shape[..] else {
        return Err(format!("{}: expected 2 dimensions, got {shape:?}", path.display()).into());
    };
    Ok(ndarray::Array2::from_shape_vec(
        (rows as usize, cols as usize),
        file.into_vec::<f32>()?,
    )?)
}
