//! The dense-layer kernel for bf16 and int8 weights: the panels hold 2- or 1-byte elements,
//! widened exactly to `f32` in registers (bf16: one AND or one 16-bit shift of the word that
//! holds two reduction steps, see `super::packed`; int8: a sign extension and an exact
//! integer-to-float conversion), and every output is still one FMA chain in `k` order (see
//! [`super::precision::Precision`] for what each precision computes). Written once against
//! [`Widen`] and compiled per instruction set and panel width, like `super::generic`, whose tile
//! layout it follows: few rows run one tile over several panels (enough independent
//! accumulators), a block of one tile's rows runs panel by panel, and in taller blocks the first
//! tile also stores each panel slice it widens into an `f32` scratch that `super::generic`'s own
//! tiles read for the other rows.
//!
//! Each tile of its own accumulates in registers loaded from and stored to a small array on the stack,
//! seeded from the bias (bf16), zero (int8) or the running sums of the previous K-block; the
//! last K-block applies the int8 epilogue `fma(acc, s[n], b[n])` and the activation while the
//! tile is in L1. The copies cost one store and load per output per K-block, nothing next to a
//! reduction of hundreds of steps.

use super::KernelKind;
use super::generic::{
    self, F32Panels, Lanes, MR_MAX_16_REGISTERS, PREFETCH_TILES, Pass, Portable8, TilePlan,
};
use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use super::precision::Precision;
use crate::Activation;
use std::mem::MaybeUninit;
use std::ptr::null_mut;

/// Lanes that also load narrow weights and widen them exactly to `f32`.
pub(super) trait Widen: Lanes {
    /// `N` 32-bit words at `p`, each a pair of bfloat16 values (their bits), widened to `f32`:
    /// the high halves (`!ODD`, an even reduction step) or the low halves (`ODD`).
    ///
    /// # Safety
    /// The CPU must support the instruction set; `p` must be valid for reading `2 N` elements.
    unsafe fn load_bf16_half<const ODD: bool>(p: *const u16) -> Self::V;
    /// `N` int8 codes at `p`, converted to `f32` (exact).
    ///
    /// # Safety
    /// The CPU must support the instruction set; `p` must be valid for reading `N` elements.
    unsafe fn load_i8(p: *const i8) -> Self::V;
}

/// A packed weight's storage type: bf16 bits or int8 codes.
pub(super) trait Element: bytemuck::Pod {
    /// Reduction steps stored together per column: 2 for bf16's step pairs, 1 for int8.
    const STEPS: usize;
    /// How far ahead of its loads a tile over several panels prefetches each panel of streamed
    /// weights, in bytes (0: not at all; see [`PANEL_AHEAD_BYTES`]).
    const AHEAD: usize;
    /// Step `kk`'s weights of columns `c..c + L::N`, widened, from the elements at `p` of an
    /// `NR`-wide panel slice that starts at a multiple of `STEPS`; `ODD` is `kk`'s parity where
    /// `STEPS` is 2 (and `false` otherwise).
    ///
    /// # Safety
    /// The CPU must support `L`'s instruction set; `p` must be valid for reading the slice's
    /// steps up to `kk`'s group of `STEPS`.
    unsafe fn load<L: Widen, const NR: usize, const ODD: bool>(
        p: *const Self,
        kk: usize,
        c: usize,
    ) -> L::V;
}

impl Element for u16 {
    const STEPS: usize = 2;
    const AHEAD: usize = 0;
    #[inline(always)]
    unsafe fn load<L: Widen, const NR: usize, const ODD: bool>(
        p: *const u16,
        kk: usize,
        c: usize,
    ) -> L::V {
        debug_assert_eq!(kk % 2 == 1, ODD);
        // SAFETY: forwarded from the caller: steps `kk - ODD` and `kk - ODD + 1` share one word
        // per column, `NR` words per pair.
        unsafe { L::load_bf16_half::<ODD>(p.add((kk - usize::from(ODD)) * NR + 2 * c)) }
    }
}

impl Element for i8 {
    const STEPS: usize = 1;
    const AHEAD: usize = PANEL_AHEAD_BYTES;
    #[inline(always)]
    unsafe fn load<L: Widen, const NR: usize, const ODD: bool>(
        p: *const i8,
        kk: usize,
        c: usize,
    ) -> L::V {
        // SAFETY: forwarded from the caller.
        unsafe { L::load_i8(p.add(kk * NR + c)) }
    }
}

