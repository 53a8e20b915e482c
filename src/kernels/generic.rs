//! The dense-layer kernel, written once in plain Rust and compiled several times, each time with
//! different target features and panel widths (see `super::x86`). Its register tile is a
//! `[[[f32; NR]; NP]; MR]` array whose innermost loop LLVM turns into one vector FMA per SIMD
//! register: with `NR = 16` under AVX2 that is 2 ymm per panel row, with `NR = 32` under AVX-512
//! 2 zmm. Writing it once, rather than in intrinsics per instruction set, means the code an AVX-512
//! machine runs is the very code the conformance suite runs here on AVX2 (`super::conformance`
//! instantiates `NR = 32` under AVX2 too).
//!
//! It honours the reference arithmetic exactly: each output keeps one accumulator, seeded with
//! the bias and updated by `mul_add` in `k` order. K-blocking keeps that order: a pass over
//! `k0..k1` leaves the running sums in the output, and the next pass reloads them and carries
//! on (an `f32` store and reload is exact). The activation runs once, after the last pass.

use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use crate::Activation;

/// Most rows one register tile covers where the instruction set has 16 vector registers: a 6-row
/// tile of two registers per row takes 12 of them.
pub(super) const MR_MAX_16_REGISTERS: usize = 6;

/// Most rows one register tile covers where it has 32 (AVX-512): an 8-row tile of two registers
/// per row takes 16 and reads each weight vector for 8 rows. Against 6 rows on Zen 5, reference
/// harness with both builds interleaved, one thread: mnist-mlp batch 8 1.14× (one tile of 8 rows
/// reads the weights from L3 once, instead of two tiles of 4), 16 and 32 1.03×, 128 1.00×;
/// wide-mlp batch 8 1.22×, 16 1.14×, 32 1.09×, 128 1.01×. tiny-mlp's sub-µs calls ran 0.81–0.97×
/// as fast in that run, not for the tiles (a build that gave them 6-row tiles again was no
/// faster) but for the code: all panel widths were then inlined into one function per
/// instruction set (see `super::x86`).
pub(super) const MR_MAX_32_REGISTERS: usize = 8;

/// Tallest register tile of the f32 kernel's full-width (32-float) panels on AVX-512: 24 zmm
/// accumulators, each weight vector read for 12 rows, 12 broadcasts and 2 loads per 24 FMAs
/// (an 8-row tile needs 10 loads per 16). The rows a block leaves after its 12-row tiles run as
/// an 8-row plan would (see `TilePlan`). With the unrolled loop, against 8-row tiles of one step
/// per iteration on Intel Xeon (AVX-512, 2 FMA pipes), builds interleaved, 5 rounds: mnist-mlp
/// 1.07–1.08× at 32 rows and 1.04× at 512 on one thread, 1.04× at 512 on two; wide-mlp 1.05–1.07×
/// at 512 rows on one thread, 1.04× at 128 and 2048 on two.
pub(super) const MR_TALL_32_REGISTERS: usize = 12;

/// Most row tiles of a panel over which the next panel's prefetch is spread (see `Layer::pass`).
pub(super) const PREFETCH_TILES: usize = 4;

