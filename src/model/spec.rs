//! The model spec: the JSON half of a model file.

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::{Error, Origin, Result};

/// Largest layer the engine accepts, in weights (in × out). A spec asking for more is refused before
/// anything is allocated: 2^31 f32 weights are 8 GiB for a single layer.
pub(crate) const MAX_LAYER_WEIGHTS: u64 = 1 << 31;

/// One dense layer: `y = act(x · W + b)`, `W` of shape `[input, output]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Input width (rows of `W`).
    #[serde(rename = "in")]
    pub input: usize,
    /// Output width (columns of `W`).
    #[serde(rename = "out")]
    pub output: usize,
    /// Whether the layer adds a bias vector.
    #[serde(default = "default_true")]
    pub bias: bool,
    /// Activation applied to the layer's output.
    #[serde(default)]
    pub activation: Activation,
}

fn default_true() -> bool {
    true
}

/// A model spec: name, version, input width and the dense layers in order.
///
/// In a file it sits next to a safetensors file (named by [`ModelSpec::weights`]) holding, for
/// layer `i`, `layers.{i}.weight` (F32, `[in, out]`) and `layers.{i}.bias` (F32, `[out]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model name.
    pub name: String,
    /// Model version, free-form.
    #[serde(default)]
    pub version: String,
    /// Width of an input sample.
    pub input_width: usize,
    /// Weights file, relative to the spec's folder.
    #[serde(default = "default_weights")]
    pub weights: String,
    /// Dense layers, first to last.
    pub layers: Vec<LayerSpec>,
}

fn default_weights() -> String {
    "model.safetensors".to_string()
}

impl ModelSpec {
    /// Width of the model's output (the last layer's output width).
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(0, |l| l.output)
    }

    /// Floating-point operations per sample (2 per multiply-add).
    pub fn flops_per_sample(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| 2 * l.input as u64 * l.output as u64)
            .sum()
    }

    /// Number of parameters (weights and biases).
    pub fn param_count(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| l.input as u64 * l.output as u64 + if l.bias { l.output as u64 } else { 0 })
            .sum()
    }

    /// Checks the spec on its own: at least one layer, non-zero widths, a connected width chain,
    /// softmax only last, sizes the engine can hold.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] or [`Error::TooLarge`], naming `origin` and the layer.
    pub fn validate(&self, origin: &Origin) -> Result<()> {
        if self.layers.is_empty() {
            return Err(Error::spec(origin, 0, "the model has no layers"));
        }
        let mut width = self.input_width;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.input != width {
                let from = if i == 0 {
                    "the model's input_width".to_string()
                } else {
                    format!("layer {}'s output", i - 1)
                };
                return Err(Error::spec(
                    origin,
                    i,
                    format!(
                        "input width {} does not match {from} ({width})",
                        layer.input
                    ),
                ));
            }
            if layer.input == 0 || layer.output == 0 {
                return Err(Error::spec(origin, i, "a layer width is zero"));
            }
            let weights = layer.input as u64 * layer.output as u64;
            if weights > MAX_LAYER_WEIGHTS {
                return Err(Error::TooLarge {
                    origin: origin.clone(),
                    layer: i,
                    what: "the weight matrix",
                    needed: weights * 4,
                    limit: MAX_LAYER_WEIGHTS * 4,
                });
            }
            if layer.activation == Activation::Softmax && i != last {
                return Err(Error::spec(
                    origin,
                    i,
                    "softmax is only allowed on the last layer",
                ));
            }
            width = layer.output;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(widths: &[usize]) -> ModelSpec {
        ModelSpec {
            name: "t".into(),
            version: "1".into(),
            input_width: widths[0],
            weights: default_weights(),
            layers: widths
                .windows(2)
                .map(|w| LayerSpec {
                    input: w[0],
                    output: w[1],
                    bias: true,
                    activation: Activation::Relu,
                })
                .collect(),
        }
    }

    #[test]
    fn counts() {
        let s = spec(&[784, 512, 512, 10]);
        assert_eq!(s.flops_per_sample(), 1_337_344);
        assert_eq!(s.param_count(), 669_706);
        assert_eq!(s.output_width(), 10);
    }

    #[test]
    fn rejects_broken_chain_and_softmax_in_the_middle() {
        let mut s = spec(&[4, 8, 2]);
        s.layers[1].input = 7;
        let err = s.validate(&Origin::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec { layer: 1, .. }), "{err}");
        let mut s = spec(&[4, 8, 2]);
        s.layers[0].activation = Activation::Softmax;
        assert!(matches!(
            s.validate(&Origin::default()),
            Err(Error::InvalidSpec { layer: 0, .. })
        ));
        let mut s = spec(&[4, 8, 2]);
        s.layers.clear();
        assert!(s.validate(&Origin::default()).is_err());
        let s = spec(&[1 << 20, 1 << 20]);
        assert!(matches!(
            s.validate(&Origin::default()),
            Err(Error::TooLarge { layer: 0, .. })
        ));
    }

    #[test]
    fn json_field_names() {
        let s: ModelSpec = serde_json::from_str(
            r#"{"name":"m","input_width":3,"layers":[{"in":3,"out":2,"activation":"softmax"}]}"#,
        )
        .unwrap();
        assert!(s.layers[0].bias);
        assert_eq!(s.weights, "model.safetensors");
        assert!(
            serde_json::from_str::<ModelSpec>(
                r#"{"name":"m","input_width":3,"layers":[],"extra":1}"#
            )
            .is_err()
        );
    }
}
