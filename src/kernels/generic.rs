//! A register-tiled kernel written once in plain Rust and compiled several times, each time with
//! different target features (see `super::x86`). It honours the reference arithmetic exactly: each
//! output keeps one accumulator, seeded with the bias and updated by `mul_add` in `k` order.

use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use crate::Activation;

/// `out = act(x · W + b)` for a block of rows, `W` packed in `NR`-wide panels.
#[inline(always)]
pub(super) fn dense_tiled<const MR: usize, const NR: usize>(
    x: Rows<'_>,
    w: &PackedWeights,
    bias: &[f32],
    activation: Activation,
    mut out: RowsMut<'_>,
) {
    debug_assert_eq!(w.nr(), NR);
    let (m, k, n) = (x.rows(), w.k(), w.n());
    for p in 0..w.panels() {
        let panel = w.panel(p);
        let c0 = p * NR;
        let cols = NR.min(n - c0);
        let mut seed = [0.0f32; NR];
        seed[..cols].copy_from_slice(&bias[c0..c0 + cols]);
        let mut r = 0;
        while r + MR <= m {
            let acc = tile::<MR, NR>(&x, r, k, panel, &seed);
            store(&acc, &mut out, r, c0, cols, activation);
            r += MR;
        }
        while r < m {
            let acc = tile::<1, NR>(&x, r, k, panel, &seed);
            store(&acc, &mut out, r, c0, cols, activation);
            r += 1;
        }
    }
    if activation.is_row_wise() {
        for r in 0..m {
            activation.apply_row(out.row_mut(r));
        }
    }
}

#[inline(always)]
fn tile<const MR: usize, const NR: usize>(
    x: &Rows<'_>,
    r0: usize,
    k: usize,
    panel: &[f32],
    seed: &[f32; NR],
) -> [[f32; NR]; MR] {
    let mut acc = [*seed; MR];
    let xs: [&[f32]; MR] = std::array::from_fn(|i| &x.row(r0 + i)[..k]);
    for (kk, wk) in panel.chunks_exact(NR).take(k).enumerate() {
        for i in 0..MR {
            let xv = xs[i][kk];
            for j in 0..NR {
                acc[i][j] = xv.mul_add(wk[j], acc[i][j]);
            }
        }
    }
    acc
}

#[inline(always)]
fn store<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    out: &mut RowsMut<'_>,
    r0: usize,
    c0: usize,
    cols: usize,
    activation: Activation,
) {
    for (i, row) in acc.iter().enumerate() {
        let dst = &mut out.row_mut(r0 + i)[c0..c0 + cols];
        dst.copy_from_slice(&row[..cols]);
        activation.apply_elementwise(dst);
    }
}
