//! The full-int8 dense-layer kernel ([`super::Precision::Int8Full`]): quantised rows times int8
//! panels in the VNNI layout, summed exactly in `i32`, then one fixed `f32` epilogue per output.
//! Written once against [`Dot`] and compiled per instruction set: VNNI's `vpdpbusd` (64 byte
//! products per instruction) where the CPU has it, plain integer lanes elsewhere. Integer sums
//! are exact whatever their order, so every instantiation gives the same bits as the reference.
//!
//! Tiles follow the f32 kernel's layout: one to three rows run one tile over several panels
//! (enough independent accumulators), more rows run panel by panel in tiles of up to `MR_MAX`
//! rows. The whole reduction runs in one pass: a panel of `k × 32` bytes stays in L2 while
//! every row tile uses it.

use super::matrix::RowsMut;
use super::packed::PackedWeights;
use super::quantized_rows::QuantizedRows;
use crate::Activation;

/// Integer lanes: `N` columns of `i32` sums, each fed 4 byte products per step.
pub(super) trait Dot {
    /// Columns per register.
    const N: usize;
    /// `N` running sums.
    type Acc: Copy;
    /// One row's 4 activation codes, as the instruction set wants them.
    type X: Copy;
    /// # Safety
    /// The CPU must support the instruction set of the implementation.
    unsafe fn zero() -> Self::Acc;
    /// The 4 codes at `p`.
    ///
    /// # Safety
    /// As `zero`, and `p` must be valid for reading 4 bytes.
    unsafe fn load_x(p: *const u8) -> Self::X;
    /// `acc[c] += Σ_j x[j] · w[4c + j]` for the `N × 4` weight codes at `w`.
    ///
    /// # Safety
    /// As `zero`, and `w` must be valid for reading `4 N` bytes.
    unsafe fn dot(acc: Self::Acc, x: Self::X, w: *const i8) -> Self::Acc;
    /// # Safety
    /// As `zero`, and `p` must be valid for writing `N` sums.
    unsafe fn store(p: *mut i32, acc: Self::Acc);
}

/// Plain Rust lanes: exact `i32` products, whatever the instruction set vectorises them into.
#[derive(Debug)]
pub(super) struct PortableDot<const N: usize>;

impl<const N: usize> Dot for PortableDot<N> {
    const N: usize = N;
    type Acc = [i32; N];
    type X = [i32; 4];
    #[inline(always)]
    unsafe fn zero() -> [i32; N] {
        [0; N]
    }
    #[inline(always)]
    unsafe fn load_x(p: *const u8) -> [i32; 4] {
        // SAFETY: the caller guarantees 4 readable bytes.
        unsafe { *p.cast::<[u8; 4]>() }.map(i32::from)
    }
    #[inline(always)]
    unsafe fn dot(mut acc: [i32; N], x: [i32; 4], w: *const i8) -> [i32; N] {
        // SAFETY: the caller guarantees `4 N` readable bytes; `[[i8; 4]; N]` has `i8`'s alignment.
        let w = unsafe { &*w.cast::<[[i8; 4]; N]>() };
        for (a, wc) in acc.iter_mut().zip(w) {
            *a += (0..4).map(|j| x[j] * i32::from(wc[j])).sum::<i32>();
        }
        acc
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, acc: [i32; N]) {
        // SAFETY: the caller guarantees `N` writable sums; `[i32; N]` has `i32`'s alignment.
        unsafe { p.cast::<[i32; N]>().write_unaligned(acc) }
    }
}

