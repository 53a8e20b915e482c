//! The full-int8 kernel (`super::int8_dot`) compiled with x86 SIMD target features. With AVX-512
//! VNNI, 16- and 32-wide panels run on `vpdpbusd`, which adds 4 unsigned-by-signed byte products
//! into each `i32` lane without saturating: 64 products per instruction. Without VNNI (and for
//! the narrow heads) the plain integer lanes run, vectorised by the compiler for the instruction
//! set; every path sums exactly, so all give the same bits.

use std::arch::x86_64::*;

use super::generic::MR_MAX_32_REGISTERS;
use super::int8_dot::{Dot, dense_any_width, dense_int8_full};
use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use super::precision::{ACTIVATION_CODE_OFFSET, activation_code, scale_for_max};
use super::quantized_rows::QuantizedRows;
use crate::Activation;

/// 16 columns of sums in one zmm register, fed by `vpdpbusd`.
#[derive(Debug)]
pub(super) struct VnniZmm;

impl Dot for VnniZmm {
    const N: usize = 16;
    type Acc = __m512i;
    type X = __m512i;
    #[inline(always)]
    unsafe fn zero() -> __m512i {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_setzero_si512() }
    }
    #[inline(always)]
    unsafe fn load_x(p: *const u8) -> __m512i {
        // SAFETY: the caller guarantees AVX-512F and 4 readable bytes.
        unsafe { _mm512_set1_epi32(p.cast::<i32>().read_unaligned()) }
    }
    #[inline(always)]
    unsafe fn dot(acc: __m512i, x: __m512i, w: *const i8) -> __m512i {
        // SAFETY: the caller guarantees AVX-512 VNNI and 64 readable bytes at `w`.
        unsafe { _mm512_dpbusd_epi32(acc, x, _mm512_loadu_si512(w.cast())) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, acc: __m512i) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable sums.
        unsafe { _mm512_storeu_si512(p.cast(), acc) }
    }
}

/// Whether this CPU runs the VNNI path of [`dense_avx512`].
pub(super) fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// The full-int8 kernel for AVX-512 with VNNI.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, AVX-512 VNNI, AVX2 and FMA ([`has_vnni`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn dense_avx512_vnni(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
) {
    const MR: usize = MR_MAX_32_REGISTERS;
    match w.nr() {
        32 => dense_int8_full::<VnniZmm, 32, 2, MR>(x, w, col0, bias, activation, out),
        16 => dense_int8_full::<VnniZmm, 16, 1, MR>(x, w, col0, bias, activation, out),
        _ => dense_any_width::<MR>(x, w, col0, bias, activation, out),
    }
}

/// The full-int8 kernel's plain integer lanes compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn dense_avx2(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
) {
    dense_any_width::<6>(x, w, col0, bias, activation, out)
}

/// [`super::quantized_rows::quantize_rows`] in AVX2 intrinsics, 8 values a step: the same
/// elementwise operations (`vmulps`, `vcvtps2dq` rounding to nearest even, a clamp to ±127), so
/// the same codes.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn quantize_avx2(
    x: Rows<'_>,
    codes: &mut [u8],
    stride: usize,
    scales: &mut [f32],
) {
    let k = x.cols();
    assert!(k.div_ceil(4) * 4 <= stride || x.rows() <= 1);
    for (r, scale) in scales.iter_mut().enumerate().take(x.rows()) {
        let row = x.row(r);
        let dst = &mut codes[r * stride..r * stride + k.div_ceil(4) * 4];
        let (s, inv) = row_scale_avx2(row);
        *scale = s;
        let mut c = 0;
        if inv != 0.0 {
            // SAFETY: AVX2 is the caller's guarantee. Each step reads values `c..c + 8 <= k` of
            // the row and writes codes `c..c + 8` of `dst`, which is at least `k` long.
            unsafe {
                let mul = _mm256_set1_ps(inv);
                let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
                let offset = _mm_set1_epi16(ACTIVATION_CODE_OFFSET as i16);
                while c + 8 <= k {
                    let v = _mm256_mul_ps(_mm256_loadu_ps(row.as_ptr().add(c)), mul);
                    let q = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(v), lo), hi);
                    let words = _mm_packs_epi32(
                        _mm256_castsi256_si128(q),
                        _mm256_extracti128_si256::<1>(q),
                    );
                    let bytes = _mm_packus_epi16(_mm_add_epi16(words, offset), offset);
                    _mm_storel_epi64(dst.as_mut_ptr().add(c).cast(), bytes);
                    c += 8;
                }
            }
        }
        finish_row(row, dst, c, inv);
    }
}

/// [`super::quantized_rows::quantize_rows`] in AVX-512 intrinsics, 16 values a step (as
/// [`quantize_avx2`]).
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn quantize_avx512(
    x: Rows<'_>,
    codes: &mut [u8],
    stride: usize,
    scales: &mut [f32],
) {
    let k = x.cols();
    assert!(k.div_ceil(4) * 4 <= stride || x.rows() <= 1);
    for (r, scale) in scales.iter_mut().enumerate().take(x.rows()) {
        let row = x.row(r);
        let dst = &mut codes[r * stride..r * stride + k.div_ceil(4) * 4];
        let (s, inv) = row_scale_avx2(row);
        *scale = s;
        let mut c = 0;
        if inv != 0.0 {
            // SAFETY: as in `quantize_avx2`, 16 values a step.
            unsafe {
                let mul = _mm512_set1_ps(inv);
                let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
                let offset = _mm512_set1_epi32(ACTIVATION_CODE_OFFSET);
                while c + 16 <= k {
                    let v = _mm512_mul_ps(_mm512_loadu_ps(row.as_ptr().add(c)), mul);
                    let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), lo), hi);
                    let bytes = _mm512_cvtepi32_epi8(_mm512_add_epi32(q, offset));
                    _mm_storeu_si128(dst.as_mut_ptr().add(c).cast(), bytes);
                    c += 16;
                }
            }
        }
        finish_row(row, dst, c, inv);
    }
}