/// Floats of the scratch a panel slice is widened into (64 KiB, from L1 and L2 as the `f32`
/// kernel's panel slices come from L2): each chunk is a K-block whose running sums every tile
/// stores and reloads, so fewer, longer chunks beat L1-sized ones.
const SCRATCH_FLOATS: usize = 16 * 1024;

/// The scratch, on a cache line like the packed `f32` panels, so that no vector load of it
/// straddles two lines. Left uninitialised: each chunk is written whole before it is read, and
/// zeroing it per pass took 1.7 % of a 16-row mnist-mlp call (bf16, one thread; without it
/// 1.03 / 1.08× faster on one / two threads, from batch 32 within the A/A).
#[repr(C, align(64))]
struct Scratch([MaybeUninit<f32>; SCRATCH_FLOATS]);

/// `dst = widen(src)` for the `dst.len() / NR` steps of an `NR`-wide panel slice, `L::N`
/// columns at a time.
///
/// # Safety
/// The CPU must support `L`'s instruction set.
#[inline(always)]
unsafe fn widen<L: Widen, E: Element, const NR: usize>(src: &[E], dst: &mut [MaybeUninit<f32>]) {
    let steps = dst.len() / NR;
    assert!(NR.is_multiple_of(L::N) && dst.len() == steps * NR);
    assert!(src.len() >= steps.next_multiple_of(E::STEPS) * NR);
    let mut kk = 0;
    // bf16: steps in pairs, so that which half of the words each takes is a constant.
    while E::STEPS == 2 && kk + 2 <= steps {
        // SAFETY: as below.
        unsafe {
            widen_step::<L, E, NR, false>(src, dst, kk);
            widen_step::<L, E, NR, true>(src, dst, kk + 1);
        }
        kk += 2;
    }
    while kk < steps {
        // SAFETY: as below.
        unsafe { widen_step::<L, E, NR, false>(src, dst, kk) };
        kk += 1;
    }
}

/// Step `kk` of [`widen`].
///
/// # Safety
/// As [`widen`], with `kk` one of its steps and `ODD` as [`Element::load`] needs it.
#[inline(always)]
unsafe fn widen_step<L: Widen, E: Element, const NR: usize, const ODD: bool>(
    src: &[E],
    dst: &mut [MaybeUninit<f32>],
    kk: usize,
) {
    let mut c = 0;
    while c < NR {
        // SAFETY: `src` holds `kk`'s group of steps and `dst` step `kk`'s `NR` floats (asserted
        // by `widen`); the instruction set is the caller's guarantee.
        unsafe {
            let v = E::load::<L, NR, ODD>(src.as_ptr(), kk, c);
            L::store(dst.as_mut_ptr().add(kk * NR + c).cast(), v);
        }
        c += L::N;
    }
}

/// How far ahead of its loads a tile over several panels (one or two rows) prefetches each
/// panel of streamed int8 weights, in bytes: the hardware prefetchers kept up with none of the
/// four panel streams. wide-mlp's 25 MB of int8 weights stay in the L3 of an AMD Zen 5 (32 MiB)
/// and, with 3–6 KiB ahead against none, read 1.2–1.4× faster at batch 1 on one thread and
/// 1.9× at batch 2 (1 KiB: 0.9×, 8 KiB: 1.05–1.17×); on two threads 1.0–1.2× at batch 1 and
/// 1.3× at 2. Its bf16 weights ran 0.94–0.96× with 4 KiB ahead, so bf16 does without.
const PANEL_AHEAD_BYTES: usize = 4096;

/// Bytes of a cache line.
const LINE_BYTES: usize = 64;

