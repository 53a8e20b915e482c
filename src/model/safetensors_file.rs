//! Our own model format: a JSON spec plus a safetensors weights file beside it. The file loader
//! and [`Model::from_bytes`] share every check: the loader only reads the two files' bytes (after
//! the same size precheck against the file's length) and hands them to the same parsers.

use std::fs;
use std::path::Path;

use ndarray::{Array1, Array2};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::{LayerWeights, Model, ModelSpec, bias_name, weight_name};
use crate::error::{Error, Origin, Result};

pub(crate) fn load(spec_path: &Path) -> Result<Model> {
    let origin = Origin::file(spec_path);
    let text = fs::read(spec_path).map_err(|e| Error::io(spec_path, e))?;
    let spec = parse_spec(&text, &origin)?;

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
    check_weights_len(&spec, file_len, &worigin)?;
    let bytes = fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
    model_from_safetensors(spec, &bytes, &worigin)
}

/// [`Model::from_bytes`]: the loader's checks, on bytes instead of files.
pub(super) fn from_bytes(spec_json: &[u8], weights: &[u8]) -> Result<Model> {
    let origin = Origin::default();
    let spec = parse_spec(spec_json, &origin)?;
    check_weights_len(&spec, weights.len() as u64, &origin)?;
    model_from_safetensors(spec, weights, &origin)
}

/// Parses and validates a spec file's bytes.
fn parse_spec(json: &[u8], origin: &Origin) -> Result<ModelSpec> {
    let spec: ModelSpec =
        serde_json::from_slice(json).map_err(|e| Error::format(origin, e.to_string()))?;
    spec.validate(origin)?;
    Ok(spec)
}

/// Refuses weights of `len` bytes that cannot hold what the (validated) spec implies, naming the
/// first layer that does not fit, before anything is allocated.
fn check_weights_len(spec: &ModelSpec, len: u64, worigin: &Origin) -> Result<()> {
    let mut needed = 0u64;
    for (i, l) in spec.layers.iter().enumerate() {
        // validate() bounds each layer to 2^31 weights, so this cannot overflow for any spec
        // short enough to parse; saturate anyway so a lying spec can only be refused.
        let layer =
            4 * (l.input as u64 * l.output as u64 + if l.bias { l.output as u64 } else { 0 });
        needed = needed.saturating_add(layer);
        if needed > len {
            return Err(Error::TooLarge {
                origin: worigin.clone(),
                layer: i,
                what: "the weights up to this layer",
                needed,
                limit: len,
            });
        }
    }
    Ok(())
}

