//! Model files: save → load round trips bit for bit, and every kind of bad file gets its own
//! typed error naming the file and the layer.

mod common;

use std::fs;

use common::TempDir;
use densebatch::prelude::*;
use densebatch::{LayerWeights, ModelSpec};

fn saved(tag: &str) -> (TempDir, Model) {
    let dir = TempDir::new(tag);
    let model = Model::random(&[7, 5, 3], Activation::Tanh, Activation::Softmax, 3);
    model.save(dir.path("model.json")).unwrap();
    (dir, model)
}

fn edit_spec(dir: &TempDir, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.path("model.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut spec);
    fs::write(&path, serde_json::to_string(&spec).unwrap()).unwrap();
}

fn load_err(dir: &TempDir) -> Error {
    Model::load(dir.path("model.json")).expect_err("the file is bad")
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let (dir, model) = saved("roundtrip");
    let back = Model::load(dir.path("model.json")).unwrap();
    assert_eq!(back, model);
    // Also through the folder form, and saving again gives the same bytes.
    assert_eq!(Model::load(&dir.0).unwrap(), model);
    let again = TempDir::new("roundtrip2");
    back.save(again.path("model.json")).unwrap();
    for f in ["model.json", "model.safetensors"] {
        assert_eq!(
            fs::read(dir.path(f)).unwrap(),
            fs::read(again.path(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn missing_files_are_io_errors_with_the_path() {
    let dir = TempDir::new("missing");
    let err = Model::load(dir.path("model.json")).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if path.ends_with("model.json")),
        "{err}"
    );
    let (dir, _) = saved("missing-weights");
    fs::remove_file(dir.path("model.safetensors")).unwrap();
    assert!(
        matches!(load_err(&dir), Error::Io { path, .. } if path.ends_with("model.safetensors"))
    );
}

#[test]
fn malformed_json_is_a_format_error() {
    let (dir, _) = saved("json");
    fs::write(dir.path("model.json"), "{\"name\": ").unwrap();
    assert!(matches!(load_err(&dir), Error::Format { .. }));
}

#[test]
fn spec_inconsistencies_name_the_layer() {
    let (dir, _) = saved("chain");
    edit_spec(&dir, |s| s["layers"][1]["in"] = 6.into());
    let err = load_err(&dir);
    assert!(matches!(err, Error::InvalidSpec { layer: 1, .. }), "{err}");
    assert!(err.to_string().contains("model.json"), "{err}");

    let (dir, _) = saved("softmax");
    edit_spec(&dir, |s| s["layers"][0]["activation"] = "softmax".into());
    assert!(matches!(
        load_err(&dir),
        Error::InvalidSpec { layer: 0, .. }
    ));

    let (dir, _) = saved("activation");
    edit_spec(&dir, |s| s["layers"][0]["activation"] = "swish".into());
    assert!(matches!(load_err(&dir), Error::Format { .. }));
}

#[test]
fn tensor_shape_disagreeing_with_the_spec() {
    // Same parameter count, different shape: 5x3 saved, spec claims 3x5 via a transposed model.
    let dir = TempDir::new("shape");
    let model = Model::random(&[7, 5, 3], Activation::Relu, Activation::Identity, 1);
    model.save(dir.path("model.json")).unwrap();
    edit_spec(&dir, |s| {
        s["layers"][0]["bias"] = false.into();
    });
    // The file holds a bias the spec now denies.
    assert!(matches!(
        load_err(&dir),
        Error::InvalidSpec { layer: 0, .. }
    ));
    edit_spec(&dir, |s| {
        s["layers"][0]["bias"] = true.into();
        s["weights"] = "other.safetensors".into();
    });
    let other = Model::new(
        ModelSpec {
            weights: "other.safetensors".into(),
            ..model.spec().clone()
        },
        vec![
            LayerWeights {
                weight: ndarray::Array2::zeros((5, 7)),
                bias: model.layers()[0].bias.clone(),
            },
            model.layers()[1].clone(),
        ],
    );
    // Building such a model in memory is refused already...
    assert!(matches!(other, Err(Error::TensorShape { layer: 0, .. })));
    // ...so write the transposed tensor by hand.
    let w = ndarray::Array2::<f32>::zeros((5, 7));
    let b = model.layers()[0].bias.clone().unwrap();
    let w1 = &model.layers()[1];
    let bytes = |v: Vec<f32>| {
        v.into_iter()
            .flat_map(f32::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let tensors = [
        (
            "layers.0.weight",
            vec![5, 7],
            bytes(w.iter().copied().collect()),
        ),
        ("layers.0.bias", vec![5], bytes(b.to_vec())),
        (
            "layers.1.weight",
            vec![5, 3],
            bytes(w1.weight.iter().copied().collect()),
        ),
        (
            "layers.1.bias",
            vec![3],
            bytes(w1.bias.clone().unwrap().to_vec()),
        ),
    ];
    write_tensors(
        &dir.path("other.safetensors"),
        &tensors,
        safetensors::Dtype::F32,
    );
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::TensorShape { layer: 0, expected, got, .. } if expected == &[7, 5] && got == &[5, 7]),
        "{err}"
    );
}

fn write_tensors(
    path: &std::path::Path,
    tensors: &[(&str, Vec<usize>, Vec<u8>)],
    dtype: safetensors::Dtype,
) {
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                *n,
                safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap(),
            )
        })
        .collect();
    fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Each layer's weight and bias as `(name, shape, little-endian f32 bytes)`, as a model file holds them.
fn layer_tensors(layers: &[LayerWeights]) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes =
        |values: ndarray::ArrayViewD<f32>| values.iter().flat_map(|v| v.to_le_bytes()).collect();
    layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            let b = l.bias.as_ref().unwrap();
            [
                (
                    format!("layers.{i}.weight"),
                    l.weight.shape().to_vec(),
                    bytes(l.weight.view().into_dyn()),
                ),
                (
                    format!("layers.{i}.bias"),
                    vec![b.len()],
                    bytes(b.view().into_dyn()),
                ),
            ]
        })
        .collect()
}

