//! The generic kernel (`super::generic`) compiled with x86 SIMD target features, selected at run
//! time. The kernel is written once against the `Lanes` trait; what is x86-specific here is only
//! the trait's one-instruction wrappers (load, store, broadcast, FMA) for ymm and zmm registers.
//! The AVX-512 kernel is the same source as the AVX2 one with 32-wide panels, and the conformance
//! suite also runs that 32-wide instantiation under AVX2, so a machine without AVX-512 still
//! tests the code an AVX-512 machine runs except for those four wrappers.
//!
//! Why intrinsics at all: plain-Rust `[f32; NR]` tiles left the vectorising to LLVM's SLP pass,
//! which vectorised some tile shapes and mangled others (the 5-row tile became a shuffle-and-spill
//! loop at ~10 GFLOP/s); explicit registers make every tile shape compile to the same clean
//! broadcast-and-FMA loop.

use std::arch::x86_64::*;

use super::generic::{
    Lanes, MR_MAX_16_REGISTERS, MR_MAX_32_REGISTERS, MR_TALL_32_REGISTERS, dense_tiled,
    micro_loop_tall, panel_tiles,
};
use super::matrix::{Rows, RowsMut};
use super::narrow_avx512::dense_groups_of_4;
use super::packed::PackedWeights;
use crate::Activation;

/// 4 lanes in an xmm register (for layers at most 4 wide).
#[derive(Debug)]
pub(super) struct Xmm;

