//! A layer's input quantised per row for [`super::Precision::Int8Full`]: each row's codes go to
//! a byte buffer of the workspace, rows packed [`code_stride`] bytes apart, and each row's scale
//! to a small per-row array.

use super::matrix::Rows;
use super::precision::{activation_code, row_scale};

/// Rows of activation codes (`q + 128`, `k` padded to a multiple of 4), `stride` bytes apart,
/// with each row's scale `s_x` (see [`super::Precision::Int8Full`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuantizedRows<'a> {
    codes: &'a [u8],
    scales: &'a [f32],
    rows: usize,
    k: usize,
    stride: usize,
}

impl<'a> QuantizedRows<'a> {
    /// # Panics
    /// If the buffers are too short for `rows` rows of `k` codes (padded to 4) `stride` apart.
    pub(crate) fn new(
        codes: &'a [u8],
        scales: &'a [f32],
        rows: usize,
        k: usize,
        stride: usize,
    ) -> Self {
        let padded = k.div_ceil(4) * 4;
        assert!(padded <= stride || rows <= 1);
        assert!(rows == 0 || codes.len() >= (rows - 1) * stride + padded);
        assert!(scales.len() >= rows);
        QuantizedRows {
            codes,
            scales,
            rows,
            k,
            stride,
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The reduction length (before padding).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Row `r`'s codes, padded to a multiple of 4.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &'a [u8] {
        &self.codes[r * self.stride..r * self.stride + self.k.div_ceil(4) * 4]
    }

    /// Row `r`'s codes and what follows them up to a whole number of 64-byte lines.
    ///
    /// # Panics
    /// If the buffer ends before.
    pub(crate) fn row_lines(&self, r: usize) -> &'a [u8] {
        &self.codes[r * self.stride..r * self.stride + self.k.div_ceil(64) * 64]
    }

    /// Bytes from one row's codes to the next's.
    pub(crate) fn row_stride(&self) -> usize {
        self.stride
    }

    /// Row `r`'s scale.
    #[inline]
    pub(crate) fn scale(&self, r: usize) -> f32 {
        self.scales[r]
    }
}

/// Bytes from one row's codes to the next's for a reduction of `k`: the codes padded to whole
/// cache lines, and an odd number of lines, so that the rows an AMX tile or a register tile reads
/// at once fall in different L1 sets. Packed this close (rather than in the bytes of each row's
/// own `f32` values, 4 × `k` apart) a 32-row block's codes span a quarter of the pages.
pub(crate) fn code_stride(k: usize) -> usize {
    let lines = k.div_ceil(64).max(1);
    64 * (lines | 1)
}

/// Quantises the rows of `x` into `codes`, row `r` at byte `r * stride` (its `k` codes padded
/// with zero codes to a multiple of 4), and row `r`'s scale into `scales[r]`.
///
/// # Panics
/// If `codes` or `scales` is too short, or `stride` is below the padded row.
#[inline(always)]
pub(crate) fn quantize_rows(x: Rows<'_>, codes: &mut [u8], stride: usize, scales: &mut [f32]) {
    let k = x.cols();
    let padded = k.div_ceil(4) * 4;
    assert!(padded <= stride || x.rows() <= 1);
    for (r, scale) in scales.iter_mut().enumerate().take(x.rows()) {
        let row = x.row(r);
        let (s, inv) = row_scale(row);
        *scale = s;
        let dst = &mut codes[r * stride..r * stride + padded];
        for (code, &v) in dst.iter_mut().zip(row) {
            *code = activation_code(v, inv);
        }
        dst[k..].fill(activation_code(0.0, inv));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_reference_values_rows_a_stride_apart() {
        let k = 37;
        let stride = 41;
        let values: Vec<f32> = (0..3 * stride)
            .map(|i| ((i * 7) % 23) as f32 - 11.0)
            .collect();
        let mut codes = vec![7u8; 2 * 64 + 40];
        let mut scales = [0.0f32; 3];
        quantize_rows(
            Rows::new(&values, 3, k, stride),
            &mut codes,
            64,
            &mut scales,
        );
        let q = QuantizedRows::new(&codes, &scales, 3, k, 64);
        for r in 0..3 {
            let row = &values[r * stride..r * stride + k];
            let (s, inv) = row_scale(row);
            assert_eq!(q.scale(r), s);
            let want: Vec<u8> = row.iter().map(|&v| activation_code(v, inv)).collect();
            assert_eq!(&q.row(r)[..k], &want[..]);
            assert_eq!(&q.row(r)[k..], &[128, 128, 128]);
            // The largest magnitude maps to ±127.
            assert!(q.row(r)[..k].iter().any(|&c| c == 1 || c == 255));
        }
        // Bytes between rows are left alone.
        assert_eq!(codes[40..64], [7; 24]);
    }

    #[test]
    fn code_rows_take_an_odd_number_of_whole_lines() {
        assert_eq!(code_stride(0), 64);
        assert_eq!(code_stride(37), 64);
        assert_eq!(code_stride(64), 64);
        assert_eq!(code_stride(65), 192);
        assert_eq!(code_stride(512), 576);
        assert_eq!(code_stride(784), 832);
    }

    #[test]
    fn zero_and_non_finite_rows() {
        let values = [0.0f32, 0.0, 0.0, 1.0, f32::NAN, 2.0, -1.0, f32::INFINITY];
        let mut codes = [9u8; 12];
        let mut scales = [9.0f32; 3];
        quantize_rows(
            Rows::new(&values, 2, 3, 3),
            &mut codes[..8],
            4,
            &mut scales[..2],
        );
        assert_eq!(scales[0], 0.0);
        assert!(scales[1].is_nan());
        assert_eq!(&codes[..4], &[128; 4]);
        assert_eq!(&codes[4..8], &[128; 4]);
        quantize_rows(
            Rows::new(&values[6..], 1, 2, 2),
            &mut codes[8..],
            4,
            &mut scales[2..],
        );
        assert!(scales[2].is_nan());
    }
}