/// Reads the weights the (validated) spec names from a safetensors file's bytes.
fn model_from_safetensors(spec: ModelSpec, bytes: &[u8], worigin: &Origin) -> Result<Model> {
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(worigin, format!("invalid safetensors file: {e}")))?;
    let mut layers = Vec::with_capacity(spec.layers.len());
    for (i, ls) in spec.layers.iter().enumerate() {
        let weight = read_tensor(
            &tensors,
            worigin,
            i,
            &weight_name(i),
            &[ls.input, ls.output],
        )?;
        let weight = Array2::from_shape_vec((ls.input, ls.output), weight)
            .expect("shape checked against the tensor");
        let bias = match (ls.bias, tensors.tensor(&bias_name(i)).is_ok()) {
            (true, _) => Some(Array1::from(read_tensor(
                &tensors,
                worigin,
                i,
                &bias_name(i),
                &[ls.output],
            )?)),
            (false, true) => {
                return Err(Error::spec(
                    worigin,
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
    Model::with_origin(spec, layers, worigin)
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

/// [`Model::to_bytes`]: the spec as pretty JSON and the weights as a safetensors file.
pub(super) fn to_bytes(model: &Model) -> (Vec<u8>, Vec<u8>) {
    let spec = model.spec();
    let mut json = serde_json::to_string_pretty(spec).expect("a spec always serialises");
    json.push('\n');
    let mut buffers = Vec::new();
    for (i, lw) in model.layers().iter().enumerate() {
        let shape = lw.weight.shape().to_vec();
        buffers.push((weight_name(i), shape, le_bytes(lw.weight.iter().copied())));
        if let Some(b) = &lw.bias {
            buffers.push((bias_name(i), vec![b.len()], le_bytes(b.iter().copied())));
        }
    }
    let views = buffers.iter().map(|(name, shape, data)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .expect("a validated model's tensors match their shapes");
        (name.as_str(), view)
    });
    let bytes = safetensors::serialize(views, None)
        .expect("serialising in-memory tensors of matching shapes cannot fail");
    (json.into_bytes(), bytes)
}

pub(super) fn save(model: &Model, spec_path: &Path) -> Result<()> {
    let (json, bytes) = to_bytes(model);
    let weights_path = spec_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(&model.spec().weights);
    fs::write(&weights_path, bytes).map_err(|e| Error::io(&weights_path, e))?;
    fs::write(spec_path, json).map_err(|e| Error::io(spec_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    fn model() -> Model {
        Model::random(&[3, 4, 2], Activation::Relu, Activation::Softmax, 5)
    }

    /// A safetensors file of the given (name, dtype, shape, bytes) tensors.
    fn tensors(list: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views = list.iter().map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        });
        safetensors::serialize(views, None).unwrap()
    }

    /// The model's tensors as (name, dtype, shape, bytes), to edit one and re-serialise.
    fn model_tensors(model: &Model) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, lw) in model.layers().iter().enumerate() {
            out.push((
                weight_name(i),
                Dtype::F32,
                lw.weight.shape().to_vec(),
                le_bytes(lw.weight.iter().copied()),
            ));
            let b = lw.bias.as_ref().unwrap();
            out.push((
                bias_name(i),
                Dtype::F32,
                vec![b.len()],
                le_bytes(b.iter().copied()),
            ));
        }
        out
    }

    fn serialise(list: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let refs: Vec<_> = list
            .iter()
            .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
            .collect();
        tensors(&refs)
    }

    #[test]
    fn round_trip_is_bit_exact_and_matches_save() {
        let m = model();
        let (json, weights) = m.to_bytes();
        let back = Model::from_bytes(&json, &weights).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), (json.clone(), weights.clone()));
        let dir = std::env::temp_dir().join(format!("densebatch-bytes-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        m.save(dir.join("model.json")).unwrap();
        assert_eq!(fs::read(dir.join("model.json")).unwrap(), json);
        assert_eq!(fs::read(dir.join("model.safetensors")).unwrap(), weights);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_spec_and_weights_are_format_errors() {
        let (json, weights) = model().to_bytes();
        for bad_json in [&b"{"[..], b"\xff\xfe", b"[]", b"{\"name\":\"m\"}"] {
            let err = Model::from_bytes(bad_json, &weights).unwrap_err();
            assert!(matches!(err, Error::Format { .. }), "{err}");
            assert!(err.to_string().starts_with("<in-memory model>"), "{err}");
        }
        // A long enough buffer whose header is garbage.
        let mut garbage = vec![0xAB; weights.len()];
        garbage[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = Model::from_bytes(&json, &garbage).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
    }

    #[test]
    fn short_weights_are_too_large_naming_the_layer() {
        let (json, weights) = model().to_bytes();
        // Layer 0 needs (3·4 + 4)·4 = 64 bytes, layers 0–1 need 64 + (4·2 + 2)·4 = 104.
        let err = Model::from_bytes(&json, &weights[..80]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    layer: 1,
                    needed: 104,
                    limit: 80,
                    ..
                }
            ),
            "{err}"
        );
        let err = Model::from_bytes(&json, &[]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    layer: 0,
                    needed: 64,
                    limit: 0,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn invalid_spec_is_refused_before_the_weights() {
        let (_, weights) = model().to_bytes();
        let json = br#"{"name":"m","input_width":3,"layers":[{"in":3,"out":4,"activation":"softmax"},{"in":4,"out":2}]}"#;
        let err = Model::from_bytes(json, &weights).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { layer: 0, .. }), "{err}");
    }

    #[test]
    fn dtype_shape_missing_and_non_finite_tensors() {
        let m = model();
        let (json, _) = m.to_bytes();
        let good = model_tensors(&m);

        let mut list = good.clone();
        list[2].1 = Dtype::I32;
        let err = Model::from_bytes(&json, &serialise(&list)).unwrap_err();
        assert!(
            matches!(&err, Error::DType { layer: 1, dtype, .. } if dtype == "I32"),
            "{err}"
        );

        let mut list = good.clone();
        list[0].2 = vec![4, 3];
        let err = Model::from_bytes(&json, &serialise(&list)).unwrap_err();
        assert!(
            matches!(&err, Error::TensorShape { layer: 0, got, .. } if got == &[4, 3]),
            "{err}"
        );

        let mut list = good.clone();
        list.remove(3);
        // Keep the buffer long enough for the size precheck.
        list.push(("padding".into(), Dtype::F32, vec![2], vec![0; 8]));
        let err = Model::from_bytes(&json, &serialise(&list)).unwrap_err();
        assert!(
            matches!(&err, Error::MissingTensor { layer: 1, tensor, .. } if tensor == "layers.1.bias"),
            "{err}"
        );

        let mut list = good;
        list[1].3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        let err = Model::from_bytes(&json, &serialise(&list)).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::NonFiniteWeight {
                    layer: 0,
                    index: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bias_the_spec_does_not_have_is_refused() {
        let m = model();
        let (json, weights) = m.to_bytes();
        let mut spec: serde_json::Value = serde_json::from_slice(&json).unwrap();
        spec["layers"][1]["bias"] = false.into();
        let err = Model::from_bytes(spec.to_string().as_bytes(), &weights).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { layer: 1, .. }), "{err}");
    }
}