impl Widen for Portable8 {
    #[inline(always)]
    unsafe fn load_bf16_half<const ODD: bool>(p: *const u16) -> [f32; 8] {
        // SAFETY: the caller guarantees 16 readable elements, 8 words (read unaligned).
        let words = unsafe { p.cast::<[u32; 8]>().read_unaligned() };
        words.map(|w| f32::from_bits(if ODD { w << 16 } else { w & 0xFFFF_0000 }))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> [f32; 8] {
        // SAFETY: as above, for `i8`.
        let codes = unsafe { *p.cast::<[i8; 8]>() };
        codes.map(f32::from)
    }
}

/// `out = act(x · W + b)` for columns `col0 .. col0 + out.cols()`, `W` packed in `NR`-wide panels
/// of `E` elements (bf16 or int8), with the contract of `super::generic::dense_tiled`. Blocks of
/// up to `MR_MAX` rows widen in registers; taller ones widen each panel slice once, in their
/// first tile, and run the `f32` kernel's tiles, up to `MR_F32` rows tall, on it for the rest.
#[inline(always)]
pub(super) fn dense_widened<
    L: Widen,
    E: Element,
    const NR: usize,
    const NV: usize,
    const MR_MAX: usize,
    const MR_F32: usize,
>(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    mut out: RowsMut<'_>,
    kc: usize,
) {
    debug_assert_eq!(w.nr(), NR);
    debug_assert_eq!(col0 % NR, 0);
    debug_assert_eq!(size_of::<E>(), w.precision().bytes_per_weight());
    let (m, k) = (x.rows(), w.k());
    let layer = Layer {
        x,
        w,
        bias,
        int8: w.precision() == Precision::Int8,
        col0,
        activation,
        panels: out.cols().div_ceil(NR),
    };
    if m > 0 {
        // Equal passes, as in `dense_tiled`, each starting at a step pair (bf16).
        let kc = k
            .div_ceil(k.div_ceil(kc.max(1)).max(1))
            .max(1)
            .next_multiple_of(E::STEPS);
        let mut k0 = 0;
        loop {
            let k1 = k.min(k0 + kc);
            let pass = Pass {
                k0,
                k1,
                first: k0 == 0,
                last: k1 == k,
            };
            layer.pass::<L, E, NR, NV, MR_MAX, MR_F32>(&pass, &mut out);
            if pass.last {
                break;
            }
            k0 = k1;
        }
    }
    if activation.is_row_wise() {
        assert!(
            col0 == 0 && out.cols() == w.n(),
            "row-wise activation on a column split"
        );
        for r in 0..m {
            activation.apply_row(out.row_mut(r));
        }
    }
}

/// One call's operands.
struct Layer<'a, 'b> {
    x: Rows<'a>,
    w: &'b PackedWeights,
    bias: &'b [f32],
    /// Whether the chain starts from zero and ends with `fma(acc, scale, bias)`.
    int8: bool,
    col0: usize,
    activation: Activation,
    /// Panels this call computes (starting at panel `col0 / NR`).
    panels: usize,
}

impl Layer<'_, '_> {
    #[inline(always)]
    fn pass<
        L: Widen,
        E: Element,
        const NR: usize,
        const NV: usize,
        const MR_MAX: usize,
        const MR_F32: usize,
    >(
        &self,
        pass: &Pass,
        out: &mut RowsMut<'_>,
    ) {
        let m = self.x.rows();
        // Few rows: several panels per tile for enough independent accumulators.
        match m {
            1 => return self.panel_groups::<L, E, 1, NR, 4, NV>(pass, out),
            2 => return self.panel_groups::<L, E, 2, NR, 2, NV>(pass, out),
            3 => return self.panel_groups::<L, E, 3, NR, 1, NV>(pass, out),
            _ => {}
        }
        // Balanced tiles of at most `MR_MAX` rows (9 rows = 5 + 4, not 8 + 1).
        let tiles = m.div_ceil(MR_MAX);
        let row_bytes = NR * size_of::<E>();
        if tiles == 1 {
            for p in 0..self.panels {
                let ws = self.slice::<E, NR>(p, pass.k0, pass.k1);
                let next = (self.w.prefetch() && p + 1 < self.panels)
                    .then(|| bytemuck::cast_slice(self.slice::<E, NR>(p + 1, pass.k0, pass.k1)));
                self.row_tiles::<L, E, NR, NV, MR_MAX>(p, pass, out, ws, next, row_bytes);
            }
            return;
        }
        // Several tiles share each panel: widen its slice once, a chunk at a time, into a
        // scratch of `f32` that the `f32` kernel's tiles then read as they read packed `f32`
        // panels, instead of each tile widening the same weights again (at 8-row tiles of
        // 32-wide panels, 4 widening instructions per 16 FMAs). A chunk is a K-block of its own,
        // so the chain order, and the bits, do not change.
        let mut scratch = Scratch([MaybeUninit::uninit(); SCRATCH_FLOATS]);
        // Equal chunks, as passes are (784 steps = 2 × 392, not 512 + 272).
        let steps = pass.k1 - pass.k0;
        let chunk = steps
            .div_ceil(steps.div_ceil((SCRATCH_FLOATS / NR).max(1)).max(1))
            .max(1)
            .next_multiple_of(E::STEPS);
        // The first `MR_MAX` rows run a widening tile that also stores the weights it widened
        // into the scratch, so that those stores overlap its FMAs instead of running as a pass
        // of their own (which stalled on the scratch lines the tiles' inputs had evicted); the
        // other rows' tiles then read the scratch. Fewer than 4 rows left over would not make a
        // plan: those blocks widen first.
        let head = if m >= MR_MAX + 4 { MR_MAX } else { 0 };
        let plan = TilePlan::for_block::<MR_F32>(m - head, chunk);
        for p in 0..self.panels {
            let panel = self.col0 / NR + p;
            let mut k0 = pass.k0;
            loop {
                let k1 = pass.k1.min(k0 + chunk);
                let wide = &mut scratch.0[..(k1 - k0) * NR];
                let narrow = self.slice::<E, NR>(p, k0, k1);
                let sub = Pass {
                    k0,
                    k1,
                    first: pass.first && k0 == pass.k0,
                    last: pass.last && k1 == pass.k1,
                };
                if head > 0 {
                    self.tile_with::<L, E, MR_MAX, NR, 1, NV, true>(
                        0,
                        p,
                        &sub,
                        out,
                        [narrow],
                        None,
                        wide,
                    );
                } else {
                    // SAFETY: the kernel runs only on CPUs with `L`'s instruction set.
                    unsafe { widen::<L, E, NR>(narrow, wide) };
                }
                // SAFETY: the widening tile or `widen` wrote every float of `wide` (`NR` per step
                // of the chunk), and `MaybeUninit<f32>` has `f32`'s layout.
                let wide: &[f32] =
                    unsafe { std::slice::from_raw_parts(wide.as_ptr().cast(), wide.len()) };
                // Streamed weights: while the tiles compute from the scratch, the next chunk's
                // narrow weights (this panel's, else the next panel's first) are pulled in.
                let next = if !self.w.prefetch() {
                    None
                } else if k1 < pass.k1 {
                    Some(self.slice::<E, NR>(p, k1, pass.k1.min(k1 + chunk)))
                } else if p + 1 < self.panels {
                    Some(self.slice::<E, NR>(p + 1, pass.k0, pass.k1.min(pass.k0 + chunk)))
                } else {
                    None
                };
                let tiles = generic::Layer {
                    x: self.x.rows_from(head),
                    weights: F32Panels::widened(wide, panel, k0),
                    prefetch: false,
                    bias: self.bias,
                    scales: self.int8.then(|| self.w.scales()),
                    col0: self.col0,
                    activation: self.activation,
                    panels: self.panels,
                };
                let next = next.map(bytemuck::cast_slice);
                let mut rest = out.reborrow().rows_from(head);
                // SAFETY: the kernel runs only on CPUs with `L`'s instruction set.
                unsafe {
                    L::panel_tiles::<NR, NV, MR_F32>(&tiles, p, &sub, &plan, &mut rest, next)
                };
                if k1 == pass.k1 {
                    break;
                }
                k0 = k1;
            }
        }
    }

