//! Loading and compiling MODEL arguments: our format, a reference-harness folder, or an ONNX file.

use std::path::Path;

use anyhow::{Context, Result};
use densebatch::{CompileOptions, CompiledModel, Model};

/// Loads the model at `path`, importing it when it is an `.onnx` file.
pub fn load_model(path: &Path) -> Result<Model> {
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let model = if is_onnx {
        densebatch::import_onnx(path)
    } else {
        Model::load(path)
    };
    model.context("cannot load the model")
}

/// Compiles `model` for this CPU with the default options.
pub fn compile(model: &Model) -> Result<CompiledModel> {
    Ok(model.compile(&CompileOptions::default())?)
}
