//! The bf16 / int8 weight kernel (`super::widened`) compiled with x86 SIMD target features: the
//! widening loads for xmm, ymm and zmm registers, and one instantiation per panel width and
//! element type. bf16 widens with one AND (an even step, the high halves of its words) or one
//! 16-bit left shift (an odd step, the low halves) per register (`vpand`, `vpslld`); int8 with a
//! sign extension and a conversion (`vpmovsxbd`, `vcvtdq2ps`), exact for codes in ±127. Layers at
//! most 4 wide run on xmm registers, as in `super::x86`.

use std::arch::x86_64::*;

use super::generic::{MR_MAX_16_REGISTERS, MR_MAX_32_REGISTERS, MR_TALL_32_REGISTERS};
use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use super::widened::{Widen, dense_widened};
use super::x86::{Xmm, Ymm, Zmm};
use crate::Activation;

/// The mask that keeps the high half of each 32-bit word: an even step's bf16 bits, in place
/// as an `f32`'s.
const HIGH_HALVES: i32 = 0xFFFF_0000_u32 as i32;

impl Widen for Xmm {
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const u16) -> __m128 {
        // SAFETY: SSE2 is baseline; the caller guarantees 8 readable elements (16 bytes).
        unsafe {
            let words = _mm_loadu_si128(p.cast());
            _mm_castsi128_ps(if ODD {
                _mm_slli_epi32::<16>(words)
            } else {
                _mm_and_si128(words, _mm_set1_epi32(HIGH_HALVES))
            })
        }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m128 {
        // SAFETY: the caller guarantees SSE4.1 and 4 readable elements (4 bytes).
        unsafe {
            let word = p.cast::<i32>().read_unaligned();
            _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(word)))
        }
    }
}

impl Widen for Ymm {
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees AVX2 and 16 readable elements (32 bytes).
        unsafe {
            let words = _mm256_loadu_si256(p.cast());
            _mm256_castsi256_ps(if ODD {
                _mm256_slli_epi32::<16>(words)
            } else {
                _mm256_and_si256(words, _mm256_set1_epi32(HIGH_HALVES))
            })
        }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m256 {
        // SAFETY: the caller guarantees AVX2 and 8 readable elements (8 bytes).
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
    }
}

impl Widen for Zmm {
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const u16) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F and 32 readable elements (64 bytes).
        unsafe {
            let words = _mm512_loadu_si512(p.cast());
            _mm512_castsi512_ps(if ODD {
                _mm512_slli_epi32::<16>(words)
            } else {
                _mm512_and_si512(words, _mm512_set1_epi32(HIGH_HALVES))
            })
        }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F and 16 readable elements (16 bytes).
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }
}

/// One instantiation per function, as in `super::x86`.
macro_rules! instance {
    ($name:ident, $features:literal, $lanes:ty, $elem:ty, $nr:literal, $nv:literal, $mr:expr, $mr_f32:expr) => {
        /// # Safety
        #[doc = concat!("The CPU must support ", $features, ".")]
        #[target_feature(enable = $features)]
        #[inline(never)]
        unsafe fn $name(
            x: Rows<'_>,
            w: &PackedWeights,
            col0: usize,
            bias: &[f32],
            activation: Activation,
            out: RowsMut<'_>,
            kc: usize,
        ) {
            dense_widened::<$lanes, $elem, $nr, $nv, { $mr }, { $mr_f32 }>(
                x, w, col0, bias, activation, out, kc,
            )
        }
    };
}