    /// Local panel `p`'s elements for reduction steps `k0..k1` (`k0` a multiple of
    /// `E::STEPS`; the slice ends with `k1`'s group of steps).
    #[inline(always)]
    fn slice<E: Element, const NR: usize>(&self, p: usize, k0: usize, k1: usize) -> &[E] {
        debug_assert!(k0.is_multiple_of(E::STEPS));
        &self.w.panel_elements::<E>(self.col0 / NR + p)[k0 * NR..k1.next_multiple_of(E::STEPS) * NR]
    }

    /// Every row tile against local panel `p`, whose weights for the pass are `ws`. With
    /// `next` (narrow weights, `row_bytes` per reduction step), the first tiles pull it towards
    /// the cache a share each, one row of it every `period` steps, as the f32 kernel pulls in
    /// its next panel. wide-mlp in bf16 (Intel family 6 model 167, interleaved against no
    /// prefetch): 1.10 / 1.03 / 1.05× at 8 / 32 / 128 rows on one thread, 1.11 / 1.04 / 1.02× on
    /// two. Asked for in one burst after each tile instead, the requests stalled the core and
    /// gained nothing (0.95–1.05×).
    #[inline(always)]
    fn row_tiles<L: Widen, E: Element, const NR: usize, const NV: usize, const MR_MAX: usize>(
        &self,
        p: usize,
        pass: &Pass,
        out: &mut RowsMut<'_>,
        ws: &[E],
        next: Option<&[u8]>,
        row_bytes: usize,
    ) {
        let m = self.x.rows();
        let tiles = m.div_ceil(MR_MAX);
        let (base, extra) = (m / tiles, m % tiles);
        let ws = [ws];
        let period = tiles.min(PREFETCH_TILES);
        let share = (pass.k1 - pass.k0).div_ceil(period) * row_bytes;
        let mut r = 0;
        for t in 0..tiles {
            let pf = next.filter(|_| t < period).map(|stream| NarrowPrefetch {
                stream: &stream[(t * share).min(stream.len())..],
                row_bytes,
                period,
            });
            let rows = base + usize::from(t < extra);
            match rows {
                8 if MR_MAX >= 8 => self.tile::<L, E, 8, NR, 1, NV>(r, p, pass, out, ws, pf),
                7 if MR_MAX >= 7 => self.tile::<L, E, 7, NR, 1, NV>(r, p, pass, out, ws, pf),
                6 => self.tile::<L, E, 6, NR, 1, NV>(r, p, pass, out, ws, pf),
                5 => self.tile::<L, E, 5, NR, 1, NV>(r, p, pass, out, ws, pf),
                4 => self.tile::<L, E, 4, NR, 1, NV>(r, p, pass, out, ws, pf),
                3 => self.tile::<L, E, 3, NR, 1, NV>(r, p, pass, out, ws, pf),
                2 => self.tile::<L, E, 2, NR, 1, NV>(r, p, pass, out, ws, pf),
                _ => {
                    debug_assert_eq!(rows, 1);
                    self.tile::<L, E, 1, NR, 1, NV>(r, p, pass, out, ws, pf)
                }
            }
            r += rows;
        }
    }