#[test]
fn wrong_dtype_and_missing_tensor() {
    let (dir, model) = saved("dtype");
    // Store as I32 bit patterns: same byte count, wrong dtype.
    let tensors = layer_tensors(model.layers());
    let named: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
        .collect();
    write_tensors(
        &dir.path("model.safetensors"),
        &named,
        safetensors::Dtype::I32,
    );
    assert!(matches!(load_err(&dir), Error::DType { layer: 0, .. }));

    // Drop layer 1's weight but keep the file large enough.
    let mut named = named;
    named.retain(|(n, _, _)| *n != "layers.1.weight");
    named.push(("padding", vec![64], vec![0; 256]));
    write_tensors(
        &dir.path("model.safetensors"),
        &named,
        safetensors::Dtype::F32,
    );
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::MissingTensor { layer: 1, tensor, .. } if tensor == "layers.1.weight"),
        "{err}"
    );
}

#[test]
fn non_finite_weights_are_refused() {
    let model = Model::random(&[4, 3], Activation::Relu, Activation::Identity, 5);
    let mut layers = model.layers().to_vec();
    layers[0].weight[[2, 1]] = f32::NAN;
    let err = Model::new(model.spec().clone(), layers).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteWeight {
                layer: 0,
                index: 7,
                ..
            }
        ),
        "{err}"
    );

    // And in a file.
    let (dir, model) = saved("nan-file");
    let mut layers = model.layers().to_vec();
    layers[1].bias.as_mut().unwrap()[2] = f32::INFINITY;
    let tensors = layer_tensors(&layers);
    let named: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
        .collect();
    write_tensors(
        &dir.path("model.safetensors"),
        &named,
        safetensors::Dtype::F32,
    );
    let err = load_err(&dir);
    assert!(
        matches!(&err, Error::NonFiniteWeight { layer: 1, tensor, index: 2, .. } if tensor == "layers.1.bias"),
        "{err}"
    );
}

