//! Importing ONNX graphs of dense layers.
//!
//! The importer accepts one chain of `MatMul`/`Gemm` (with `transA`, `transB`, `alpha`, `beta`),
//! `Add` (bias), `Relu`, `Sigmoid`, `Tanh`, `Gelu`, `Softmax` and `Flatten` nodes, with weights as
//! float initializers, and folds each run of "matrix product, biases, one activation" into one
//! dense layer. Nodes that change nothing for a float32 `[batch, features]` value (`Identity`,
//! `Cast` to float, `Reshape` to `[-1, features]`, as exporters such as skl2onnx emit) are passed
//! over. Anything else is refused with an error naming the node and its op.

mod convert;
mod proto;

use std::path::Path;

use prost::Message;

use crate::error::{Error, Origin, Result};
use crate::model::Model;

/// Reads an ONNX file and converts it into a [`Model`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] when it is not ONNX or its graph
/// has no single input and output; [`Error::UnsupportedOnnxOp`] for an operator outside the
/// supported set; [`Error::OnnxNode`] for a supported op used in a way a dense layer cannot
/// express (a weight that is not a float initializer, `transA = 1`, a second activation…); and the
/// validation errors of [`Model::new`].
pub fn import_onnx(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    import(&bytes, &Origin::file(path), &stem)
}

/// Converts the bytes of an ONNX model into a [`Model`]. See [`import_onnx`].
///
/// # Errors
/// As [`import_onnx`], without [`Error::Io`].
///
/// # Examples
/// ```
/// let err = densebatch::import_onnx_bytes(b"not protobuf").unwrap_err();
/// assert!(err.to_string().contains("not a valid ONNX file"), "{err}");
/// ```
pub fn import_onnx_bytes(bytes: &[u8]) -> Result<Model> {
    import(bytes, &Origin::default(), "onnx-model")
}

fn import(bytes: &[u8], origin: &Origin, fallback_name: &str) -> Result<Model> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| Error::format(origin, format!("not a valid ONNX file: {e}")))?;
    convert::convert(&model, origin, fallback_name)
}

#[cfg(test)]
mod tests;
