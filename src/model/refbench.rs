//! The reference-harness layout: `manifest.json` plus `W{i}.npy` (`[in, out]`) and `b{i}.npy`.
//! Loading it lets the same model run in this engine, ONNX Runtime and numpy.

use std::fs;
use std::path::Path;

use ndarray::{Ix1, Ix2};
use serde::Deserialize;

use super::{LayerSpec, LayerWeights, Model, ModelSpec, read_npy_f32};
use crate::Activation;
use crate::error::{Error, Origin, Result};

#[derive(Deserialize)]
struct Manifest {
    name: String,
    widths: Vec<usize>,
    layers: Vec<ManifestLayer>,
}

#[derive(Deserialize)]
struct ManifestLayer {
    #[serde(rename = "W")]
    weight: String,
    b: String,
    #[serde(rename = "in")]
    input: usize,
    #[serde(rename = "out")]
    output: usize,
    activation: Activation,
}

pub(crate) fn load(dir: &Path) -> Result<Model> {
    let manifest_path = dir.join("manifest.json");
    let origin = Origin::file(&manifest_path);
    let text = fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Error::format(&origin, e.to_string()))?;
    let spec = ModelSpec {
        name: manifest.name,
        version: String::new(),
        input_width: manifest.widths.first().copied().unwrap_or(0),
        weights: String::new(),
        layers: manifest
            .layers
            .iter()
            .map(|l| LayerSpec {
                input: l.input,
                output: l.output,
                bias: true,
                activation: l.activation,
            })
            .collect(),
    };
    spec.validate(&origin)?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (i, l) in manifest.layers.iter().enumerate() {
        let wpath = dir.join(&l.weight);
        let bpath = dir.join(&l.b);
        let shape_err = |path: &Path, expected: Vec<usize>, got: &[usize]| Error::TensorShape {
            origin: Origin::file(path),
            layer: i,
            tensor: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            expected,
            got: got.to_vec(),
        };
        let w = read_npy_f32(&wpath)?;
        if w.shape() != [l.input, l.output] {
            return Err(shape_err(&wpath, vec![l.input, l.output], w.shape()));
        }
        let w = w.into_dimensionality::<Ix2>().expect("shape checked");
        let b = read_npy_f32(&bpath)?;
        let got = b.shape().to_vec();
        let b = b
            .into_dimensionality::<Ix1>()
            .map_err(|_| shape_err(&bpath, vec![l.output], &got))?;
        layers.push(LayerWeights {
            weight: w,
            bias: Some(b),
        });
    }
    Model::with_origin(spec, layers, &origin)
}