/// `out = act(x · W + b)` for columns `col0 .. col0 + out.cols()` of quantised rows `x`, `W`
/// packed for full int8 in `NR`-wide panels (`NR = NV * D::N`); `col0` a multiple of `NR`.
#[inline(always)]
pub(super) fn dense_int8_full<D: Dot, const NR: usize, const NV: usize, const MR_MAX: usize>(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    mut out: RowsMut<'_>,
) {
    assert_eq!(NV * D::N, NR);
    assert_eq!(w.nr(), NR);
    assert_eq!(col0 % NR, 0);
    assert_eq!(x.k(), w.k());
    let m = x.rows();
    let layer = Layer {
        x,
        w,
        bias,
        col0,
        activation,
        panels: out.cols().div_ceil(NR),
    };
    match m {
        0 => {}
        1 => layer.panel_groups::<D, 1, NR, 4, NV>(&mut out),
        2 => layer.panel_groups::<D, 2, NR, 2, NV>(&mut out),
        3 => layer.panel_groups::<D, 3, NR, 1, NV>(&mut out),
        _ => layer.row_tiles::<D, NR, NV, MR_MAX>(&mut out),
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
    x: QuantizedRows<'a>,
    w: &'b PackedWeights,
    bias: &'b [f32],
    col0: usize,
    activation: Activation,
    /// Panels this call computes (starting at panel `col0 / NR`).
    panels: usize,
}

impl Layer<'_, '_> {
    /// Local panel `p`'s codes.
    #[inline(always)]
    fn panel<const NR: usize>(&self, p: usize) -> &[i8] {
        self.w.vnni_panel(self.col0 / NR + p)
    }

    /// Rows `0..MR` against every panel, `NP` panels per tile.
    #[inline(always)]
    fn panel_groups<D: Dot, const MR: usize, const NR: usize, const NP: usize, const NV: usize>(
        &self,
        out: &mut RowsMut<'_>,
    ) {
        let mut p = 0;
        while p + NP <= self.panels {
            let ws = std::array::from_fn(|q| self.panel::<NR>(p + q));
            self.tile::<D, MR, NR, NP, NV>(0, p, out, ws);
            p += NP;
        }
        while p < self.panels {
            self.tile::<D, MR, NR, 1, NV>(0, p, out, [self.panel::<NR>(p)]);
            p += 1;
        }
    }

    /// Every panel against balanced row tiles of at most `MR_MAX` rows.
    #[inline(always)]
    fn row_tiles<D: Dot, const NR: usize, const NV: usize, const MR_MAX: usize>(
        &self,
        out: &mut RowsMut<'_>,
    ) {
        let m = self.x.rows();
        let tiles = m.div_ceil(MR_MAX);
        let (base, extra) = (m / tiles, m % tiles);
        for p in 0..self.panels {
            let ws = [self.panel::<NR>(p)];
            let mut r = 0;
            for t in 0..tiles {
                let rows = base + usize::from(t < extra);
                match rows {
                    8 if MR_MAX >= 8 => self.tile::<D, 8, NR, 1, NV>(r, p, out, ws),
                    7 if MR_MAX >= 7 => self.tile::<D, 7, NR, 1, NV>(r, p, out, ws),
                    6 => self.tile::<D, 6, NR, 1, NV>(r, p, out, ws),
                    5 => self.tile::<D, 5, NR, 1, NV>(r, p, out, ws),
                    4 => self.tile::<D, 4, NR, 1, NV>(r, p, out, ws),
                    3 => self.tile::<D, 3, NR, 1, NV>(r, p, out, ws),
                    2 => self.tile::<D, 2, NR, 1, NV>(r, p, out, ws),
                    _ => {
                        debug_assert_eq!(rows, 1);
                        self.tile::<D, 1, NR, 1, NV>(r, p, out, ws)
                    }
                }
                r += rows;
            }
        }
    }

    /// Rows `r0..r0 + MR` × local panels `p0..p0 + NP` (codes `ws`): the sums, then the
    /// epilogue `fma((acc - offset) as f32, s_x * s[n], b[n])` and the activation.
    #[inline(always)]
    fn tile<D: Dot, const MR: usize, const NR: usize, const NP: usize, const NV: usize>(
        &self,
        r0: usize,
        p0: usize,
        out: &mut RowsMut<'_>,
        ws: [&[i8]; NP],
    ) {
        let xs: [&[u8]; MR] = std::array::from_fn(|i| self.x.row(r0 + i));
        let mut acc = [[[0i32; NR]; NP]; MR];
        // SAFETY: `xs` are whole padded rows and `ws` whole panels of the same padded length,
        // and this kernel runs only on CPUs with `D`'s instruction set (the entry points'
        // contract).
        unsafe { micro::<D, MR, NR, NP, NV>(&xs, &ws, &mut acc) };
        for (i, row_acc) in acc.iter().enumerate() {
            for (p, sums) in row_acc.iter().enumerate() {
                epilogue(
                    &self.x,
                    self.w,
                    self.bias,
                    self.activation,
                    self.col0,
                    r0 + i,
                    p0 + p,
                    sums,
                    out,
                );
            }
        }
    }
}

/// One row's sums against local panel `p` of `NR` columns (`out`'s column 0 is layer column
/// `col0`): `fma((sum - offset) as f32, s_x * s[n], b[n])`, then the elementwise activation.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn epilogue<const NR: usize>(
    x: &QuantizedRows<'_>,
    w: &PackedWeights,
    bias: &[f32],
    activation: Activation,
    col0: usize,
    r: usize,
    p: usize,
    sums: &[i32; NR],
    out: &mut RowsMut<'_>,
) {
    let c = p * NR;
    let width = NR.min(out.cols().saturating_sub(c));
    let g = col0 + c;
    let (scales, offsets, bias) = (&w.scales()[g..], &w.code_offsets()[g..], &bias[g..]);
    let sx = x.scale(r);
    let dst = &mut out.row_mut(r)[c..c + width];
    let finish =
        |sum: i32, offset: i32, scale: f32, b: f32| ((sum - offset) as f32).mul_add(sx * scale, b);
    if let (Ok(dst), Some(scales), Some(offsets), Some(bias)) = (
        <&mut [f32; NR]>::try_from(&mut *dst),
        scales.first_chunk::<NR>(),
        offsets.first_chunk::<NR>(),
        bias.first_chunk::<NR>(),
    ) {
        // A whole panel: fixed-length arrays, which the compiler vectorises, and the activation
        // applied in registers before the one store (reloading a just-stored panel stalled).
        let mut values: [f32; NR] =
            std::array::from_fn(|j| finish(sums[j], offsets[j], scales[j], bias[j]));
        activation.apply_elementwise(&mut values);
        *dst = values;
        return;
    } else {
        for (j, v) in dst.iter_mut().enumerate() {
            *v = finish(sums[j], offsets[j], scales[j], bias[j]);
        }
    }
    activation.apply_elementwise(dst);
}

