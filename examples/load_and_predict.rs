//! Load a model from files, compile it for this CPU and predict a batch on two threads: the
//! three calls most programs need.
//!
//! `cargo run --release --example load_and_predict` (the bundled digits model).

use std::path::Path;

use densebatch::prelude::*;
use ndarray::Array2;

pub fn main() -> Result<(), Error> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits");

    // 1. load (model.json, a reference-harness folder or an .onnx file), 2. compile, 3. session.
    let session = Model::load(&path)?.compile()?.session(2)?;

    // A batch of 32 rows of 8×8 pixel intensities (0–16, as the digits were trained on).
    let x = Array2::from_shape_fn((32, session.input_width()), |(i, j)| {
        ((i * 7 + j * 3) % 17) as f32
    });
    let probabilities = session.predict(x.view())?;

    println!(
        "{} rows → {} classes each, row 0: {:.3}",
        probabilities.nrows(),
        probabilities.ncols(),
        probabilities.row(0)
    );
    assert_eq!(probabilities.dim(), (32, 10));
    for row in probabilities.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-5, "softmax rows sum to 1");
    }
    // The same sample alone gives the same bits as inside the batch.
    let alone = session.predict(x.slice(ndarray::s![17..18, ..]))?;
    assert_eq!(alone.row(0), probabilities.row(17));
    Ok(())
}
