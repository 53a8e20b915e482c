//! Activation functions, parsed once from the spec and applied in the kernels' epilogue.
//!
//! Transcendentals are our own branch-free functions (`math`), so that they vectorise inside the
//! kernels and a model gives the same bits on every machine and operating system, not only from
//! run to run.

use serde::{Deserialize, Serialize};

mod math;

/// The activation applied after a dense layer's `x·W + b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Activation {
    /// `f(x) = x`.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// The exact (erf) GELU: `x · Φ(x)`, as ONNX's `Gelu` and PyTorch's default.
    Gelu,
    /// Row-wise softmax, numerically stabilised by subtracting the row maximum. Last layer only.
    Softmax,
}

impl Activation {
    /// All activations, for tests and tools.
    pub const ALL: [Activation; 6] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Softmax,
    ];

    /// True when the function looks at a whole row (softmax) rather than one value at a time.
    pub fn is_row_wise(self) -> bool {
        self == Activation::Softmax
    }

    /// The lowercase name used in model files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::Softmax => "softmax",
        }
    }

    /// Applies an element-wise activation to `values` in place. Does nothing for softmax, which
    /// [`Activation::apply_row`] handles.
    ///
    /// Always inlined, so that inside a kernel compiled for AVX2 or AVX-512 the loops run on
    /// those registers; the bits are the same either way.
    #[inline(always)]
    pub fn apply_elementwise(self, values: &mut [f32]) {
        match self {
            Activation::Identity | Activation::Softmax => {}
            // Not `f32::max`, which turns NaN into 0: a NaN must stay visible.
            Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
            // Plain loops calling the functions directly: `for_each` with a closure this large,
            // or a function passed by value, is not always inlined, and an out-of-line copy runs
            // without the kernel's vector instructions.
            Activation::Sigmoid => {
                for v in values {
                    *v = math::sigmoid(*v);
                }
            }
            Activation::Tanh => {
                for v in values {
                    *v = math::tanh(*v);
                }
            }
            Activation::Gelu => {
                for v in values {
                    *v = math::gelu(*v);
                }
            }
        }
    }

    /// Applies the activation to one complete output row in place (element-wise ones too).
    #[inline(always)]
    pub fn apply_row(self, row: &mut [f32]) {
        if self == Activation::Softmax {
            softmax(row);
        } else {
            self.apply_elementwise(row);
        }
    }
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// Softmax over one row, in a fixed order (max, then exp and sum left to right, then divide).
#[inline(always)]
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Two loops: the exps vectorise, the sum keeps its left-to-right order.
    for v in row.iter_mut() {
        *v = math::exp(*v - max);
    }
    let sum: f32 = row.iter().sum();
    for v in row.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_values() {
        let mut v = [-2.0f32, 0.0, 1.5];
        Activation::Relu.apply_row(&mut v);
        assert_eq!(v, [0.0, 0.0, 1.5]);
        let mut nan = [f32::NAN];
        Activation::Relu.apply_row(&mut nan);
        assert!(nan[0].is_nan(), "relu must propagate NaN");
        let mut s = [0.0f32, 100.0, -100.0];
        Activation::Sigmoid.apply_row(&mut s);
        assert_eq!(s[..2], [0.5, 1.0]);
        // 1 / (1 + e^100) = 3.7e-44: a subnormal, not flushed to 0.
        assert!(s[2] > 3.6e-44 && s[2] < 3.9e-44, "{}", s[2]);
        let mut g = [1.0f32, -1.0];
        Activation::Gelu.apply_row(&mut g);
        assert!((g[0] - 0.841_344_7).abs() < 1e-6, "{}", g[0]);
        assert!((g[1] + 0.158_655_26).abs() < 1e-6, "{}", g[1]);
        let mut t = [0.5f32];
        Activation::Tanh.apply_row(&mut t);
        assert!((t[0] - 0.462_117_16).abs() < 1e-7);
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let mut row = [1000.0f32, 1000.0, 999.0];
        Activation::Softmax.apply_row(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(row[0], row[1]);
        assert!(row[2] < row[0] && row[2] > 0.0);
    }

    #[test]
    fn serde_names_are_lowercase() {
        for a in Activation::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
            assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
        }
        assert!(serde_json::from_str::<Activation>("\"swish\"").is_err());
    }
}
