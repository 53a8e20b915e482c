//! Weight precision: how packed weights are stored, and the exact arithmetic each storage
//! defines. Fewer bytes per weight is the only way past the memory wall (a batch of one reads
//! every weight once per call), so bf16 and int8 halve and quarter the bytes streamed; the
//! activations and every accumulation stay `f32`, so each precision keeps the one-FMA-chain
//! promise of [`crate::kernels::reference`] within itself.

use std::fmt;
use std::str::FromStr;

use half::bf16;
use ndarray::{Array2, ArrayView2};

/// How a compiled model stores its weights ([`crate::CompileOptions::precision`]). Activations,
/// biases and accumulations are `f32` in every precision; only the weight bytes shrink. Within
/// one precision a sample's output is bit-identical whatever the batch, position, thread count
/// and kernel; across precisions results differ (see `densebatch inspect --precision`).
///
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[64, 128, 10], Activation::Relu, Activation::Identity, 7);
/// let f32_model = model.compile()?;
/// let int8 = model.compile_with(&CompileOptions::default().precision(Precision::Int8))?;
/// assert_eq!(int8.precision(), Precision::Int8);
/// // One byte per weight instead of four (plus a scale per output channel and the biases).
/// assert!(int8.weight_bytes() * 3 < f32_model.weight_bytes());
/// let x = ndarray::Array2::from_shape_fn((5, 64), |(i, j)| ((i * 64 + j) as f32).sin());
/// let y = int8.predict(x.view())?;
/// assert_eq!(y, model.predict_reference_with(x.view(), Precision::Int8)?);
/// # Ok::<(), densebatch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// 4 bytes per weight, exact: `acc = b[n]; acc = fma(x[k], W[k, n], acc)` in `k` order.
    #[default]
    F32,
    /// 2 bytes per weight: each weight rounded to bfloat16 (round to nearest, ties to even) at
    /// compile time and widened exactly back to `f32` in registers. The arithmetic is the `F32`
    /// one on the rounded weights.
    Bf16,
    /// 1 byte per weight, symmetric per output channel: `s[n] = max_k |W[k, n]| / 127`,
    /// `q[k, n] = clamp(round_ties_even(W[k, n] / s[n]), -127, 127)`. Each output is
    /// `acc = 0; acc = fma(x[k], q[k, n], acc)` in `k` order (each `q` exact in `f32`), then
    /// `fma(acc, s[n], b[n])`, one rounding, then the activation.
    Int8,
    /// Full int8, opt-in: the weights as in `Int8`, and each layer's input quantised too, per
    /// row (never per batch, so a row's result never depends on its batch-mates):
    /// `a = max_k |x[k]|`, `s_x = a / 127`, `q_x[k] = round_ties_even(x[k] * (127 / a))` (all
    /// zero when `a < 1e-30`). Each output is the exact integer sum `acc = Σ_k q_x[k] · q[k, n]`
    /// (`i32`, in any order: integer sums are exact), then `fma(acc as f32, s_x * s[n], b[n])`,
    /// one rounding, then the activation. A row holding NaN or an infinity gives NaN outputs.
    /// Reductions longer than [`MAX_INT8_FULL_K`] are refused at compile time (the sums could
    /// overflow `i32`).
    Int8Full,
}

/// The longest reduction [`Precision::Int8Full`] accepts: `255 · 127 · k` (the kernels' unsigned
/// activation codes times the weight codes) stays below `2^31`.
pub const MAX_INT8_FULL_K: usize = 66_000;

impl Precision {
    /// Every precision, `F32` first.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::Bf16,
        Precision::Int8,
        Precision::Int8Full,
    ];

    /// A short name: `f32`, `bf16`, `int8` or `int8-full` (what [`FromStr`] parses).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Int8Full => "int8-full",
        }
    }

    /// Bytes one packed weight takes.
    pub fn bytes_per_weight(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::Bf16 => 2,
            Precision::Int8 | Precision::Int8Full => 1,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown precision name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePrecisionError(String);

impl fmt::Display for ParsePrecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown precision {:?} (expected f32, bf16, int8 or int8-full)",
            self.0
        )
    }
}

impl std::error::Error for ParsePrecisionError {}

impl FromStr for Precision {
    type Err = ParsePrecisionError;

    /// ```
    /// use densebatch::Precision;
    /// assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
    /// assert!("fp8".parse::<Precision>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s) || (s == "fp32" && *p == Precision::F32))
            .ok_or_else(|| ParsePrecisionError(s.to_string()))
    }
}

/// The bfloat16 bits of `w`, rounded to nearest, ties to even.
#[inline]
pub(crate) fn bf16_bits(w: f32) -> u16 {
    bf16::from_f32(w).to_bits()
}

/// `w` rounded to bfloat16 and widened back to `f32` (exactly what the kernels compute with).
#[inline]
pub(crate) fn round_bf16(w: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(w)) << 16)
}

