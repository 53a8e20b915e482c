//! Loading and compiling MODEL arguments: our format, a reference-harness folder, or an ONNX file.

use std::path::Path;

use anyhow::{Context, Result};
use densebatch::{CompileOptions, CompiledModel, Model, Precision};

/// Loads the model at `path` (any format `Model::load` reads).
pub fn load_model(path: &Path) -> Result<Model> {
    Model::load(path).context("cannot load the model")
}

/// Compiles `model` for this CPU with the default options and its weights in `precision`.
pub fn compile(model: &Model, precision: Precision) -> Result<CompiledModel> {
    Ok(model.compile_with(&CompileOptions::default().precision(precision))?)
}