/// `out = act(x · W + b)` for output columns `col0 .. col0 + out.cols()` of a block of rows, `W`
/// packed in `NR`-wide panels. `col0` must be a multiple of `NR`; `bias` is the whole layer's.
/// A row-wise activation (softmax) needs the call to cover every column.
///
/// `kc` is the longest reduction per pass (K-blocking; passes are evened out to at most `kc`):
/// one pass keeps a `kc × NR` slice of a panel in cache while every row tile of the block uses
/// it, so each weight is read from memory once per call whatever the number of rows.
#[inline(always)]
pub(super) fn dense_tiled<L: Lanes, const NR: usize, const NV: usize, const MR_MAX: usize>(
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
    let (m, k) = (x.rows(), w.k());
    let layer = Layer {
        x,
        weights: F32Panels::packed(w),
        prefetch: w.prefetch(),
        bias,
        scales: None,
        col0,
        activation,
        panels: out.cols().div_ceil(NR),
    };
    if m > 0 {
        // Equal passes (784 = 2 × 392, not 512 + 272): no short tail pass paying a full
        // accumulator load and store for a few steps.
        let kc = k.div_ceil(k.div_ceil(kc.max(1)).max(1)).max(1);
        let mut k0 = 0;
        loop {
            let k1 = k.min(k0 + kc);
            let pass = Pass {
                k0,
                k1,
                first: k0 == 0,
                last: k1 == k,
            };
            layer.pass::<L, NR, NV, MR_MAX>(&pass, &mut out);
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

/// The `f32` weight panels the tiles read: a compiled layer's, or one panel's slice widened
/// from bf16 or int8 into a scratch (`super::widened`).
#[derive(Clone, Copy)]
pub(super) struct F32Panels<'a> {
    data: &'a [f32],
    /// Floats from one panel to the next.
    stride: usize,
    /// The layer's index of `data`'s first panel.
    first_panel: usize,
    /// The first reduction step `data` holds.
    k0: usize,
}

impl<'a> F32Panels<'a> {
    fn packed(w: &'a PackedWeights) -> Self {
        F32Panels {
            data: w.f32_panels(),
            stride: w.k() * w.nr(),
            first_panel: 0,
            k0: 0,
        }
    }

    /// Layer panel `panel`'s weights for the reduction steps from `k0` on, widened.
    pub(super) fn widened(data: &'a [f32], panel: usize, k0: usize) -> Self {
        F32Panels {
            data,
            stride: data.len(),
            first_panel: panel,
            k0,
        }
    }

    /// Layer panel `panel`'s `NR`-float rows for reduction steps `k0..k1`.
    #[inline(always)]
    fn slice<const NR: usize>(&self, panel: usize, k0: usize, k1: usize) -> &'a [f32] {
        let start = (panel - self.first_panel) * self.stride + (k0 - self.k0) * NR;
        &self.data[start..start + (k1 - k0) * NR]
    }
}

/// One call's operands.
pub(super) struct Layer<'a, 'b> {
    pub(super) x: Rows<'a>,
    pub(super) weights: F32Panels<'b>,
    /// Whether the tiles pull the next panel towards the cache (weights streamed from DRAM).
    pub(super) prefetch: bool,
    pub(super) bias: &'b [f32],
    /// Int8 weights' column scales: each chain then starts from zero and ends with
    /// `fma(acc, scale, bias)` (see `super::precision::Precision::Int8`).
    pub(super) scales: Option<&'b [f32]>,
    pub(super) col0: usize,
    pub(super) activation: Activation,
    /// Panels this call computes (starting at panel `col0 / NR`).
    pub(super) panels: usize,
}

/// The row tiles of a block, in order: `tall` tiles of the full height first, then the other
/// rows in balanced tiles of at most [`MR_MAX_16_REGISTERS`] (7 rows = 4 + 3, not 6 + 1, so that
/// none is starved of accumulators). With 8-row tiles, a remainder goes with one 8-row tile into
/// short ones (8 + 5 = 5 + 4 + 4) rather than into a 7-row tile: instantiating one made the whole
/// AVX-512 kernel slower on short reductions (tiny-mlp, K = 16: 1.3× slower at 8–2048 rows, even
/// in calls that never ran it) while all panel widths shared one function. With 12-row tiles
/// ([`MR_TALL_32_REGISTERS`]) the rows after the last one are planned as for 8-row tiles, and a
/// remainder of 1–4 rows goes with one 12-row tile into that plan (16 = 8 + 8, 13 = 5 + 4 + 4), so
/// any multiple of 8 rows runs in tiles of 12 and 8 only.
pub(super) struct TilePlan {
    tall: usize,
    height: usize,
    /// 8-row tiles after the tall ones (only when `height` is 12).
    eights: usize,
    short_tiles: usize,
    short_base: usize,
    short_extra: usize,
}

impl TilePlan {
    /// The plan for `m` rows over K-blocks of `steps` reduction steps, in tiles up to `MR_MAX`
    /// rows tall. Short reductions (tiny-mlp's K = 16) stay in tiles of at most 8 rows, inlined:
    /// the call of an out-of-line tall tile and a 12-row tile's seeding and stores weigh too much
    /// beside so few steps (see `loop_of`).
    #[inline(always)]
    pub(super) fn for_block<const MR_MAX: usize>(m: usize, steps: usize) -> Self {
        let height = if steps < OUT_OF_LINE_MIN_STEPS {
            MR_MAX.min(MR_MAX_32_REGISTERS)
        } else {
            MR_MAX
        };
        Self::new(m, height)
    }

    /// The plan for `m` rows in tiles up to `height` rows tall (6, 8 or 12).
    #[inline(always)]
    fn new(m: usize, height: usize) -> Self {
        const EIGHT: usize = 8;
        let mut twelves = if height > EIGHT { m / height } else { 0 };
        if twelves > 0 && (1..=4).contains(&(m % height)) {
            twelves -= 1;
        }
        let rest = m - twelves * height;
        let eight_high = height.min(EIGHT);
        let eights = if eight_high <= MR_MAX_16_REGISTERS || rest < eight_high {
            0
        } else if rest.is_multiple_of(eight_high) {
            rest / eight_high
        } else {
            rest / eight_high - 1
        };
        let short = rest - eights * eight_high;
        let short_tiles = short.div_ceil(MR_MAX_16_REGISTERS);
        let (tall, eights) = if height > EIGHT {
            (twelves, eights)
        } else {
            (eights, 0)
        };
        TilePlan {
            tall,
            height,
            eights,
            short_tiles,
            short_base: short.checked_div(short_tiles).unwrap_or(0),
            short_extra: short.checked_rem(short_tiles).unwrap_or(0),
        }
    }

    #[inline(always)]
    fn tiles(&self) -> usize {
        self.tall + self.eights + self.short_tiles
    }

    /// Rows of tile `t`.
    #[inline(always)]
    fn rows(&self, t: usize) -> usize {
        if t < self.tall {
            self.height
        } else if t < self.tall + self.eights {
            8
        } else {
            let s = t - self.tall - self.eights;
            self.short_base + usize::from(s < self.short_extra)
        }
    }
}

/// One K-block: reduction indices `k0..k1`.
pub(super) struct Pass {
    pub(super) k0: usize,
    pub(super) k1: usize,
    /// Seed the accumulators with the bias (else reload the running sums from the output).
    pub(super) first: bool,
    /// Apply the element-wise activation when storing.
    pub(super) last: bool,
}

impl Layer<'_, '_> {
    #[inline(always)]
    fn pass<L: Lanes, const NR: usize, const NV: usize, const MR_MAX: usize>(
        &self,
        pass: &Pass,
        out: &mut RowsMut<'_>,
    ) {
        let m = self.x.rows();
        // Few rows: one tile over all of them, several panels at once so that there are enough
        // independent accumulators (FMA latency × FMA pipes) to keep the pipes busy. Not for 3
        // rows: two panels would take 12 accumulators, 4 weight registers and a broadcast, 17 of
        // AVX2's 16, and the spills made mnist-mlp 1.7× slower per row (31.1 µs against 18.4 µs,
        // one thread, Zen 3; `cargo bench --bench row_cost`).
        match m {
            1 => return self.panel_groups::<L, 1, NR, 4, NV>(0, pass, out),
            2 => return self.panel_groups::<L, 2, NR, 2, NV>(0, pass, out),
            3 => return self.panel_groups::<L, 3, NR, 1, NV>(0, pass, out),
            _ => {}
        }
        // Many rows: panel by panel, every row tile reusing the panel slice from L1. The tiles
        // run out of line, one copy per lanes type, panel width and tile height that every kernel
        // of these lanes shares, f32 and widened alike (see `Lanes::panel_tiles`); their plan,
        // a few divisions, is made once per pass. Against the tiles inlined into each kernel, on
        // Intel Xeon (AVX-512), builds interleaved, 5-7 rounds: mnist-mlp and wide-mlp 0.97-1.02×
        // at 8-512 rows (A/A 0.98-1.03), tiny-mlp 1.13-1.16× at 2048 rows, but 0.86-0.91× at 4
        // and 8 (about 30 ns more per 0.2 µs call: one call per pass of one tile).
        let plan = TilePlan::for_block::<MR_MAX>(m, pass.k1 - pass.k0);
        for p in 0..self.panels {
            let next = (self.prefetch && p + 1 < self.panels)
                .then(|| bytemuck::cast_slice(self.slice::<NR>(p + 1, pass)));
            // SAFETY: the kernel runs only on CPUs with `L`'s instruction set.
            unsafe { L::panel_tiles::<NR, NV, MR_MAX>(self, p, pass, &plan, out, next) };
        }
    }

    /// The row tiles of `plan` (`MR_MAX` rows at most, 4 or more rows in all) against local
    /// panel `p`; `next`, the bytes of the panel to come, is pulled towards the cache along the
    /// way.
    #[inline(always)]
    pub(super) fn panel_tiles<L: Lanes, const NR: usize, const NV: usize, const MR_MAX: usize>(
        &self,
        p: usize,
        pass: &Pass,
        plan: &TilePlan,
        out: &mut RowsMut<'_>,
        next: Option<&[u8]>,
    ) {
        let tiles = plan.tiles();
        // Weights streamed from DRAM: while this panel's tiles compute, the next panel's slice is
        // prefetched, spread over the first `period` tiles at one panel row every `period` steps,
        // so that memory stays busy during the tiles that compute from cache too. Asked for all
        // at once by the first tile, the requests outrun DRAM, stall that tile, and leave memory
        // idle during the others. wide-mlp on Zen 3, one thread, interleaved A/B against the
        // first tile alone: 1.08–1.35× at 8 rows, 1.16–1.39× at 32, even at 128 and 512. On Zen 5,
        // whose cores compute 2.6× faster, two tiles asked more than one core's share of DRAM:
        // spreading over up to four (`PREFETCH_TILES`) ran wide-mlp 1.15× faster at 16 rows,
        // 1.08× at 32 and 1.06× at 64 on one thread, 1.15× at 32 on two. Six was slower than
        // four (1.03× at 32 rows): the last tiles' share then arrives as the next panel starts.
        // A narrower stream (bf16 or int8 weights) is asked for at the same rate and so ends
        // early in each tile's share.
        let period = tiles.min(PREFETCH_TILES);
        let row_bytes = NR * size_of::<f32>();
        let share = next.map_or(0, |s| {
            s.len().div_ceil(row_bytes).div_ceil(period) * row_bytes
        });
        let mut r = 0;
        for t in 0..tiles {
            let rows = plan.rows(t);
            // The arms below cover every height a plan gives; any other would run as one row.
            debug_assert!(
                rows <= MR_MAX_16_REGISTERS || rows == 8 || rows == MR_MAX,
                "no {rows}-row tile"
            );
            let next = next.filter(|_| t < period).map(|stream| Prefetch {
                stream: &stream[(t * share).min(stream.len())..],
                period,
            });
            match rows {
                12 if MR_MAX >= 12 => self.tile::<L, 12, NR, 1, NV>(r, p, pass, out, next),
                8 if MR_MAX >= 8 => self.tile::<L, 8, NR, 1, NV>(r, p, pass, out, next),
                6 => self.tile::<L, 6, NR, 1, NV>(r, p, pass, out, next),
                5 => self.tile::<L, 5, NR, 1, NV>(r, p, pass, out, next),
                4 => self.tile::<L, 4, NR, 1, NV>(r, p, pass, out, next),
                3 => self.tile::<L, 3, NR, 1, NV>(r, p, pass, out, next),
                2 => self.tile::<L, 2, NR, 1, NV>(r, p, pass, out, next),
                _ => self.tile::<L, 1, NR, 1, NV>(r, p, pass, out, next),
            }
            r += rows;
        }
    }

    /// Local panel `p`'s weights for the pass's reduction range.
    #[inline(always)]
    fn slice<const NR: usize>(&self, p: usize, pass: &Pass) -> &[f32] {
        self.weights
            .slice::<NR>(self.col0 / NR + p, pass.k0, pass.k1)
    }

    /// Rows `r0..r0 + MR` against every panel, `NP` panels per tile.
    #[inline(always)]
    fn panel_groups<
        L: Lanes,
        const MR: usize,
        const NR: usize,
        const NP: usize,
        const NV: usize,
    >(
        &self,
        r0: usize,
        pass: &Pass,
        out: &mut RowsMut<'_>,
    ) {
        let mut p = 0;
        while p + NP <= self.panels {
            self.tile::<L, MR, NR, NP, NV>(r0, p, pass, out, None);
            p += NP;
        }
        while p < self.panels {
            self.tile::<L, MR, NR, 1, NV>(r0, p, pass, out, None);
            p += 1;
        }
    }

    /// The microkernel: rows `r0..r0 + MR` × local panels `p0..p0 + NP`, reduction `k0..k1`,
    /// accumulated in registers, with bias seeding and activation in the epilogue. `prefetch` is
    /// pulled towards the cache along the way.
    #[inline(always)]
    fn tile<L: Lanes, const MR: usize, const NR: usize, const NP: usize, const NV: usize>(
        &self,
        r0: usize,
        p0: usize,
        pass: &Pass,
        out: &mut RowsMut<'_>,
        prefetch: Option<Prefetch<'_>>,
    ) {
        let n_local = out.cols();
        let first_panel = self.col0 / NR + p0;
        // Valid columns of each panel of the tile (the last panel of a layer may be narrower).
        let widths: [usize; NP] =
            std::array::from_fn(|p| NR.min(n_local.saturating_sub((p0 + p) * NR)));
        let kc = pass.k1 - pass.k0;
        let xs: [&[f32]; MR] = std::array::from_fn(|i| &self.x.row(r0 + i)[pass.k0..pass.k0 + kc]);
        let ws: [&[f32]; NP] = std::array::from_fn(|p| {
            self.weights
                .slice::<NR>(first_panel + p, pass.k0, pass.k0 + kc)
        });

        // Fast path, full panels: accumulators are seeded straight from the bias (or the running
        // sums) and stored straight into the output, ReLU applied in registers; the other
        // element-wise activations run over the stored tile while it is still in L1.
        if widths.iter().all(|&w| w == NR) {
            // One pointer per row to the tile's columns, taken once through one borrow; each
            // panel's pointer is an offset from it. (Slicing the row again for every panel would
            // reborrow the whole row each time, which invalidates the pointers taken before.)
            let dst: [[*mut f32; NP]; MR] = std::array::from_fn(|i| {
                let tile = out.row_mut(r0 + i)[p0 * NR..(p0 + NP) * NR].as_mut_ptr();
                // SAFETY: `p * NR + NR <= NP * NR`, the length of the slice `tile` points into.
                std::array::from_fn(|p| unsafe { tile.add(p * NR) })
            });
            let zeros = [0.0f32; NR];
            let seed: [[*const f32; NP]; MR] = if pass.first && self.scales.is_some() {
                [[zeros.as_ptr(); NP]; MR]
            } else if pass.first {
                std::array::from_fn(|_| {
                    std::array::from_fn(|p| {
                        let c = self.col0 + (p0 + p) * NR;
                        self.bias[c..c + NR].as_ptr()
                    })
                })
            } else {
                std::array::from_fn(|i| std::array::from_fn(|p| dst[i][p].cast_const()))
            };
            let relu = pass.last && self.activation == Activation::Relu && self.scales.is_none();
            // SAFETY: every `seed` and `dst` pointer covers `NR` floats (sliced above or
            // `zeros`), the `dst` ranges are disjoint rows/panels of `out`, and this kernel runs
            // only on CPUs with `L`'s instruction set (the entry points' contract).
            unsafe { micro::<L, MR, NR, NP, NV>(kc, &xs, &ws, seed, dst, relu, prefetch) };
            if pass.last && !relu {
                for i in 0..MR {
                    let row = out.row_mut(r0 + i);
                    self.finish(p0 * NR, &mut row[p0 * NR..(p0 + NP) * NR]);
                }
            }
            return;
        }

        let mut acc = [[[0.0f32; NR]; NP]; MR];
        for (i, row_acc) in acc.iter_mut().enumerate() {
            for (p, a) in row_acc.iter_mut().enumerate() {
                let c = (p0 + p) * NR;
                let width = widths[p];
                if pass.first && self.scales.is_some() {
                    continue;
                }
                let src = if pass.first {
                    &self.bias[self.col0 + c..]
                } else {
                    &out.row(r0 + i)[c..]
                };
                copy_prefix(&mut a[..width], &src[..width]);
            }
        }

        let ptrs: [[*mut f32; NP]; MR] =
            std::array::from_fn(|i| std::array::from_fn(|p| acc[i][p].as_mut_ptr()));
        // SAFETY: the pointers cover the `NR` floats of each accumulator array, and this kernel
        // runs only on CPUs with `L`'s instruction set (the entry points' contract).
        unsafe {
            micro::<L, MR, NR, NP, NV>(
                kc,
                &xs,
                &ws,
                ptrs.map(|row| row.map(<*mut f32>::cast_const)),
                ptrs,
                false,
                prefetch,
            )
        };

        for (i, row_acc) in acc.iter_mut().enumerate() {
            let dst = out.row_mut(r0 + i);
            for (p, a) in row_acc.iter_mut().enumerate() {
                let c = (p0 + p) * NR;
                let width = widths[p];
                if pass.last {
                    self.finish(c, &mut a[..width]);
                }
                copy_prefix(&mut dst[c..c + width], &a[..width]);
            }
        }
    }

    /// The end of a chain for local columns `c..c + sums.len()`.
    #[inline(always)]
    fn finish(&self, c: usize, sums: &mut [f32]) {
        finish_chains(sums, self.col0 + c, self.scales, self.bias, self.activation);
    }
}

/// The end of the chains of layer columns `g..g + sums.len()`: with int8's column `scales`,
/// `fma(acc, scale, bias)` (the bias then was not the seed), then the element-wise activation.
#[inline(always)]
pub(super) fn finish_chains(
    sums: &mut [f32],
    g: usize,
    scales: Option<&[f32]>,
    bias: &[f32],
    activation: Activation,
) {
    if let Some(scales) = scales {
        let (scales, bias) = (&scales[g..g + sums.len()], &bias[g..]);
        for ((v, &s), &b) in sums.iter_mut().zip(scales).zip(bias) {
            *v = v.mul_add(s, b);
        }
    }
    activation.apply_elementwise(sums);
}

/// A SIMD register of `f32` lanes: the one thing that differs between the instruction sets.
/// Implementations are thin wrappers of one instruction each (see `super::x86`); the kernel above
/// is written once against this trait.
pub(super) trait Lanes {
    /// Floats per register.
    const N: usize;
    /// Vector registers of the instruction set the kernel instance is compiled for (AVX2: 16,
    /// AVX-512: 32).
    const REGISTERS: usize;
    /// The register type.
    type V: Copy;
    /// # Safety
    /// The CPU must support the instruction set of the implementation.
    unsafe fn splat(x: f32) -> Self::V;
    /// # Safety
    /// As `splat`, and `p` must be valid for reading `N` floats (no alignment needed).
    unsafe fn load(p: *const f32) -> Self::V;
    /// # Safety
    /// As `splat`, and `p` must be valid for writing `N` floats (no alignment needed).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a * b + c` per lane, rounded once (IEEE 754 fusedMultiplyAdd, like `f32::mul_add`).
    ///
    /// # Safety
    /// As `splat`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// ReLU per lane with the exact semantics of [`Activation::Relu`]: negative to `+0.0`,
    /// NaN and `-0.0` kept.
    ///
    /// # Safety
    /// As `splat`.
    unsafe fn relu(v: Self::V) -> Self::V;
    /// Asks for the cache line holding `p` to be brought into L2; never faults.
    ///
    /// # Safety
    /// As `splat`.
    unsafe fn prefetch(p: *const f32);
    /// [`micro_loop`] for these lanes as a function of its own, with the instruction set
    /// enabled on it (a function the kernel does not inline does not inherit its target
    /// features). The tall tiles (8 and 12 rows) run through it: inlined like the short ones,
    /// every tall height × prefetch period made one very large function per kernel instance,
    /// whose compile time grew faster than its size. A call costs little beside a tall tile's
    /// `8 × NR × kc` FMAs.
    ///
    /// # Safety
    /// As [`micro_loop`].
    unsafe fn micro_loop_tall<
        const MR: usize,
        const NR: usize,
        const NP: usize,
        const NV: usize,
        const PF: usize,
    >(
        kc: usize,
        xs: &[&[f32]; MR],
        ws: &[&[f32]; NP],
        seed: [[*const f32; NP]; MR],
        dst: [[*mut f32; NP]; MR],
        relu: bool,
        prefetch: &[u8],
    ) where
        Self: Sized;
    /// [`Layer::panel_tiles`] for these lanes as a function of its own, with the instruction set
    /// enabled on it. The `f32` kernels run their tiles through it, and the bf16 and int8
    /// kernels run the same tiles on widened panel slices, so that one copy serves every kernel
    /// of these lanes, panel width and tile height: inlined into each, they made the library's
    /// test build nearly twice as slow.
    ///
    /// # Safety
    /// The CPU must support the instruction set.
    unsafe fn panel_tiles<const NR: usize, const NV: usize, const MR_MAX: usize>(
        layer: &Layer<'_, '_>,
        p: usize,
        pass: &Pass,
        plan: &TilePlan,
        out: &mut RowsMut<'_>,
        next: Option<&[u8]>,
    ) where
        Self: Sized;
}

/// `Lanes::panel_tiles` for an impl: out of line, with the instruction set of `$features`
/// enabled on it where one is given.
macro_rules! panel_tiles {
    ($($features:literal)?) => {
        $(#[target_feature(enable = $features)])?
        #[inline(never)]
        unsafe fn panel_tiles<const NR: usize, const NV: usize, const MR_MAX: usize>(
            layer: &$crate::kernels::generic::Layer<'_, '_>,
            p: usize,
            pass: &$crate::kernels::generic::Pass,
            plan: &$crate::kernels::generic::TilePlan,
            out: &mut $crate::kernels::matrix::RowsMut<'_>,
            next: Option<&[u8]>,
        ) {
            layer.panel_tiles::<Self, NR, NV, MR_MAX>(p, pass, plan, out, next)
        }
    };
}
pub(super) use panel_tiles;

/// `Lanes::micro_loop_tall` for an impl: out of line, with the instruction set of `$features`
/// enabled on it where one is given.
macro_rules! micro_loop_tall {
    ($($features:literal)?) => {
        $(#[target_feature(enable = $features)])?
        #[inline(never)]
        unsafe fn micro_loop_tall<
            const MR: usize,
            const NR: usize,
            const NP: usize,
            const NV: usize,
            const PF: usize,
        >(
            kc: usize,
            xs: &[&[f32]; MR],
            ws: &[&[f32]; NP],
            seed: [[*const f32; NP]; MR],
            dst: [[*mut f32; NP]; MR],
            relu: bool,
            prefetch: &[u8],
        ) {
            // SAFETY: forwarded from the caller, who guarantees the instruction set.
            unsafe {
                $crate::kernels::generic::micro_loop::<Self, MR, NR, NP, NV, PF, true>(
                    kc, xs, ws, seed, dst, relu, prefetch,
                )
            }
        }
    };
}
pub(super) use micro_loop_tall;

/// Plain Rust lanes for the portable kernel: `f32::mul_add` per element.
#[derive(Debug)]
pub(super) struct Portable8;

impl Lanes for Portable8 {
    const N: usize = 8;
    const REGISTERS: usize = 16;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable floats; `[f32; 8]` has `f32`'s alignment.
        unsafe { *p.cast::<[f32; 8]>() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable floats; `[f32; 8]` has `f32`'s alignment.
        unsafe { *p.cast::<[f32; 8]>() = v }
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|j| a[j].mul_add(b[j], c[j]))
    }
    #[inline(always)]
    unsafe fn relu(mut v: [f32; 8]) -> [f32; 8] {
        Activation::Relu.apply_elementwise(&mut v);
        v
    }
    #[inline(always)]
    unsafe fn prefetch(_: *const f32) {}
    micro_loop_tall!();
    panel_tiles!();
}

/// `acc[i][p][j] = fma(xs[i][kk], ws[p][kk * NR + j], acc[i][p][j])` for `kk` in `0..kc`, in
/// order, with `NR = NV * L::N`, the accumulators held in `MR * NP * NV` registers, seeded from
/// `seed[i][p]` and stored (through ReLU when `relu`) to `dst[i][p]`. With `prefetch`, every
/// `period`-th step `kk` also prefetches the cache lines of `stream[kk / period * NR..][..NR]`.
///
/// # Safety
/// The CPU must support `L`'s instruction set; every `seed` pointer must be valid for reading
/// `NR` floats and every `dst` pointer for writing `NR` floats (a `dst` may equal its `seed`).
#[inline(always)]
unsafe fn micro<L: Lanes, const MR: usize, const NR: usize, const NP: usize, const NV: usize>(
    kc: usize,
    xs: &[&[f32]; MR],
    ws: &[&[f32]; NP],
    seed: [[*const f32; NP]; MR],
    dst: [[*mut f32; NP]; MR],
    relu: bool,
    prefetch: Option<Prefetch<'_>>,
) {
    // One instantiation per period, so that the loop without prefetching carries no test for it
    // (a run-time test in the loop measured 6–16 % slower on mnist-mlp) and the period is a
    // constant (a run-time one made LLVM spill the row pointers).
    // SAFETY: forwarded from the caller.
    unsafe {
        match prefetch {
            None => loop_of::<L, MR, NR, NP, NV, 0>(kc, xs, ws, seed, dst, relu, &[]),
            Some(Prefetch { stream, period: 1 }) => {
                loop_of::<L, MR, NR, NP, NV, 1>(kc, xs, ws, seed, dst, relu, stream)
            }
            Some(Prefetch { stream, period: 2 }) => {
                loop_of::<L, MR, NR, NP, NV, 2>(kc, xs, ws, seed, dst, relu, stream)
            }
            Some(Prefetch { stream, period: 3 }) => {
                loop_of::<L, MR, NR, NP, NV, 3>(kc, xs, ws, seed, dst, relu, stream)
            }
            Some(Prefetch { stream, period }) => {
                debug_assert_eq!(period, PREFETCH_TILES);
                loop_of::<L, MR, NR, NP, NV, PREFETCH_TILES>(kc, xs, ws, seed, dst, relu, stream)
            }
        }
    }
}

/// [`micro_loop`], out of line for the tall tiles (see [`Lanes::micro_loop_tall`]).
///
/// # Safety
/// As [`micro`].
#[inline(always)]
unsafe fn loop_of<
    L: Lanes,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
    const PF: usize,
>(
    kc: usize,
    xs: &[&[f32]; MR],
    ws: &[&[f32]; NP],
    seed: [[*const f32; NP]; MR],
    dst: [[*mut f32; NP]; MR],
    relu: bool,
    prefetch: &[u8],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if MR > MR_MAX_32_REGISTERS || (MR >= TALL_ROWS && kc >= OUT_OF_LINE_MIN_STEPS) {
            L::micro_loop_tall::<MR, NR, NP, NV, PF>(kc, xs, ws, seed, dst, relu, prefetch)
        } else {
            micro_loop::<L, MR, NR, NP, NV, PF, false>(kc, xs, ws, seed, dst, relu, prefetch)
        }
    }
}

/// Tiles at least this tall run their loop as a function of their own, with two reduction steps
/// per iteration, over reductions of at least [`OUT_OF_LINE_MIN_STEPS`] (12-row tiles only
/// there). Out of line on every reduction, tiny-mlp (K = 16) ran 0.96× as fast at 2048 rows and
/// 0.86× at 8 on Intel Xeon.
const TALL_ROWS: usize = 8;

/// Shortest reduction that runs tall tiles out of line (see [`TALL_ROWS`]).
const OUT_OF_LINE_MIN_STEPS: usize = 128;

/// [`micro`] with the prefetch period chosen at compile time (`PF`; 0 for none), two reduction
/// steps per loop iteration when `UNROLL` and the tile fits the registers.
///
/// # Safety
/// As [`micro`].
#[inline(always)]
pub(super) unsafe fn micro_loop<
    L: Lanes,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
    const PF: usize,
    const UNROLL: bool,
>(
    kc: usize,
    xs: &[&[f32]; MR],
    ws: &[&[f32]; NP],
    seed: [[*const f32; NP]; MR],
    dst: [[*mut f32; NP]; MR],
    relu: bool,
    prefetch: &[u8],
) {
    assert_eq!(NV * L::N, NR);
    for x in xs {
        assert!(x.len() >= kc);
    }
    for w in ws {
        assert!(w.len() >= kc * NR);
    }
    // The row pointers pass through `black_box` so that LLVM treats them as unrelated: seeing
    // one base plus multiples of the row stride, it rebuilt them with an integer add per row in
    // every step (8 adds beside 16 FMAs in an 8-row tile) instead of indexed loads. Intel Xeon
    // (AVX-512), one thread, builds interleaved: mnist-mlp 1.06× at 512 rows, wide-mlp 1.07×.
    let xp: [*const f32; MR] = std::hint::black_box(std::array::from_fn(|i| xs[i].as_ptr()));
    let wp: [*const f32; NP] = std::array::from_fn(|p| ws[p].as_ptr());
    // SAFETY: the caller guarantees the instruction set and the `seed`/`dst` ranges. For
    // `kk < kc` every `xs[i]` holds `kc` floats and every `ws[p]` `kc` rows of `NR` floats
    // (asserted above); prefetch addresses are only computed (`wrapping_add`), never read.
    // Unchecked reads keep bounds checks (a compare and branch per row per step) out of the
    // innermost loop.
    unsafe {
        // Loops, not `array::from_fn`: a closure does not inherit the caller's target features,
        // and where LLVM left one uninlined (the 12-row tile), every load became a call.
        let mut a = [[[L::splat(0.0); NV]; NP]; MR];
        for (row, row_seed) in a.iter_mut().zip(&seed) {
            for (panel, &panel_seed) in row.iter_mut().zip(row_seed) {
                for (v, acc) in panel.iter_mut().enumerate() {
                    *acc = L::load(panel_seed.add(v * L::N));
                }
            }
        }
        // Two steps per iteration in the tall tiles that carry large batches: one loop branch and
        // counter update per 32 FMAs, not 16 (an 8 × 32 tile in isolation on Intel Xeon: 1.07×
        // the FLOP rate of one step per iteration). Not in short tiles, nor in tiles that spill
        // (the AVX-512 kernel's source compiled for AVX2's 16 registers, for the conformance
        // suite): unrolled, they doubled code that gains nothing, and its compile time.
        let fits = MR * NP * NV + NP * NV < L::REGISTERS;
        let unroll = UNROLL && fits;
        let mut kk = 0;
        while unroll && kk + 2 <= kc {
            step::<L, MR, NR, NP, NV, PF>(kk, &xp, &wp, &mut a, prefetch);
            step::<L, MR, NR, NP, NV, PF>(kk + 1, &xp, &wp, &mut a, prefetch);
            kk += 2;
        }
        while kk < kc {
            step::<L, MR, NR, NP, NV, PF>(kk, &xp, &wp, &mut a, prefetch);
            kk += 1;
        }
        for (row, row_dst) in a.iter().zip(&dst) {
            for (panel, &panel_dst) in row.iter().zip(row_dst) {
                for (v, &value) in panel.iter().enumerate() {
                    let value = if relu { L::relu(value) } else { value };
                    L::store(panel_dst.add(v * L::N), value);
                }
            }
        }
    }
}

/// Reduction step `kk` of [`micro_loop`]: every accumulator of the tile gets its one FMA.
///
/// # Safety
/// As [`micro_loop`], with `kk` below its `kc`.
#[inline(always)]
unsafe fn step<
    L: Lanes,
    const MR: usize,
    const NR: usize,
    const NP: usize,
    const NV: usize,
    const PF: usize,
>(
    kk: usize,
    xp: &[*const f32; MR],
    wp: &[*const f32; NP],
    a: &mut [[[L::V; NV]; NP]; MR],
    prefetch: &[u8],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if PF > 0 && kk.is_multiple_of(PF) {
            // One 64-byte line per 16 floats; a prefetch never faults, so the end of a short
            // stream needs no test.
            for line in 0..NR.div_ceil(16) {
                let at = (kk / PF * NR + line * 16) * size_of::<f32>();
                L::prefetch(prefetch.as_ptr().wrapping_add(at).cast());
            }
        }
        let mut wv = [[L::splat(0.0); NV]; NP];
        for (panel, &panel_ptr) in wv.iter_mut().zip(wp) {
            for (v, w) in panel.iter_mut().enumerate() {
                *w = L::load(panel_ptr.add(kk * NR + v * L::N));
            }
        }
        fma_step::<L, MR, NP, NV>(kk, xp, &wv, a);
    }
}