/// Symmetric per-output-channel int8 quantisation of a `[k, n]` matrix: the codes and the `n`
/// scales (see [`Precision::Int8`]). A column of zeros gets scale 0 and codes 0.
pub(crate) fn quantize_int8(w: ArrayView2<'_, f32>) -> (Array2<i8>, Vec<f32>) {
    let (k, n) = w.dim();
    let scales: Vec<f32> = (0..n)
        .map(|j| w.column(j).iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0)
        .collect();
    let q = Array2::from_shape_fn((k, n), |(kk, j)| quantize_one(w[[kk, j]], scales[j]));
    (q, scales)
}

/// One weight's int8 code for a channel scale.
#[inline]
fn quantize_one(w: f32, scale: f32) -> i8 {
    if scale == 0.0 {
        return 0;
    }
    // `w / scale` may exceed 127 by a rounding step at the column's largest weight: clamp.
    (w / scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// The weights a precision computes with, as `f32`: `W` itself, `W` rounded to bf16, or the
/// int8 codes (whose scales are applied after the sum, see [`Precision::Int8`]) with the scales.
pub(crate) fn effective_weights(
    w: ArrayView2<'_, f32>,
    precision: Precision,
) -> (Array2<f32>, Option<Vec<f32>>) {
    match precision {
        Precision::F32 => (w.to_owned(), None),
        Precision::Bf16 => (w.mapv(round_bf16), None),
        Precision::Int8 | Precision::Int8Full => {
            let (q, scales) = quantize_int8(w);
            (q.mapv(f32::from), Some(scales))
        }
    }
}

/// What the kernels store for an activation code: `q + 128`, so that VNNI's unsigned-by-signed
/// byte products apply (the kernels take `128 · Σ_k q[k, n]` back off each sum).
pub(crate) const ACTIVATION_CODE_OFFSET: i32 = 128;

/// Rows whose largest magnitude is below this quantise to zero (scale 0): `127 / a` would
/// overflow `f32` for the smallest ones, and no `f32` layer output can tell them from zero anyway.
pub(crate) const TINY_ROW: f32 = 1e-30;

/// The [`Precision::Int8Full`] quantisation of one row: its scale `s_x` and the multiplier
/// `127 / a`; NaN and 0 when the row holds NaN or an infinity, 0 and 0 when its largest magnitude
/// is below [`TINY_ROW`] (the codes are then all zero).
#[inline(always)]
pub(crate) fn row_scale(x: &[f32]) -> (f32, f32) {
    let mut max = 0.0f32;
    let mut finite = true;
    for &v in x {
        let a = v.abs();
        // `>` rather than `f32::max`: a plain compare-and-select vectorises.
        max = if a > max { a } else { max };
        finite &= a < f32::INFINITY;
    }
    scale_for_max(max, finite)
}

/// [`row_scale`] from a row's largest magnitude and whether all its values are finite.
#[inline(always)]
pub(crate) fn scale_for_max(max: f32, finite: bool) -> (f32, f32) {
    if !finite {
        (f32::NAN, 0.0)
    } else if max < TINY_ROW {
        (0.0, 0.0)
    } else {
        (max / 127.0, 127.0 / max)
    }
}

/// One activation's stored code (`q + 128`) for the multiplier `127 / a` of its row.
#[inline(always)]
pub(crate) fn activation_code(v: f32, inv: f32) -> u8 {
    // `|v| * inv` can exceed 127 by a rounding step only: it rounds to 127. A NaN row has
    // `inv = 0`; its codes are then 0 + 128 (`NaN as i32` is 0), and its scale NaN.
    ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 + ACTIVATION_CODE_OFFSET) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to the even mantissa (1.0).
        assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
        assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert_eq!(
            round_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(round_bf16(3.0), 3.0);
        assert_eq!(bf16_bits(1.0), 0x3f80);
    }

    #[test]
    fn int8_is_symmetric_per_column_with_ties_to_even_and_zero_columns() {
        let w = ndarray::arr2(&[[127.0f32, 0.0, -254.0], [-63.5, 0.0, 1.0], [2.5, 0.0, 3.0]]);
        let (q, s) = quantize_int8(w.view());
        assert_eq!(s, vec![1.0, 0.0, 2.0]);
        assert_eq!(q.column(0).to_vec(), vec![127, -64, 2]); // ties to even
        assert_eq!(q.column(1).to_vec(), vec![0, 0, 0]);
        assert_eq!(q.column(2).to_vec(), vec![-127, 0, 2]); // 0.5 → 0, 1.5 → 2
        let (q, _) = quantize_int8(ndarray::arr2(&[[0.3f32], [-0.3]]).view());
        assert_eq!(q.column(0).to_vec(), vec![127, -127]);
    }

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert_eq!(
            "x".parse::<Precision>().unwrap_err().to_string(),
            "unknown precision \"x\" (expected f32, bf16, int8 or int8-full)"
        );
    }
}
