//! [`Model::load`]: which reader a path needs, by what the path holds.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{Model, load_refbench, load_safetensors};
use crate::onnx::import_onnx;

impl Model {
    /// Loads a model from any format densebatch reads. `path` may be
    /// - a spec file (`model.json`) with its safetensors weights beside it,
    /// - an ONNX file (`*.onnx`, a graph of MatMul/Gemm, Add and activations, see
    ///   [`crate::import_onnx`]),
    /// - a folder holding `model.json`, else a reference-harness layout (`manifest.json` +
    ///   `W{i}.npy` / `b{i}.npy`), else exactly one `.onnx` file.
    ///
    /// Everything is validated; errors name the file and the layer.
    ///
    /// # Examples
    /// ```
    /// use densebatch::Model;
    /// let dir = std::env::temp_dir().join(format!("densebatch-load-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let model = Model::random(&[4, 8, 2], densebatch::Activation::Relu,
    ///                           densebatch::Activation::Softmax, 3);
    /// model.save(dir.join("model.json"))?;
    /// // The spec file or its folder.
    /// assert_eq!(Model::load(dir.join("model.json"))?, model);
    /// assert_eq!(Model::load(&dir)?, model);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), densebatch::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] for a missing file, [`Error::Format`] for a malformed or truncated one (or a
    /// folder with nothing to load), [`Error::UnsupportedOnnxOp`] and [`Error::OnnxNode`] for an
    /// ONNX graph we cannot run, and the validation errors of [`Model::new`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_dir() {
            return if is_onnx(path) {
                import_onnx(path)
            } else {
                load_safetensors(path)
            };
        }
        let spec = path.join("model.json");
        if spec.is_file() {
            return load_safetensors(&spec);
        }
        if path.join("manifest.json").is_file() {
            return load_refbench(path);
        }
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        let mut onnx_files = Vec::new();
        for entry in entries {
            let file = entry.map_err(|e| Error::io(path, e))?.path();
            if file.is_file() && is_onnx(&file) {
                onnx_files.push(file);
            }
        }
        match onnx_files.as_slice() {
            [file] => import_onnx(file),
            [] => Err(Error::format(
                &crate::Origin::file(path),
                "folder holds no model.json, manifest.json or .onnx file",
            )),
            _ => Err(Error::format(
                &crate::Origin::file(path),
                format!(
                    "folder holds {} .onnx files; name the one to load",
                    onnx_files.len()
                ),
            )),
        }
    }
}

fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}
