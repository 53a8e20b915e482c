//! Layers at most 4 wide (classifier heads, such as tiny-mlp's 32→4) on AVX-512, four rows to a
//! zmm register. The tiled kernel gives such a layer one xmm register per row: every row and
//! reduction step costs a broadcast and an FMA of 4 useful lanes, and tiny-mlp's head took as
//! long as its 8× larger first layer. Here a register holds the 4 outputs of 4 rows (lane
//! `4 * i + j` is row `i`, output `j`): four reduction steps of four rows cost a load and three
//! inserts, four in-lane permutes and four FMAs. Each lane still accumulates one output from its
//! bias in `k` order with one rounding per step, so the bits are the reference's.

use std::arch::x86_64::*;

use super::matrix::{Rows, RowsMut};
use super::packed::PackedWeights;
use crate::Activation;

/// Groups of four rows per tile: four accumulators, each a chain of FMAs, so that four FMAs are
/// in flight (as many as the permutes feeding them keep up with).
const TILE_GROUPS: usize = 4;

/// `out = act(x · W + b)` for the first `x.rows() / 4 * 4` rows, `W` packed in one 4-wide panel;
/// returns how many rows it computed. The caller runs the others.
///
/// # Safety
/// The CPU must support AVX-512F.
///
/// # Panics
/// If `W` is not one 4-wide panel or the shapes disagree.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dense_groups_of_4(
    x: Rows<'_>,
    w: &PackedWeights,
    bias: &[f32],
    activation: Activation,
    out: &mut RowsMut<'_>,
) -> usize {
    let (k, n) = (w.k(), w.n());
    assert!(w.nr() == 4 && (1..=4).contains(&n) && out.cols() == n && bias.len() == n);
    assert!(x.cols() == k && x.rows() == out.rows());
    let panel = &w.panel(0)[..k * 4];
    let mut bias4 = [0.0f32; 4];
    bias4[..n].copy_from_slice(bias);
    let groups = x.rows() / 4;
    let mut g = 0;
    while g < groups {
        let tile = (groups - g).min(TILE_GROUPS);
        // SAFETY: forwarded from the caller (AVX-512F); the groups exist (`g + tile <= groups`).
        unsafe {
            match tile {
                4 => groups_tile::<4>(&x, panel, &bias4, out, g),
                3 => groups_tile::<3>(&x, panel, &bias4, out, g),
                2 => groups_tile::<2>(&x, panel, &bias4, out, g),
                _ => groups_tile::<1>(&x, panel, &bias4, out, g),
            }
        }
        g += tile;
    }
    let rows = groups * 4;
    for r in 0..rows {
        activation.apply_row(out.row_mut(r));
    }
    rows
}

/// Groups `g0..g0 + T` (rows `4 * g0..4 * (g0 + T)`), every reduction step, bias seeded.
///
/// # Safety
/// The CPU must support AVX-512F; the rows must exist in `x` and `out`; `panel` holds `4 * k`
/// floats for `k = x.cols()`.
#[inline(always)]
unsafe fn groups_tile<const T: usize>(
    x: &Rows<'_>,
    panel: &[f32],
    bias4: &[f32; 4],
    out: &mut RowsMut<'_>,
    g0: usize,
) {
    let k = x.cols();
    let rows: [[*const f32; 4]; T] =
        std::array::from_fn(|t| std::array::from_fn(|i| x.row(4 * (g0 + t) + i).as_ptr()));
    let w = panel.as_ptr();
    // SAFETY: AVX-512F per the contract. Every row pointer covers `k` floats (`Rows::row`), read
    // at `kk..kk + 4` only while `kk + 4 <= k` and at `kk < k` in the tail; the panel holds `4 * k`
    // floats, read at `4 * kk..4 * kk + 4` for `kk < k`.
    unsafe {
        let seed = _mm512_broadcast_f32x4(_mm_loadu_ps(bias4.as_ptr()));
        let mut acc = [seed; T];
        let mut kk = 0;
        while kk + 4 <= k {
            let wv: [__m512; 4] =
                std::array::from_fn(|s| _mm512_broadcast_f32x4(_mm_loadu_ps(w.add(4 * (kk + s)))));
            for t in 0..T {
                let r = &rows[t];
                let mut z = _mm512_castps128_ps512(_mm_loadu_ps(r[0].add(kk)));
                z = _mm512_insertf32x4::<1>(z, _mm_loadu_ps(r[1].add(kk)));
                z = _mm512_insertf32x4::<2>(z, _mm_loadu_ps(r[2].add(kk)));
                z = _mm512_insertf32x4::<3>(z, _mm_loadu_ps(r[3].add(kk)));
                acc[t] = _mm512_fmadd_ps(_mm512_permute_ps::<0x00>(z), wv[0], acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_permute_ps::<0x55>(z), wv[1], acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_permute_ps::<0xAA>(z), wv[2], acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_permute_ps::<0xFF>(z), wv[3], acc[t]);
            }
            kk += 4;
        }
        // Lanes 4i..4i+4 take element i of an xmm register.
        let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        while kk < k {
            let wv = _mm512_broadcast_f32x4(_mm_loadu_ps(w.add(4 * kk)));
            for t in 0..T {
                let r = &rows[t];
                let v = _mm_set_ps(*r[3].add(kk), *r[2].add(kk), *r[1].add(kk), *r[0].add(kk));
                let z = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(v));
                acc[t] = _mm512_fmadd_ps(z, wv, acc[t]);
            }
            kk += 1;
        }
        let n = out.cols();
        let mut lanes = [0.0f32; 16];
        for (t, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(lanes.as_mut_ptr(), *a);
            for i in 0..4 {
                out.row_mut(4 * (g0 + t) + i)
                    .copy_from_slice(&lanes[4 * i..4 * i + n]);
            }
        }
    }
}