instance!(
    avx2_bf16_nr4,
    "avx2,fma",
    Xmm,
    u16,
    4,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx2_bf16_nr8,
    "avx2,fma",
    Ymm,
    u16,
    8,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx2_bf16_nr16,
    "avx2,fma",
    Ymm,
    u16,
    16,
    2,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx2_int8_nr4,
    "avx2,fma",
    Xmm,
    i8,
    4,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx2_int8_nr8,
    "avx2,fma",
    Ymm,
    i8,
    8,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx2_int8_nr16,
    "avx2,fma",
    Ymm,
    i8,
    16,
    2,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx512_bf16_nr4,
    "avx512f,avx2,fma",
    Xmm,
    u16,
    4,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx512_bf16_nr8,
    "avx512f,avx2,fma",
    Ymm,
    u16,
    8,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx512_bf16_nr16,
    "avx512f,avx2,fma",
    Zmm,
    u16,
    16,
    1,
    MR_MAX_32_REGISTERS,
    MR_MAX_32_REGISTERS
);
instance!(
    avx512_bf16_nr32,
    "avx512f,avx2,fma",
    Zmm,
    u16,
    32,
    2,
    MR_MAX_32_REGISTERS,
    MR_TALL_32_REGISTERS
);
instance!(
    avx512_int8_nr4,
    "avx512f,avx2,fma",
    Xmm,
    i8,
    4,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx512_int8_nr8,
    "avx512f,avx2,fma",
    Ymm,
    i8,
    8,
    1,
    MR_MAX_16_REGISTERS,
    MR_MAX_16_REGISTERS
);
instance!(
    avx512_int8_nr16,
    "avx512f,avx2,fma",
    Zmm,
    i8,
    16,
    1,
    MR_MAX_32_REGISTERS,
    MR_MAX_32_REGISTERS
);
instance!(
    avx512_int8_nr32,
    "avx512f,avx2,fma",
    Zmm,
    i8,
    32,
    2,
    MR_MAX_32_REGISTERS,
    MR_TALL_32_REGISTERS
);

/// AVX2 + FMA, bf16 (`int8 == false`) or int8 weights, panel widths as for f32.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn dense_avx2_fma(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
    int8: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (int8, w.nr()) {
            (false, 4) => avx2_bf16_nr4(x, w, col0, bias, activation, out, kc),
            (false, 8) => avx2_bf16_nr8(x, w, col0, bias, activation, out, kc),
            (false, _) => avx2_bf16_nr16(x, w, col0, bias, activation, out, kc),
            (true, 4) => avx2_int8_nr4(x, w, col0, bias, activation, out, kc),
            (true, 8) => avx2_int8_nr8(x, w, col0, bias, activation, out, kc),
            (true, _) => avx2_int8_nr16(x, w, col0, bias, activation, out, kc),
        }
    }
}

/// AVX-512F, bf16 (`int8 == false`) or int8 weights, panel widths as for f32.
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn dense_avx512(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
    int8: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (int8, w.nr()) {
            (false, 4) => avx512_bf16_nr4(x, w, col0, bias, activation, out, kc),
            (false, 8) => avx512_bf16_nr8(x, w, col0, bias, activation, out, kc),
            (false, 16) => avx512_bf16_nr16(x, w, col0, bias, activation, out, kc),
            (false, _) => avx512_bf16_nr32(x, w, col0, bias, activation, out, kc),
            (true, 4) => avx512_int8_nr4(x, w, col0, bias, activation, out, kc),
            (true, 8) => avx512_int8_nr8(x, w, col0, bias, activation, out, kc),
            (true, 16) => avx512_int8_nr16(x, w, col0, bias, activation, out, kc),
            (true, _) => avx512_int8_nr32(x, w, col0, bias, activation, out, kc),
        }
    }
}

/// The AVX-512 instantiations' panel widths (16 and 32) and tile height compiled for AVX2, so
/// that the conformance suite runs those code paths on any x86-64 CPU (as
/// `super::x86::dense_avx2_fma_wide`).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense_avx2_fma_wide(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
    int8: bool,
) {
    match (int8, w.nr()) {
        (false, 16) => dense_widened::<Ymm, u16, 16, 2, MR_MAX_32_REGISTERS, MR_MAX_32_REGISTERS>(
            x, w, col0, bias, activation, out, kc,
        ),
        (false, _) => dense_widened::<Ymm, u16, 32, 4, MR_MAX_32_REGISTERS, MR_MAX_32_REGISTERS>(
            x, w, col0, bias, activation, out, kc,
        ),
        (true, 16) => dense_widened::<Ymm, i8, 16, 2, MR_MAX_32_REGISTERS, MR_MAX_32_REGISTERS>(
            x, w, col0, bias, activation, out, kc,
        ),
        (true, _) => dense_widened::<Ymm, i8, 32, 4, MR_MAX_32_REGISTERS, MR_MAX_32_REGISTERS>(
            x, w, col0, bias, activation, out, kc,
        ),
    }
}