    /// Rows `0..MR` against every panel, `NP` panels per tile.
    #[inline(always)]
    fn panel_groups<
        L: Widen,
        E: Element,
        const MR: usize,
        const NR: usize,
        const NP: usize,
        const NV: usize,
    >(
        &self,
        pass: &Pass,
        out: &mut RowsMut<'_>,
    ) {
        let mut p = 0;
        while p + NP <= self.panels {
            let ws = std::array::from_fn(|q| self.slice::<E, NR>(p + q, pass.k0, pass.k1));
            self.tile::<L, E, MR, NR, NP, NV>(0, p, pass, out, ws, None);
            p += NP;
        }
        while p < self.panels {
            let ws = [self.slice::<E, NR>(p, pass.k0, pass.k1)];
            self.tile::<L, E, MR, NR, 1, NV>(0, p, pass, out, ws, None);
            p += 1;
        }
    }

    /// Rows `r0..r0 + MR` × local panels `p0..p0 + NP`, reduction `k0..k1` over the panels'
    /// elements `ws` for those steps, with the seed and the epilogue.
    #[inline(always)]
    fn tile<
        L: Widen,
        E: Element,
        const MR: usize,
        const NR: usize,
        const NP: usize,
        const NV: usize,
    >(
        &self,
        r0: usize,
        p0: usize,
        pass: &Pass,
        out: &mut RowsMut<'_>,
        ws: [&[E]; NP],
        prefetch: Option<NarrowPrefetch<'_>>,
    ) {
        self.tile_with::<L, E, MR, NR, NP, NV, false>(r0, p0, pass, out, ws, prefetch, &mut []);
    }

