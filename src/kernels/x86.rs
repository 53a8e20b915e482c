//! The generic tiled kernel compiled with x86 SIMD target features, selected at run time.

use super::generic::dense_tiled;
use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use crate::Activation;

/// AVX2 + FMA: 6 rows × 16 columns = 12 ymm accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense_avx2_fma(
    x: Rows<'_>,
    w: &PackedWeights,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
) {
    dense_tiled::<6, 16>(x, w, bias, activation, out)
}