/// A row's scale and multiplier as `row_scale` computes them, 8 values a step: the largest
/// magnitude is the same whatever the order, so the same scale.
#[inline(always)]
fn row_scale_avx2(row: &[f32]) -> (f32, f32) {
    let mut c = 0;
    let mut max = 0.0f32;
    let mut finite = true;
    // SAFETY: AVX2 is the callers' guarantee (they are compiled with it); reads stay in `row`.
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let inf = _mm256_set1_ps(f32::INFINITY);
        // Four independent maxima: one chain of `vmaxps` would wait on its own latency.
        let mut m = [_mm256_setzero_ps(); 4];
        let mut bad = _mm256_setzero_ps();
        while c + 32 <= row.len() {
            for (j, m) in m.iter_mut().enumerate() {
                let a = _mm256_and_ps(_mm256_loadu_ps(row.as_ptr().add(c + 8 * j)), abs);
                *m = _mm256_max_ps(*m, a);
                // Not less than infinity (unordered too): an infinity or a NaN.
                bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf));
            }
            c += 32;
        }
        while c + 8 <= row.len() {
            let a = _mm256_and_ps(_mm256_loadu_ps(row.as_ptr().add(c)), abs);
            m[0] = _mm256_max_ps(m[0], a);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf));
            c += 8;
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(
            lanes.as_mut_ptr(),
            _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])),
        );
        for v in lanes {
            max = if v > max { v } else { max };
        }
        finite &= _mm256_movemask_ps(bad) == 0;
    }
    for &v in &row[c..] {
        let a = v.abs();
        max = if a > max { a } else { max };
        finite &= a < f32::INFINITY;
    }
    scale_for_max(max, finite)
}

/// Codes for values `c..` of a row and its padding, one at a time (all zero codes when the row
/// quantises to zero: `inv == 0`).
#[inline(always)]
fn finish_row(row: &[f32], dst: &mut [u8], c: usize, inv: f32) {
    if inv == 0.0 {
        dst.fill(activation_code(0.0, 0.0));
        return;
    }
    for (j, code) in dst.iter_mut().enumerate().skip(c) {
        *code = activation_code(row.get(j).copied().unwrap_or(0.0), inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::KernelKind;
    use crate::kernels::quantized_rows::quantize_rows;

    type Quantizer = unsafe fn(Rows<'_>, &mut [u8], usize, &mut [f32]);

    /// Rows with ties (`127 / a = 1`: halves round to even), a tiny row, NaN and an infinity
    /// at every position class, for every length up to 3 SIMD steps.
    #[test]
    fn simd_quantisers_give_the_portable_codes_and_scales() {
        for k in 0..50 {
            let stride = k + 3;
            let mut rows: Vec<Vec<f32>> = vec![
                (0..k).map(|j| j as f32 - 0.5 * (j % 5) as f32).collect(),
                (0..k)
                    .map(|j| if j == k / 2 { 127.0 } else { (j as f32) - 20.5 })
                    .collect(),
                (0..k).map(|j| 1e-31 * j as f32).collect(),
                (0..k).map(|j| ((j * 37) % 11) as f32 * 0.01).collect(),
            ];
            if k > 0 {
                rows.push(
                    (0..k)
                        .map(|j| if j == k - 1 { f32::NAN } else { 1.0 })
                        .collect(),
                );
                rows.push(
                    (0..k)
                        .map(|j| if j == k / 3 { f32::INFINITY } else { -2.0 })
                        .collect(),
                );
            }
            let mut buf = vec![0.0f32; rows.len() * stride];
            for (r, row) in rows.iter().enumerate() {
                buf[r * stride..r * stride + k].copy_from_slice(row);
            }
            let n = rows.len();
            let x = Rows::new(&buf, n, k, stride);
            // Code rows a little apart, so that a quantiser writing past its row shows.
            let code_stride = k.div_ceil(4) * 4 + 5;
            let (mut want, mut want_scales) = (vec![3u8; n * code_stride], vec![0.0f32; n]);
            quantize_rows(x, &mut want, code_stride, &mut want_scales);
            let mut quantizers: Vec<Quantizer> = vec![];
            if KernelKind::Avx2Fma.is_supported() {
                quantizers.push(quantize_avx2);
            }
            if has_vnni() {
                quantizers.push(quantize_avx512);
            }
            for quantize in quantizers {
                let (mut got, mut scales) = (vec![3u8; n * code_stride], vec![0.0f32; n]);
                // SAFETY: only the quantisers this CPU supports are in the list.
                unsafe { quantize(x, &mut got, code_stride, &mut scales) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&scales), bits(&want_scales), "k={k}");
                assert_eq!(got, want, "k={k}");
            }
        }
    }
}