/// `a[i][p][v] = fma(x[i][kk], wv[p][v], a[i][p][v])` for every accumulator of a tile: one
/// reduction step, its weights already in registers (`f32` or widened).
///
/// # Safety
/// The CPU must support `L`'s instruction set; every `xp[i]` must be valid for reading step `kk`.
#[inline(always)]
pub(super) unsafe fn fma_step<L: Lanes, const MR: usize, const NP: usize, const NV: usize>(
    kk: usize,
    xp: &[*const f32; MR],
    wv: &[[L::V; NV]; NP],
    a: &mut [[[L::V; NV]; NP]; MR],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        for i in 0..MR {
            let xv = L::splat(*xp[i].add(kk));
            for p in 0..NP {
                for v in 0..NV {
                    a[i][p][v] = L::fma(xv, wv[p][v], a[i][p][v]);
                }
            }
        }
    }
}

/// Weights to pull towards the cache while a tile computes: one panel row of `stream` every
/// `period` reduction steps (1 to [`PREFETCH_TILES`]).
#[derive(Clone, Copy)]
struct Prefetch<'a> {
    stream: &'a [u8],
    period: usize,
}

/// `dst.copy_from_slice(src)`, with the full-panel case spelled out as a fixed-size copy (vector
/// moves) rather than a `memcpy` call of unknown length.
#[inline(always)]
fn copy_prefix(dst: &mut [f32], src: &[f32]) {
    const FULL: usize = 8;
    if dst.len().is_multiple_of(FULL) && dst.len() == src.len() {
        for (d, s) in dst.chunks_exact_mut(FULL).zip(src.chunks_exact(FULL)) {
            let s: &[f32; FULL] = s.try_into().expect("chunk of FULL");
            let d: &mut [f32; FULL] = d.try_into().expect("chunk of FULL");
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_plans_cover_every_row_with_supported_heights() {
        for height in [
            MR_MAX_16_REGISTERS,
            MR_MAX_32_REGISTERS,
            MR_TALL_32_REGISTERS,
        ] {
            for m in 0..200 {
                let plan = TilePlan::new(m, height);
                let rows: Vec<usize> = (0..plan.tiles()).map(|t| plan.rows(t)).collect();
                assert_eq!(rows.iter().sum::<usize>(), m, "height {height}, {m} rows");
                assert!(
                    rows.iter().all(|&r| (1..=MR_MAX_16_REGISTERS).contains(&r)
                        || r == MR_MAX_32_REGISTERS.min(height)
                        || r == height),
                    "height {height}, {m} rows: {rows:?}"
                );
            }
        }
        let rows = |m, height| {
            let plan = TilePlan::new(m, height);
            (0..plan.tiles()).map(|t| plan.rows(t)).collect::<Vec<_>>()
        };
        assert_eq!(rows(7, 6), [4, 3]);
        assert_eq!(rows(7, 8), [4, 3]);
        assert_eq!(rows(16, 8), [8, 8]);
        assert_eq!(rows(21, 8), [8, 5, 4, 4]);
        assert_eq!(rows(13, 6), [5, 4, 4]);
        let twelve = MR_TALL_32_REGISTERS;
        assert_eq!(rows(8, twelve), [8]);
        assert_eq!(rows(11, twelve), [6, 5]);
        assert_eq!(rows(13, twelve), [5, 4, 4]);
        assert_eq!(rows(16, twelve), [8, 8]);
        assert_eq!(rows(20, twelve), [12, 8]);
        assert_eq!(rows(29, twelve), [12, 12, 5]);
        assert_eq!(rows(40, twelve), [12, 12, 8, 8]);
        for m in (8..=256).step_by(8) {
            assert!(
                rows(m, twelve).iter().all(|&r| r == 8 || r == 12),
                "{m} rows"
            );
        }
    }
}