    /// [`Self::tile`]; with `STORE` (one panel, no prefetch), the weights it widens are also
    /// stored to `wide`, `NR` floats per reduction step, as [`widen`] stores them.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tile_with<
        L: Widen,
        E: Element,
        const MR: usize,
        const NR: usize,
        const NP: usize,
        const NV: usize,
        const STORE: bool,
    >(
        &self,
        r0: usize,
        p0: usize,
        pass: &Pass,
        out: &mut RowsMut<'_>,
        ws: [&[E]; NP],
        prefetch: Option<NarrowPrefetch<'_>>,
        wide: &mut [MaybeUninit<f32>],
    ) {
        assert!(
            !STORE || (NP == 1 && prefetch.is_none() && wide.len() == (pass.k1 - pass.k0) * NR)
        );
        let n_local = out.cols();
        // Valid columns of each panel (the last panel of a layer may be narrower).
        let widths: [usize; NP] =
            std::array::from_fn(|p| NR.min(n_local.saturating_sub((p0 + p) * NR)));
        let xs: [&[f32]; MR] = std::array::from_fn(|i| &self.x.row(r0 + i)[pass.k0..pass.k1]);
        let mut acc = [[[0.0f32; NR]; NP]; MR];
        for (i, row_acc) in acc.iter_mut().enumerate() {
            for (p, a) in row_acc.iter_mut().enumerate() {
                let c = (p0 + p) * NR;
                let width = widths[p];
                if !pass.first {
                    a[..width].copy_from_slice(&out.row(r0 + i)[c..c + width]);
                } else if !self.int8 {
                    let g = self.col0 + c;
                    a[..width].copy_from_slice(&self.bias[g..g + width]);
                }
            }
        }
        // SAFETY: `xs` and `ws` are sliced to the pass's `kc` steps above, and this kernel runs
        // only on CPUs with `L`'s instruction set (the entry points' contract).
        unsafe {
            if STORE {
                micro_loop::<L, E, MR, NR, NP, NV, 0, true>(
                    pass.k1 - pass.k0,
                    &xs,
                    &ws,
                    &mut acc,
                    &[],
                    0,
                    wide.as_mut_ptr().cast(),
                    0,
                )
            } else {
                // Streamed weights read by a tile over several panels (one or two rows): each
                // panel is a stream of its own, pulled in ahead of the loads.
                let ahead = if NP > 1 && self.w.prefetch() {
                    E::AHEAD
                } else {
                    0
                };
                micro::<L, E, MR, NR, NP, NV>(
                    pass.k1 - pass.k0,
                    &xs,
                    &ws,
                    &mut acc,
                    prefetch,
                    ahead,
                )
            }
        };
        for (i, row_acc) in acc.iter_mut().enumerate() {
            let dst = out.row_mut(r0 + i);
            for (p, a) in row_acc.iter_mut().enumerate() {
                let c = (p0 + p) * NR;
                let width = widths[p];
                let a = &mut a[..width];
                if pass.last {
                    let scales = self.int8.then(|| self.w.scales());
                    generic::finish_chains(a, self.col0 + c, scales, self.bias, self.activation);
                }
                dst[c..c + width].copy_from_slice(a);
            }
        }
    }
}

/// Narrow weights to pull towards the cache while a tile computes: `row_bytes` bytes of `stream`
/// every `period` reduction steps (1 to [`PREFETCH_TILES`]).
#[derive(Clone, Copy)]
struct NarrowPrefetch<'a> {
    stream: &'a [u8],
    row_bytes: usize,
    period: usize,
}

/// `acc[i][p][j] = fma(xs[i][kk], widen(ws[p][kk * NR + j]), acc[i][p][j])` for `kk` in `0..kc`,
/// in order, with `NR = NV * L::N` and the accumulators held in `MR * NP * NV` registers; with
/// `prefetch`, every `period`-th step also asks for the next `row_bytes` of its stream, and with
/// `ahead > 0` every step for its panels' bytes `ahead` bytes on.
///
/// # Safety
/// The CPU must support `L`'s instruction set.
#[inline(always)]
unsafe fn micro<
    L: Widen,
    E: Element,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
