//! A layer's input quantised per row for [`super::Precision::Int8Full`]: each row's codes are
//! written over the row's own `f32` values in the workspace, so the quantised block needs no
//! memory of its own, and each row's scale goes to a small per-row array.

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

/// Values quantised per step of [`quantize_in_place`].
const CHUNK: usize = 16;

/// Quantises `rows` rows of `k` values, `stride` floats apart in `buf`, in place: row `r`'s codes
/// (padded with zero codes to a multiple of 4) overwrite the start of its own values and its scale
/// goes to `scales[r]`. Code `j` lands in the bytes of value `j / 4`, which the loop has read by
/// then, so no value is overwritten before it is quantised.
///
/// # Panics
/// If `buf` or `scales` is too short.
#[inline(always)]
pub(crate) fn quantize_in_place(
    buf: &mut [f32],
    rows: usize,
    k: usize,
    stride: usize,
    scales: &mut [f32],
) {
    assert!(k <= stride || rows <= 1);
    for (r, scale) in scales.iter_mut().enumerate().take(rows) {
        let row = &mut buf[r * stride..r * stride + k];
        let (s, inv) = row_scale(row);
        *scale = s;
        let mut chunk = [0.0f32; CHUNK];
        let mut c = 0;
        while c < k {
            let len = CHUNK.min(k - c);
            chunk[..len].copy_from_slice(&row[c..c + len]);
            let codes: &mut [u8] = bytemuck::cast_slice_mut(&mut *row);
            for (code, &v) in codes[c..c + len].iter_mut().zip(&chunk[..len]) {
                *code = activation_code(v, inv);
            }
            c += len;
        }
        let codes: &mut [u8] = bytemuck::cast_slice_mut(&mut *row);
        for code in codes.iter_mut().take(k.div_ceil(4) * 4).skip(k) {
            *code = activation_code(0.0, inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_overwrite_their_own_row_with_the_reference_values() {
        let k = 37;
        let stride = 41;
        let values: Vec<f32> = (0..3 * stride)
            .map(|i| ((i * 7) % 23) as f32 - 11.0)
            .collect();
        let mut buf = values.clone();
        let mut scales = [0.0f32; 3];
        quantize_in_place(&mut buf, 3, k, stride, &mut scales);
        let bytes: &[u8] = bytemuck::cast_slice(&buf);
        let q = QuantizedRows::new(bytes, &scales, 3, k, 4 * stride);
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
    }

    #[test]
    fn zero_and_non_finite_rows() {
        let mut buf = vec![0.0f32, 0.0, 0.0, 1.0, f32::NAN, 2.0, -1.0, f32::INFINITY];
        let mut scales = [9.0f32; 3];
        quantize_in_place(&mut buf[..6], 2, 3, 3, &mut scales[..2]);
        assert_eq!(scales[0], 0.0);
        assert!(scales[1].is_nan());
        let bytes: &[u8] = bytemuck::cast_slice(&buf);
        assert_eq!(&bytes[..4], &[128; 4]);
        assert_eq!(&bytes[12..16], &[128; 4]);
        quantize_in_place(&mut buf[6..], 1, 2, 2, &mut scales[2..]);
        assert!(scales[2].is_nan());
    }
}