#[test]
fn truncated_and_lying_files() {
    let (dir, _) = saved("truncated");
    let path = dir.path("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    // Cut the data short: the spec needs more bytes than the file holds.
    fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    assert!(matches!(
        load_err(&dir),
        Error::TooLarge { .. } | Error::Format { .. }
    ));
    // A header length that points past the end of the file, with the file still big enough.
    let mut lying = bytes.clone();
    lying[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    fs::write(&path, &lying).unwrap();
    assert!(matches!(load_err(&dir), Error::Format { .. }));
    // Garbage JSON header of the right length.
    let mut garbage = bytes.clone();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    garbage[8..8 + n].fill(b'x');
    fs::write(&path, &garbage).unwrap();
    assert!(matches!(load_err(&dir), Error::Format { .. }));
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let (dir, _) = saved("absurd");
    // A spec claiming a 2^31-weight layer with a file of a few hundred bytes.
    edit_spec(&dir, |s| {
        s["input_width"] = 65536.into();
        s["layers"][0]["in"] = 65536.into();
        s["layers"][0]["out"] = 32768.into();
        s["layers"][1]["in"] = 32768.into();
    });
    let err = load_err(&dir);
    assert!(matches!(&err, Error::TooLarge { layer: 0, .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    edit_spec(&dir, |s| {
        s["input_width"] = (1usize << 20).into();
        s["layers"][0]["in"] = (1usize << 20).into();
        s["layers"][0]["out"] = (1usize << 20).into();
        s["layers"][1]["in"] = (1usize << 20).into();
    });
    assert!(matches!(load_err(&dir), Error::TooLarge { layer: 0, .. }));
}

#[test]
fn reference_harness_layout_errors() {
    let dir = TempDir::new("refbench-layout");
    let manifest = r#"{"name": "m", "widths": [3, 2], "layers": [
        {"W": "W0.npy", "b": "b0.npy", "in": 3, "out": 2, "activation": "identity"}]}"#;
    fs::write(dir.path("manifest.json"), manifest).unwrap();
    let w = ndarray::Array2::<f32>::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32);
    common::write_npy_f32(&dir.path("W0.npy"), w.view());
    common::write_npy_f32(
        &dir.path("b0.npy"),
        ndarray::Array2::<f32>::ones((1, 2)).view(),
    );
    // b0 is 2-D: a shape error naming the file.
    let err = Model::load(&dir.0).unwrap_err();
    assert!(matches!(&err, Error::TensorShape { layer: 0, .. }), "{err}");
    assert!(err.to_string().contains("b0.npy"), "{err}");
    // A truncated W0.
    let bytes = fs::read(dir.path("W0.npy")).unwrap();
    fs::write(dir.path("W0.npy"), &bytes[..bytes.len() - 4]).unwrap();
    assert!(matches!(Model::load(&dir.0), Err(Error::Format { .. })));
    // A float64 W0.
    let mut f64_file = bytes.clone();
    let at = f64_file.windows(3).position(|w| w == b"<f4").unwrap();
    f64_file[at..at + 3].copy_from_slice(b"<f8");
    fs::write(dir.path("W0.npy"), &f64_file).unwrap();
    let err = Model::load(&dir.0).unwrap_err();
    assert!(err.to_string().contains("<f8"), "{err}");
    // Repaired, it loads and computes x·W + b.
    fs::write(dir.path("W0.npy"), &bytes).unwrap();
    common::write_npy_f32(
        &dir.path("b0.npy"),
        ndarray::Array2::<f32>::ones((1, 2)).view(),
    );
    let b = ndarray::arr1(&[0.5f32, -0.5]);
    let mut b_bytes = common::npy_header_bytes(&[2]);
    b_bytes.extend(b.iter().flat_map(|v| v.to_le_bytes()));
    fs::write(dir.path("b0.npy"), b_bytes).unwrap();
    let model = Model::load(&dir.0).unwrap();
    let y = model
        .compile()
        .unwrap()
        .predict(ndarray::arr2(&[[1.0f32, 1.0, 1.0]]).view())
        .unwrap();
    assert_eq!(y, ndarray::arr2(&[[6.5f32, 8.5]]));
}

/// A `.npy` header whose shape overflows 64 bits when multiplied, with no data, in a
/// reference-harness folder: `Model::load` answers with a one-line format error naming the file,
/// never a panic (a wrapping product would have passed the length check).
#[test]
fn an_overflowing_npy_shape_is_a_one_line_error() {
    let dir = TempDir::new("refbench-overflow");
    let manifest = r#"{"name": "m", "widths": [3, 2], "layers": [
        {"W": "W0.npy", "b": "b0.npy", "in": 3, "out": 2, "activation": "identity"}]}"#;
    fs::write(dir.path("manifest.json"), manifest).unwrap();
    fs::write(
        dir.path("W0.npy"),
        common::npy_header_bytes(&[4_611_686_018_427_387_904, 4]),
    )
    .unwrap();
    common::write_npy_f32(
        &dir.path("b0.npy"),
        ndarray::Array2::<f32>::ones((1, 2)).view(),
    );
    let err = Model::load(&dir.0).unwrap_err();
    assert!(matches!(&err, Error::Format { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("W0.npy") && message.contains("too large"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// A folder is loaded by what it holds: with nothing to load, or with two `.onnx` files to choose
/// from, a format error naming the folder.
#[test]
fn a_folder_without_one_model_is_a_format_error() {
    let dir = TempDir::new("empty-model-folder");
    let err = Model::load(&dir.0).unwrap_err();
    assert!(matches!(&err, Error::Format { .. }), "{err}");
    assert!(err.to_string().contains("no model.json"), "{err}");

    let onnx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    fs::copy(onnx.join("sklearn_mlp.onnx"), dir.path("a.onnx")).unwrap();
    let one = Model::load(&dir.0).unwrap();
    assert_eq!(one.spec().input_width, 10);
    fs::copy(onnx.join("gemm_mix.onnx"), dir.path("b.onnx")).unwrap();
    let err = Model::load(&dir.0).unwrap_err();
    assert!(err.to_string().contains("2 .onnx files"), "{err}");
}