>(
    kc: usize,
    xs: &[&[f32]; MR],
    ws: &[&[E]; NP],
    acc: &mut [[[f32; NR]; NP]; MR],
    prefetch: Option<NarrowPrefetch<'_>>,
    ahead: usize,
) {
    // One instantiation per period, as in the f32 kernel: no run-time test in the loop.
    // SAFETY: forwarded from the caller.
    unsafe {
        match prefetch {
            None => micro_loop::<L, E, MR, NR, NP, NV, 0, false>(
                kc,
                xs,
                ws,
                acc,
                &[],
                0,
                null_mut(),
                ahead,
            ),
            Some(NarrowPrefetch {
                stream,
                row_bytes,
                period: 1,
            }) => micro_loop::<L, E, MR, NR, NP, NV, 1, false>(
                kc,
                xs,
                ws,
                acc,
                stream,
                row_bytes,
                null_mut(),
                ahead,
            ),
            Some(NarrowPrefetch {
                stream,
                row_bytes,
                period: 2,
            }) => micro_loop::<L, E, MR, NR, NP, NV, 2, false>(
                kc,
                xs,
                ws,
                acc,
                stream,
                row_bytes,
                null_mut(),
                ahead,
            ),
            Some(NarrowPrefetch {
                stream,
                row_bytes,
                period: 3,
            }) => micro_loop::<L, E, MR, NR, NP, NV, 3, false>(
                kc,
                xs,
                ws,
                acc,
                stream,
                row_bytes,
                null_mut(),
                ahead,
            ),
            Some(NarrowPrefetch {
                stream,
                row_bytes,
                period,
            }) => {
                debug_assert_eq!(period, PREFETCH_TILES);
                micro_loop::<L, E, MR, NR, NP, NV, PREFETCH_TILES, false>(
                    kc,
                    xs,
                    ws,
                    acc,
                    stream,
                    row_bytes,
                    null_mut(),
                    ahead,
                )
            }
        }
    }
}

/// [`micro`] with the prefetch period chosen at compile time (`PF`; 0 for none); with `STORE`
/// (one panel), each widened step's `NR` floats are also stored at `wide + kk * NR`.
///
/// # Safety
/// As [`micro`]; with `STORE`, `wide` valid for writes of `kc * NR` floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn micro_loop<
    L: Widen,
    E: Element,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
    const PF: usize,
    const STORE: bool,
>(
    kc: usize,
    xs: &[&[f32]; MR],
    ws: &[&[E]; NP],
    acc: &mut [[[f32; NR]; NP]; MR],
    stream: &[u8],
    row_bytes: usize,
    wide: *mut f32,
    ahead: usize,
) {
    assert_eq!(NV * L::N, NR);
    for x in xs {
        assert!(x.len() >= kc);
    }
    for w in ws {
        assert!(w.len() >= kc.next_multiple_of(E::STEPS) * NR);
    }
    let xp: [*const f32; MR] = std::array::from_fn(|i| xs[i].as_ptr());
    let wp: [*const E; NP] = std::array::from_fn(|p| ws[p].as_ptr());
    // SAFETY: the caller guarantees the instruction set. For `kk < kc` every `xs[i]` holds `kc`
    // floats and every `ws[p]` `kc` rows of `NR` elements (asserted above); each accumulator
    // array holds `NR = NV * L::N` floats; prefetch addresses are only computed
    // (`wrapping_add`), never read.
    unsafe {
        let mut a = [[[L::splat(0.0); NV]; NP]; MR];
        for (row, row_acc) in a.iter_mut().zip(acc.iter()) {
            for (panel, panel_acc) in row.iter_mut().zip(row_acc) {
                for (v, value) in panel.iter_mut().enumerate() {
                    *value = L::load(panel_acc.as_ptr().add(v * L::N));
                }
            }
        }
        let mut kk = 0;
        // bf16: steps in pairs, as in `widen`.
        while E::STEPS == 2 && kk + 2 <= kc {
            step::<L, E, MR, NR, NP, NV, PF, false, STORE>(
                kk, &xp, &wp, &mut a, stream, row_bytes, wide, ahead,
            );
            step::<L, E, MR, NR, NP, NV, PF, true, STORE>(
                kk + 1,
                &xp,
                &wp,
                &mut a,
                stream,
                row_bytes,
                wide,
                ahead,
            );
            kk += 2;
        }
        while kk < kc {
            step::<L, E, MR, NR, NP, NV, PF, false, STORE>(
                kk, &xp, &wp, &mut a, stream, row_bytes, wide, ahead,
            );
            kk += 1;
        }
        for (row, row_acc) in a.iter().zip(acc.iter_mut()) {
            for (panel, panel_acc) in row.iter().zip(row_acc.iter_mut()) {
                for (v, &value) in panel.iter().enumerate() {
                    L::store(panel_acc.as_mut_ptr().add(v * L::N), value);
                }
            }
        }
    }
}