impl Lanes for Xmm {
    const N: usize = 4;
    const REGISTERS: usize = 16;
    type V = __m128;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m128 {
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m128 {
        // SAFETY: the caller guarantees 4 readable floats at `p`.
        unsafe { _mm_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m128) {
        // SAFETY: the caller guarantees 4 writable floats at `p`.
        unsafe { _mm_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m128, b: __m128, c: __m128) -> __m128 {
        // SAFETY: the caller guarantees FMA.
        unsafe { _mm_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn relu(v: __m128) -> __m128 {
        // As for `Ymm::relu`: MAXPS returns the second operand on NaN or equal zeros.
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_max_ps(_mm_setzero_ps(), v) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: a prefetch is a hint and never faults, whatever the address (SSE, baseline).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    micro_loop_tall!("avx2,fma");
    panel_tiles!("avx2,fma");
}

/// 8 lanes in a ymm register.
#[derive(Debug)]
pub(super) struct Ymm;

impl Lanes for Ymm {
    const N: usize = 8;
    const REGISTERS: usize = 16;
    type V = __m256;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        // SAFETY: the caller runs on a CPU with AVX (trait contract).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees AVX and 8 readable floats at `p`.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: the caller guarantees AVX and 8 writable floats at `p`.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: the caller guarantees FMA.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn relu(v: __m256) -> __m256 {
        // `max(0, v)` returns its second operand when either is NaN or both are zero, so NaN and
        // -0.0 pass through exactly as in `Activation::Relu`.
        // SAFETY: the caller guarantees AVX.
        unsafe { _mm256_max_ps(_mm256_setzero_ps(), v) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: a prefetch is a hint and never faults, whatever the address (SSE, baseline).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    micro_loop_tall!("avx2,fma");
    panel_tiles!("avx2,fma");
}

/// 16 lanes in a zmm register.
#[derive(Debug)]
pub(super) struct Zmm;

impl Lanes for Zmm {
    const N: usize = 16;
    const REGISTERS: usize = 32;
    type V = __m512;
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        // SAFETY: the caller runs on a CPU with AVX-512F (trait contract).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F and 16 readable floats at `p`.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: the caller guarantees AVX-512F and 16 writable floats at `p`.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn relu(v: __m512) -> __m512 {
        // As for `Ymm::relu`: VMAXPS returns the second operand on NaN or equal zeros.
        // SAFETY: the caller guarantees AVX-512F.
        unsafe { _mm512_max_ps(_mm512_setzero_ps(), v) }
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        // SAFETY: a prefetch is a hint and never faults, whatever the address (SSE, baseline).
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    micro_loop_tall!("avx512f,avx2,fma");
    panel_tiles!("avx512f,avx2,fma");
}

/// One instantiation of the generic kernel per function: `dense_tiled` inlines every tile
/// shape, and with all panel widths inlined into one function the shapes shared its register
/// allocation and layout (one more panel width made tiny-mlp's sub-µs calls 1.3–1.6× slower).
macro_rules! instance {
    ($(#[$doc:meta])* $name:ident, $features:literal, $lanes:ty, $nr:literal, $nv:literal, $mr:expr) => {
        $(#[$doc])*
        ///
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
            dense_tiled::<$lanes, $nr, $nv, { $mr }>(x, w, col0, bias, activation, out, kc)
        }
    };
}

instance!(
    /// Layers at most 4 wide on xmm registers.
    avx2_nr4, "avx2,fma", Xmm, 4, 1, MR_MAX_16_REGISTERS
);
instance!(
    /// Layers at most 8 wide on one ymm register per tile row.
    avx2_nr8, "avx2,fma", Ymm, 8, 1, MR_MAX_16_REGISTERS
);
instance!(
    /// 16-wide panels: a 6 × 16 tile is 12 ymm accumulators (of 16 registers).
    avx2_nr16, "avx2,fma", Ymm, 16, 2, MR_MAX_16_REGISTERS
);
instance!(
    /// Layers at most 4 wide, as [`avx2_nr4`].
    avx512_nr4, "avx512f,avx2,fma", Xmm, 4, 1, MR_MAX_16_REGISTERS
);
instance!(
    /// Layers at most 8 wide, as [`avx2_nr8`].
    avx512_nr8, "avx512f,avx2,fma", Ymm, 8, 1, MR_MAX_16_REGISTERS
);
instance!(
    /// Layers at most 16 wide (classifier heads) on one zmm register per tile row.
    avx512_nr16, "avx512f,avx2,fma", Zmm, 16, 1, MR_MAX_32_REGISTERS
);
instance!(
    /// 32-wide panels: a 12 × 32 tile is 24 zmm accumulators (of 32 registers).
    avx512_nr32, "avx512f,avx2,fma", Zmm, 32, 2, MR_TALL_32_REGISTERS
);

/// AVX2 + FMA, 16-wide panels. Layers at most 8 wide come in 4- or 8-wide panels
/// (`KernelKind::panel_width`) and run on xmm or one ymm per tile row: a padded 16-wide panel
/// would spend most of its FMAs on padding and miss the register-only path.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
pub(super) unsafe fn dense_avx2_fma(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match w.nr() {
            4 => avx2_nr4(x, w, col0, bias, activation, out, kc),
            8 => avx2_nr8(x, w, col0, bias, activation, out, kc),
            _ => avx2_nr16(x, w, col0, bias, activation, out, kc),
        }
    }
}

/// AVX-512F, 32-wide panels; layers at most 16 wide in 16-wide panels (half the padding of a
/// 10-wide head), at most 8 wide as in [`dense_avx2_fma`], and at most 4 wide four rows to a
/// register (`super::narrow_avx512`), the last one to three rows as in [`dense_avx2_fma`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
pub(super) unsafe fn dense_avx512(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match w.nr() {
            4 if col0 == 0 && w.n() > 0 && out.cols() == w.n() && x.rows() >= 4 => {
                let mut out = out;
                let done = dense_groups_of_4(x, w, bias, activation, &mut out);
                avx512_nr4(
                    x.rows_from(done),
                    w,
                    0,
                    bias,
                    activation,
                    out.rows_from(done),
                    kc,
                )
            }
            4 => avx512_nr4(x, w, col0, bias, activation, out, kc),
            8 => avx512_nr8(x, w, col0, bias, activation, out, kc),
            16 => avx512_nr16(x, w, col0, bias, activation, out, kc),
            _ => avx512_nr32(x, w, col0, bias, activation, out, kc),
        }
    }
}

/// The AVX-512 kernel's source, panel widths (16 and 32) and tile heights compiled for AVX2 (it
/// spills registers, so it is slow): it exists so that the conformance suite runs those code
/// paths on any x86-64 CPU, except the 12-row tiles (48 ymm accumulators in 32-wide panels:
/// allocating registers for that spill took the compiler many minutes) and the unrolled loop of
/// the tiles that fit AVX-512's registers (see `super::generic::micro_loop`).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(test)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense_avx2_fma_wide(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    match w.nr() {
        16 => dense_tiled::<Ymm, 16, 2, MR_MAX_32_REGISTERS>(x, w, col0, bias, activation, out, kc),
        _ => dense_tiled::<Ymm, 32, 4, MR_MAX_32_REGISTERS>(x, w, col0, bias, activation, out, kc),
    }
}
