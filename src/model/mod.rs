//! Models as data: a [`ModelSpec`] plus its weights, validated on construction.

mod npy;
mod random;
mod refbench;
mod safetensors_file;
mod spec;

pub(crate) use refbench::load as load_refbench;
pub(crate) use safetensors_file::load as load_safetensors;

use std::path::Path;

use ndarray::{Array1, Array2};

use crate::error::{Error, Origin, Result};

pub(crate) use npy::{read_npy_f32, read_npy_f32_bytes};
pub(crate) use random::random_model;
pub use spec::{LayerSpec, ModelSpec};

/// The weights of one dense layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// `W`, shape `[input, output]`: `y = x · W + b`.
    pub weight: Array2<f32>,
    /// `b`, shape `[output]`, present when the spec says the layer has a bias.
    pub bias: Option<Array1<f32>>,
}

/// A validated model: spec and weights that agree with each other, all finite.
///
/// # Examples
/// ```
/// use densebatch::{Activation, Model};
/// let model = Model::random(&[4, 8, 3], Activation::Relu, Activation::Softmax, 7);
/// assert_eq!(model.spec().output_width(), 3);
/// assert_eq!(model.layers()[0].weight.dim(), (4, 8));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    layers: Vec<LayerWeights>,
}

impl Model {
    /// Builds a model from a spec and its weights, checking that they agree.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`], [`Error::TooLarge`], [`Error::TensorShape`] or
    /// [`Error::NonFiniteWeight`], naming the layer.
    pub fn new(spec: ModelSpec, layers: Vec<LayerWeights>) -> Result<Self> {
        Self::with_origin(spec, layers, &Origin::default())
    }

    pub(crate) fn with_origin(
        spec: ModelSpec,
        layers: Vec<LayerWeights>,
        origin: &Origin,
    ) -> Result<Self> {
        spec.validate(origin)?;
        if layers.len() != spec.layers.len() {
            return Err(Error::spec(
                origin,
                layers.len().min(spec.layers.len()),
                format!(
                    "the spec has {} layers but {} weight sets were given",
                    spec.layers.len(),
                    layers.len()
                ),
            ));
        }
        for (i, (ls, lw)) in spec.layers.iter().zip(&layers).enumerate() {
            let shape_err =
                |tensor: &str, expected: Vec<usize>, got: &[usize]| Error::TensorShape {
                    origin: origin.clone(),
                    layer: i,
                    tensor: tensor.to_string(),
                    expected,
                    got: got.to_vec(),
                };
            if lw.weight.dim() != (ls.input, ls.output) {
                return Err(shape_err(
                    &weight_name(i),
                    vec![ls.input, ls.output],
                    lw.weight.shape(),
                ));
            }
            check_finite(origin, i, &weight_name(i), lw.weight.iter())?;
            match (&lw.bias, ls.bias) {
                (Some(b), true) if b.len() == ls.output => {
                    check_finite(origin, i, &bias_name(i), b.iter())?
                }
                (Some(b), _) => {
                    let expected = if ls.bias { vec![ls.output] } else { vec![] };
                    return Err(shape_err(&bias_name(i), expected, b.shape()));
                }
                (None, true) => {
                    return Err(Error::MissingTensor {
                        origin: origin.clone(),
                        layer: i,
                        tensor: bias_name(i),
                    });
                }
                (None, false) => {}
            }
        }
        Ok(Model { spec, layers })
    }

    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The weights, one entry per layer.
    pub fn layers(&self) -> &[LayerWeights] {
        &self.layers
    }