/// Reduction step `kk` of [`micro_loop`]: every accumulator of the tile gets its one FMA.
///
/// # Safety
/// As [`micro_loop`], with `kk` below its `kc` and `ODD` as [`Element::load`] needs it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn step<
    L: Widen,
    E: Element,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
    const PF: usize,
    const ODD: bool,
    const STORE: bool,
>(
    kk: usize,
    xp: &[*const f32; MR],
    wp: &[*const E; NP],
    a: &mut [[[L::V; NV]; NP]; MR],
    stream: &[u8],
    row_bytes: usize,
    wide: *mut f32,
    ahead: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        // Each panel's bytes `ahead` on from this step's: every cache line once (a step of
        // narrow int8 is half a line).
        let step_bytes = NR * size_of::<E>();
        if ahead > 0 && (step_bytes >= LINE_BYTES || (kk * step_bytes).is_multiple_of(LINE_BYTES)) {
            for &panel_ptr in wp {
                let at = panel_ptr.cast::<u8>().wrapping_add(kk * step_bytes + ahead);
                let mut line = 0;
                while line < step_bytes {
                    L::prefetch(at.wrapping_add(line).cast());
                    line += LINE_BYTES;
                }
            }
        }
        if PF > 0 && kk.is_multiple_of(PF) {
            // A prefetch never faults, so the end of a short stream needs no test.
            let row = stream.as_ptr().wrapping_add(kk / PF * row_bytes);
            let mut line = 0;
            while line < row_bytes {
                L::prefetch(row.wrapping_add(line).cast::<f32>());
                line += LINE_BYTES;
            }
        }
        // Loops, not `array::from_fn`: a closure does not inherit the caller's target features,
        // and left uninlined (the one-row tiles over four panels, in pairs of steps) it made
        // every widening load a call, 2.3-4.9× slower.
        let mut wv = [[L::splat(0.0); NV]; NP];
        for (panel, &panel_ptr) in wv.iter_mut().zip(wp) {
            for (v, w) in panel.iter_mut().enumerate() {
                *w = E::load::<L, NR, ODD>(panel_ptr, kk, v * L::N);
            }
        }
        if STORE {
            for (v, &w) in wv[0].iter().enumerate() {
                L::store(wide.add(kk * NR + v * L::N), w);
            }
        }
        generic::fma_step::<L, MR, NP, NV>(kk, xp, &wv, a);
    }
}

/// The portable kernel for bf16 weights.
fn portable_bf16(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    dense_widened::<Portable8, u16, 16, 2, MR_MAX_16_REGISTERS, MR_MAX_16_REGISTERS>(
        x, w, col0, bias, activation, out, kc,
    )
}

/// The portable kernel for int8 weights.
fn portable_int8(
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    dense_widened::<Portable8, i8, 16, 2, MR_MAX_16_REGISTERS, MR_MAX_16_REGISTERS>(
        x, w, col0, bias, activation, out, kc,
    )
}

/// [`KernelKind::dense_columns`] for bf16 and int8 weights (the caller checked the operands and
/// the CPU).
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_columns(
    kind: KernelKind,
    x: Rows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
    kc: usize,
) {
    let int8 = match w.precision() {
        Precision::Bf16 => false,
        Precision::Int8 => true,
        Precision::F32 => unreachable!("f32 weights run the f32 kernel"),
        Precision::Int8Full => unreachable!("full-int8 weights run the int8_dot kernel"),
    };
    match kind {
        KernelKind::Portable if int8 => portable_int8(x, w, col0, bias, activation, out, kc),
        KernelKind::Portable => portable_bf16(x, w, col0, bias, activation, out, kc),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller asserted that the CPU supports AVX2 and FMA.
        KernelKind::Avx2Fma => unsafe {
            super::x86_widened::dense_avx2_fma(x, w, col0, bias, activation, out, kc, int8)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller asserted that the CPU supports AVX-512F, AVX2 and FMA.
        KernelKind::Avx512 => unsafe {
            super::x86_widened::dense_avx512(x, w, col0, bias, activation, out, kc, int8)
        },
        #[cfg(not(target_arch = "x86_64"))]
        KernelKind::Avx2Fma | KernelKind::Avx512 => unreachable!("not supported"),
    }
}
