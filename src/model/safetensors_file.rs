//! Our own model format: a JSON spec plus a safetensors weights file beside it.

use std::fs;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::{LayerWeights, Model, ModelSpec, bias_name, weight_name};
use crate::error::{Error, Origin, Result};

pub(crate) fn load(spec_path: &Path) -> Result<Model> {
    let origin = Origin::file(spec_path);
    let text = fs::read_to_string(spec_path).map_err(|e| Error::io(spec_path, e))?;
    let spec: ModelSpec =
        serde_json::from_str(&text).map_err(|e| Error::format(&origin, e.to_string()))?;
    spec.validate(&origin)?;

    let weights_path = spec_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&spec.weights);
    let worigin = Origin::file(&weights_path);
    // Refuse to allocate what the file cannot back: check the size the spec implies against the
    // file's length before reading anything.
    let file_len = fs::metadata(&weights_path)
        .map_err(|e| Error::io(&weights_path, e))?
        .len();
    let mut needed = 0u64;
    for (i, l) in spec.layers.iter().enumerate() {
        needed += 4 * (l.input as u64 * l.output as u64 + if l.bias { l.output as u64 } else { 0 });
        if needed > file_len {
            return Err(Error::TooLarge {
                origin: worigin,
                layer: i,
                what: "the weights up to this layer",
                needed,
                limit: file_len,
            });
        }
    }
    let bytes = fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(&worigin, format!("invalid safetensors file: {e}")))?;

    let mut layers = Vec::with_capacity(spec.layers.len());
    for (i, ls) in spec.layers.iter().enumerate() {
        let weight = read_tensor(
            &tensors,
            &worigin,
            i,
            &weight_name(i),
            &[ls.input, ls.output],
        )?;
        let weight = Array2::from_shape_vec((ls.input, ls.output), weight)
            .expect("shape checked against the tensor");
        let bias = match (ls.bias, tensors.tensor(&bias_name(i)).is_ok()) {
            (true, _) => Some(Array1::from(read_tensor(
                &tensors,
                &worigin,
                i,
                &bias_name(i),
                &[ls.output],
            )?)),
            (false, true) => {
                return Err(Error::spec(
                    &worigin,
                    i,
                    format!(
                        "the file holds `{}` but the spec says the layer has no bias",
                        bias_name(i)
                    ),
                ));
            }
            (false, false) => None,
        };
        layers.push(LayerWeights { weight, bias });
    }
    Model::with_origin(spec, layers, &worigin)
}

fn read_tensor(
    tensors: &SafeTensors<'_>,
    origin: &Origin,
    layer: usize,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    let view = tensors.tensor(name).map_err(|_| Error::MissingTensor {
        origin: origin.clone(),
        layer,
        tensor: name.to_string(),
    })?;
    if view.dtype() != Dtype::F32 {
        return Err(Error::DType {
            origin: origin.clone(),
            layer,
            tensor: name.to_string(),
            dtype: format!("{:?}", view.dtype()),
        });
    }
    if view.shape() != shape {
        return Err(Error::TensorShape {
            origin: origin.clone(),
            layer,
            tensor: name.to_string(),
            expected: shape.to_vec(),
            got: view.shape().to_vec(),
        });
    }
    Ok(f32s_from_le_bytes(view.data()))
}

pub(crate) fn f32s_from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn le_bytes(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

pub(super) fn save(model: &Model, spec_path: &Path) -> Result<()> {
    let spec = model.spec();
    let origin = Origin::file(spec_path);
    let json = serde_json::to_string_pretty(spec).expect("a spec always serialises");
    let mut buffers = Vec::new();
    for (i, lw) in model.layers().iter().enumerate() {
        let shape = lw.weight.shape().to_vec();
        buffers.push((weight_name(i), shape, le_bytes(lw.weight.iter().copied())));
        if let Some(b) = &lw.bias {
            buffers.push((bias_name(i), vec![b.len()], le_bytes(b.iter().copied())));
        }
    }
    let views = buffers
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), data)
                .map_err(|e| Error::format(&origin, e.to_string()))?;
            Ok((name.as_str(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, None).map_err(|e| Error::format(&origin, e.to_string()))?;
    let weights_path = spec_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&spec.weights);
    fs::write(&weights_path, bytes).map_err(|e| Error::io(&weights_path, e))?;
    fs::write(spec_path, json + "\n").map_err(|e| Error::io(spec_path, e))
}