/// `acc[i][p][c] = Σ_kk xs[i][kk] · ws[p][code of column c, step kk]` over the whole padded
/// reduction, with the sums held in `MR * NP * NV` registers.
///
/// # Safety
/// The CPU must support `D`'s instruction set.
#[inline(always)]
unsafe fn micro<D: Dot, const MR: usize, const NR: usize, const NP: usize, const NV: usize>(
    xs: &[&[u8]; MR],
    ws: &[&[i8]; NP],
    acc: &mut [[[i32; NR]; NP]; MR],
) {
    let groups = xs.first().map_or(0, |x| x.len() / 4);
    for x in xs {
        assert_eq!(x.len(), groups * 4);
    }
    for w in ws {
        assert_eq!(w.len(), groups * 4 * NR);
    }
    let xp: [*const u8; MR] = std::array::from_fn(|i| xs[i].as_ptr());
    let wp: [*const i8; NP] = std::array::from_fn(|p| ws[p].as_ptr());
    // SAFETY: the caller guarantees the instruction set. For `g < groups` every row holds 4
    // codes at `4 g` and every panel `4 NR` codes at `4 NR g` (asserted above); each sum array
    // holds `NR = NV * D::N` values.
    unsafe {
        let mut a: [[[D::Acc; NV]; NP]; MR] =
            std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| D::zero())));
        for g in 0..groups {
            for (row, x) in a.iter_mut().zip(xp) {
                let xv = D::load_x(x.add(4 * g));
                for (sums, w) in row.iter_mut().zip(wp) {
                    for (v, sum) in sums.iter_mut().enumerate() {
                        *sum = D::dot(*sum, xv, w.add(4 * (g * NR + v * D::N)));
                    }
                }
            }
        }
        for (row, row_acc) in a.iter().zip(acc.iter_mut()) {
            for (panel, panel_acc) in row.iter().zip(row_acc.iter_mut()) {
                for (v, &value) in panel.iter().enumerate() {
                    D::store(panel_acc.as_mut_ptr().add(v * D::N), value);
                }
            }
        }
    }
}

/// The portable full-int8 kernel, per panel width.
pub(super) fn dense_portable(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
) {
    dense_any_width::<6>(x, w, col0, bias, activation, out)
}

/// Plain integer lanes at whatever panel width `w` has, tiles up to `MR_MAX` rows.
#[inline(always)]
pub(super) fn dense_any_width<const MR_MAX: usize>(
    x: QuantizedRows<'_>,
    w: &PackedWeights,
    col0: usize,
    bias: &[f32],
    activation: Activation,
    out: RowsMut<'_>,
) {
    match w.nr() {
        4 => dense_int8_full::<PortableDot<4>, 4, 1, MR_MAX>(x, w, col0, bias, activation, out),
        8 => dense_int8_full::<PortableDot<8>, 8, 1, MR_MAX>(x, w, col0, bias, activation, out),
        16 => dense_int8_full::<PortableDot<8>, 16, 2, MR_MAX>(x, w, col0, bias, activation, out),
        32 => dense_int8_full::<PortableDot<8>, 32, 4, MR_MAX>(x, w, col0, bias, activation, out),
        nr => unreachable!("no full-int8 kernel for {nr}-wide panels"),
    }
}