    /// Saves the model as a spec file at `path` and its weights beside it (the file named by the
    /// spec's `weights` field). Loading the result gives back an equal model, bit for bit.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        safetensors_file::save(self, path.as_ref())
    }

    /// Builds a model from the bytes of a spec file (`model.json`) and of its safetensors
    /// weights file, with every check [`Model::load`] makes on those files: the spec is validated,
    /// the weights' length is checked against the size the spec implies before any tensor is
    /// copied, and each tensor must be F32, of the spec's shape and finite. The spec's `weights`
    /// field is kept but not used. [`Model::to_bytes`] is the inverse.
    ///
    /// # Examples
    /// ```
    /// use densebatch::{Activation, Error, Model};
    /// let model = Model::random(&[5, 7, 3], Activation::Tanh, Activation::Softmax, 11);
    /// let (spec_json, weights) = model.to_bytes();
    /// let back = Model::from_bytes(&spec_json, &weights)?;
    /// assert_eq!(back, model);
    /// // Bit for bit, not just equal as floats.
    /// assert_eq!(back.to_bytes(), (spec_json.clone(), weights.clone()));
    /// // Weights shorter than the spec's (5·7 + 7 + 7·3 + 3) · 4 = 264 bytes are refused before
    /// // anything is parsed or allocated, naming the first layer they cannot hold.
    /// let err = Model::from_bytes(&spec_json, &weights[..200]).unwrap_err();
    /// assert!(matches!(err, Error::TooLarge { layer: 1, needed: 264, .. }), "{err}");
    /// // A damaged file is a format error.
    /// let mut damaged = weights.clone();
    /// damaged[0] ^= 0x40;
    /// assert!(matches!(Model::from_bytes(&spec_json, &damaged), Err(Error::Format { .. })));
    /// # Ok::<(), densebatch::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Format`] for malformed JSON or a malformed safetensors file, [`Error::TooLarge`]
    /// when the weights are shorter than the spec implies, [`Error::MissingTensor`],
    /// [`Error::DType`], [`Error::TensorShape`], [`Error::NonFiniteWeight`], and the spec errors
    /// of [`ModelSpec::validate`]. The errors' origin is the in-memory one.
    pub fn from_bytes(spec_json: &[u8], weights: &[u8]) -> Result<Self> {
        safetensors_file::from_bytes(spec_json, weights)
    }

    /// The model as the bytes of a spec file (pretty JSON) and of its safetensors weights file:
    /// exactly what [`Model::save`] writes. [`Model::from_bytes`] gives back an equal model.
    ///
    /// # Examples
    /// ```
    /// use densebatch::{Activation, Model};
    /// let model = Model::random(&[2, 3], Activation::Identity, Activation::Identity, 1);
    /// let (spec_json, weights) = model.to_bytes();
    /// let spec: densebatch::ModelSpec = serde_json::from_slice(&spec_json).unwrap();
    /// assert_eq!(&spec, model.spec());
    /// // A safetensors file: an 8-byte header length, the JSON header, then the f32 data
    /// // (2 × 3 weights and 3 biases).
    /// let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap());
    /// assert_eq!(weights.len() as u64, 8 + header_len + (2 * 3 + 3) * 4);
    /// ```
    pub fn to_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        safetensors_file::to_bytes(self)
    }

    /// A seeded random model (He-normal weights, small normal biases), for tests and benches.
    /// `widths` lists the input width then each layer's output width.
    ///
    /// # Panics
    /// If `widths` has fewer than two entries or a zero width.
    pub fn random(
        widths: &[usize],
        hidden: crate::Activation,
        output: crate::Activation,
        seed: u64,
    ) -> Self {
        random_model(widths, hidden, output, seed)
    }
}

pub(crate) fn weight_name(layer: usize) -> String {
    format!("layers.{layer}.weight")
}

pub(crate) fn bias_name(layer: usize) -> String {
    format!("layers.{layer}.bias")
}

fn check_finite<'a>(
    origin: &Origin,
    layer: usize,
    tensor: &str,
    values: impl Iterator<Item = &'a f32>,
) -> Result<()> {
    for (index, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(Error::NonFiniteWeight {
                origin: origin.clone(),
                layer,
                tensor: tensor.to_string(),
                index,
            });
        }
    }
    Ok(())
}

impl Model {
    /// Runs `x` through the naive reference loops (the test oracle): slow, allocating, exact.
    ///
    /// # Errors
    /// [`Error::InputWidth`] if `x` has the wrong number of columns.
    pub fn predict_reference(&self, x: ndarray::ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.predict_reference_with(x, crate::Precision::F32)
    }

    /// Runs `x` through the naive reference loops with the weights in `precision`, as
    /// [`crate::Precision`] defines them: what a model compiled in that precision must return,
    /// bit for bit, on every kernel.
    ///
    /// # Errors
    /// [`Error::InputWidth`] if `x` has the wrong number of columns.
    pub fn predict_reference_with(
        &self,
        x: ndarray::ArrayView2<'_, f32>,
        precision: crate::Precision,
    ) -> Result<Array2<f32>> {
        if x.ncols() != self.spec.input_width {
            return Err(Error::InputWidth {
                expected: self.spec.input_width,
                got: x.ncols(),
            });
        }
        let mut h = x.to_owned();
        for (ls, lw) in self.spec.layers.iter().zip(&self.layers) {
            h = crate::kernels::reference::dense_reference_precision(
                h.view(),
                lw.weight.view(),
                lw.bias.as_ref().map(|b| b.view()),
                ls.activation,
                precision,
            );
        }
        Ok(h)
    }
}
