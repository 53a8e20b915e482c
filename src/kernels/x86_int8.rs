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

/// [`super::quantized_rows::quantize_rows`] in AVX-512 intrinsics, 64 values a step: the same
/// products, rounded to nearest even by `vcvtps2dq`, then narrowed to bytes by saturating packs.
/// `|v · 127 / a| <= 127` up to a rounding step, so the packs never saturate and the clamp to
/// ±127 never binds on a row that is quantised at all: the same codes.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
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
        // SAFETY: AVX-512F is the caller's guarantee.
        let (s, inv) = unsafe { row_scale_avx512(row) };
        *scale = s;
        let mut c = 0;
        if inv != 0.0 {
            // SAFETY: AVX-512F/BW are the caller's guarantee. Each step reads values
            // `c..c + 64 <= k` (or `c + 16`) of the row and writes codes `c..c + 64` (`c + 16`)
            // of `dst`, which is at least `k` long.
            unsafe {
                let mul = _mm512_set1_ps(inv);
                // A macro, not a closure: a closure would not inherit the target features.
                macro_rules! q {
                    ($c:expr) => {
                        _mm512_cvtps_epi32(_mm512_mul_ps(
                            _mm512_loadu_ps(row.as_ptr().add($c)),
                            mul,
                        ))
                    };
                }
                let lo = _mm512_set1_epi8(-127);
                // `q + 128` as a byte is `q` with its top bit flipped.
                let flip = _mm512_set1_epi8(i8::MIN);
                // The packs interleave their operands by 128-bit lane: 32-bit group `4 l + j`
                // holds values `4 l .. 4 l + 4` of the `j`-th 16.
                let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                while c + 64 <= k {
                    let words = (
                        _mm512_packs_epi32(q!(c), q!(c + 16)),
                        _mm512_packs_epi32(q!(c + 32), q!(c + 48)),
                    );
                    let bytes =
                        _mm512_permutexvar_epi32(order, _mm512_packs_epi16(words.0, words.1));
                    let bytes = _mm512_xor_si512(_mm512_max_epi8(bytes, lo), flip);
                    _mm512_storeu_si512(dst.as_mut_ptr().add(c).cast(), bytes);
                    c += 64;
                }
                let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
                let offset = _mm512_set1_epi32(ACTIVATION_CODE_OFFSET);
                while c + 16 <= k {
                    let q = _mm512_min_epi32(_mm512_max_epi32(q!(c), lo), hi);
                    let bytes = _mm512_cvtepi32_epi8(_mm512_add_epi32(q, offset));
                    _mm_storeu_si128(dst.as_mut_ptr().add(c).cast(), bytes);
                    c += 16;
                }
            }
        }
        finish_row(row, dst, c, inv);
    }
}

/// A row's scale and multiplier as `row_scale` computes them, 16 values a step. Magnitudes are
/// compared as integers: with the sign bit cleared, a float's bits order as its value, and
/// infinities and NaN lie above every finite value, so one maximum gives both the largest
/// magnitude and whether the row is finite.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn row_scale_avx512(row: &[f32]) -> (f32, f32) {
    let p = row.as_ptr().cast::<i32>();
    let mut c = 0;
    // SAFETY: AVX-512F is the caller's guarantee; full loads read values `c..c + 16 <= len`,
    // the masked load only the `len - c` values left (masked-off lanes never fault).
    let bits = unsafe {
        let magnitude = _mm512_set1_epi32(i32::MAX);
        // Four independent maxima: one chain of `vpmaxsd` would wait on its own latency.
        let mut m = [_mm512_setzero_si512(); 4];
        while c + 64 <= row.len() {
            for (j, m) in m.iter_mut().enumerate() {
                let v = _mm512_loadu_si512(p.add(c + 16 * j).cast());
                *m = _mm512_max_epi32(*m, _mm512_and_si512(v, magnitude));
            }
            c += 64;
        }
        while c + 16 <= row.len() {
            let v = _mm512_loadu_si512(p.add(c).cast());
            m[0] = _mm512_max_epi32(m[0], _mm512_and_si512(v, magnitude));
            c += 16;
        }
        let rest = (1u32 << (row.len() - c)) - 1;
        let v = _mm512_maskz_loadu_epi32(rest as u16, p.add(c));
        m[1] = _mm512_max_epi32(m[1], _mm512_and_si512(v, magnitude));
        let m = _mm512_max_epi32(_mm512_max_epi32(m[0], m[1]), _mm512_max_epi32(m[2], m[3]));
        _mm512_reduce_max_epi32(m) as u32
    };
    scale_for_max(f32::from_bits(bits), bits < f32::INFINITY.to_bits())
}

/// A row's scale and multiplier as `row_scale` computes them, 8 values a step, comparing
/// magnitudes as integers as [`row_scale_avx512`] does.
#[inline(always)]
fn row_scale_avx2(row: &[f32]) -> (f32, f32) {
    let p = row.as_ptr().cast::<__m256i>();
    let mut c = 0;
    // SAFETY: AVX2 is the callers' guarantee (they are compiled with it); reads stay in `row`.
    let mut bits = unsafe {
        let magnitude = _mm256_set1_epi32(i32::MAX);
        let mut m = [_mm256_setzero_si256(); 4];
        while c + 32 <= row.len() {
            for (j, m) in m.iter_mut().enumerate() {
                let v = _mm256_loadu_si256(p.byte_add(4 * (c + 8 * j)));
                *m = _mm256_max_epi32(*m, _mm256_and_si256(v, magnitude));
            }
            c += 32;
        }
        while c + 8 <= row.len() {
            let v = _mm256_loadu_si256(p.byte_add(4 * c));
            m[0] = _mm256_max_epi32(m[0], _mm256_and_si256(v, magnitude));
            c += 8;
        }
        let m = _mm256_max_epi32(_mm256_max_epi32(m[0], m[1]), _mm256_max_epi32(m[2], m[3]));
        let mut lanes = [0u32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), m);
        lanes.into_iter().max().unwrap_or(0)
    };
    for &v in &row[c..] {
        bits = bits.max(v.to_bits() & 0x7fff_ffff);
    }
    scale_for_max(f32::from_bits(bits), bits < f32::INFINITY.to_bits())
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
    /// at every position class, for every length up to 3 SIMD steps and around the 64-wide step.
    #[test]
    fn simd_quantisers_give_the_portable_codes_and_scales() {
        for k in (0..50).chain([63, 64, 65, 79, 127, 128, 143, 200]) {
            let stride = k + 3;
            let mut rows: Vec<Vec<f32>> = vec![
                (0..k).map(|j| j as f32 - 0.5 * (j % 5) as f32).collect(),
                (0..k)
                    .map(|j| if j == k / 2 { 127.0 } else { (j as f32) - 20.5 })
                    .collect(),
                (0..k).map(|j| 1e-31 * j as f32).collect(),
                (0..k).map(|j| ((j * 37) % 11) as f32 * 0.01).collect(),
                (0..k)
                    .map(|j| {
                        if j % 7 == 0 {
                            -3.0
                        } else {
                            1.5 + j as f32 * 1e-3
                        }
                    })
                    .collect(),
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
