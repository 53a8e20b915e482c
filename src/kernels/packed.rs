//! Weights packed once, at compile time, into the panel layout the kernels stream.

use ndarray::ArrayView2;

use super::buffer::WeightBuffer;
use super::precision::{ACTIVATION_CODE_OFFSET, Precision, bf16_bits, quantize_int8};

/// A `[k, n]` weight matrix cut into column panels `nr` wide. Panel `p` holds, for each
/// `kk` in `0..k`, the `nr` weights `W[kk, p*nr .. p*nr+nr]` contiguously; the last panel is
/// zero-padded. A kernel's inner loop therefore reads one panel front to back. The elements are
/// `f32`, bf16 bits (`u16`) or int8 codes (`i8`) with one scale per column, per [`Precision`];
/// in every case they live in the `f32`-typed [`WeightBuffer`], reinterpreted. bf16 panels hold
/// reduction steps in pairs (`k` padded to even with zeros): for steps `2q` and `2q + 1`, each
/// of the `nr` columns has one 32-bit word whose high half is step `2q`'s bits and whose low half
/// is step `2q + 1`'s, so widening a step to `f32` is one AND or one shift per register (see
/// [`super::widened`]). Full int8
/// ([`Precision::Int8Full`]) keeps the int8 codes in the layout of VNNI's byte dot products
/// instead: `k` padded to a multiple of 4 with zeros, and for each group of 4 reduction steps the
/// `nr` columns' 4 codes each, so one 64-byte load feeds 16 columns × 4 steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedWeights {
    k: usize,
    n: usize,
    nr: usize,
    precision: Precision,
    /// The int8 scale of each of the `n` columns (empty in other precisions).
    scales: Vec<f32>,
    /// Full int8: `128 · Σ_k q[k, c]` per column, what the unsigned activation codes add to
    /// each sum (empty in other precisions).
    code_offsets: Vec<i32>,
    data: WeightBuffer,
    /// Whether kernels prefetch the next panel (for weights streamed from DRAM).
    prefetch: bool,
}

impl PackedWeights {
    /// Packs `w` in `nr`-wide panels, in huge pages if `huge_pages` (see [`WeightBuffer`]).
    pub(crate) fn pack(w: ArrayView2<'_, f32>, nr: usize, huge_pages: bool) -> Self {
        assert!(nr > 0);
        let (k, n) = w.dim();
        let panels = n.div_ceil(nr);
        let mut data = WeightBuffer::zeroed(panels * k * nr, huge_pages);
        for (p, panel) in data
            .chunks_exact_mut((k * nr).max(1))
            .take(panels)
            .enumerate()
        {
            let c0 = p * nr;
            let width = nr.min(n - c0);
            for kk in 0..k {
                for c in 0..width {
                    panel[kk * nr + c] = w[[kk, c0 + c]];
                }
            }
        }
        PackedWeights {
            k,
            n,
            nr,
            precision: Precision::F32,
            scales: Vec::new(),
            code_offsets: Vec::new(),
            data,
            prefetch: false,
        }
    }

    /// Packs `w` in `nr`-wide panels in `precision` (rounded or quantised as [`Precision`]
    /// defines), in huge pages if `huge_pages`.
    pub(crate) fn pack_precision(
        w: ArrayView2<'_, f32>,
        nr: usize,
        huge_pages: bool,
        precision: Precision,
    ) -> Self {
        match precision {
            Precision::F32 => Self::pack(w, nr, huge_pages),
            Precision::Bf16 => Self::pack_bf16_pairs(w, nr, huge_pages),
            Precision::Int8 => {
                let (q, scales) = quantize_int8(w);
                Self::pack_elements(q.view(), nr, huge_pages, precision, scales)
            }
            Precision::Int8Full => Self::pack_int8_full(w, nr, huge_pages),
        }
    }

    /// Packs the int8 codes of `w` in the VNNI layout (see the type's documentation).
    fn pack_int8_full(w: ArrayView2<'_, f32>, nr: usize, huge_pages: bool) -> Self {
        assert!(nr > 0);
        let (q, scales) = quantize_int8(w);
        let (k, n) = q.dim();
        let panels = n.div_ceil(nr);
        let panel_bytes = (k.div_ceil(4) * 4 * nr).max(1);
        let mut data = WeightBuffer::zeroed((panels * panel_bytes).div_ceil(4), huge_pages);
        let all: &mut [i8] = bytemuck::cast_slice_mut(&mut data[..]);
        for (p, panel) in all.chunks_exact_mut(panel_bytes).take(panels).enumerate() {
            let c0 = p * nr;
            for kk in 0..k {
                for c in 0..nr.min(n - c0) {
                    panel[(kk / 4 * nr + c) * 4 + kk % 4] = q[[kk, c0 + c]];
                }
            }
        }
        let code_offsets = (0..n)
            .map(|c| {
                ACTIVATION_CODE_OFFSET * q.column(c).iter().map(|&v| i32::from(v)).sum::<i32>()
            })
            .collect();
        PackedWeights {
            k,
            n,
            nr,
            precision: Precision::Int8Full,
            scales,
            code_offsets,
            data,
            prefetch: false,
        }
    }

    /// Packs the bf16 bits of `w` in step pairs (see the type's documentation).
    fn pack_bf16_pairs(w: ArrayView2<'_, f32>, nr: usize, huge_pages: bool) -> Self {
        assert!(nr > 0);
        let (k, n) = w.dim();
        let panels = n.div_ceil(nr);
        let panel_words = k.div_ceil(2) * nr;
        let mut data = WeightBuffer::zeroed(panels * panel_words, huge_pages);
        let all: &mut [u32] = bytemuck::cast_slice_mut(&mut data[..]);
        for (p, panel) in all
            .chunks_exact_mut(panel_words.max(1))
            .take(panels)
            .enumerate()
        {
            let c0 = p * nr;
            for kk in 0..k {
                // Even steps in the high half, odd ones in the low.
                let shift = if kk % 2 == 0 { 16 } else { 0 };
                for c in 0..nr.min(n - c0) {
                    panel[kk / 2 * nr + c] |= u32::from(bf16_bits(w[[kk, c0 + c]])) << shift;
                }
            }
        }
        PackedWeights {
            k,
            n,
            nr,
            precision: Precision::Bf16,
            scales: Vec::new(),
            code_offsets: Vec::new(),
            data,
            prefetch: false,
        }
    }

    /// Packs already-converted elements (int8 codes) as [`Self::pack`] does.
    fn pack_elements<E: bytemuck::Pod>(
        w: ArrayView2<'_, E>,
        nr: usize,
        huge_pages: bool,
        precision: Precision,
        scales: Vec<f32>,
    ) -> Self {
        assert!(nr > 0);
        assert_eq!(size_of::<E>(), precision.bytes_per_weight());
        let (k, n) = w.dim();
        let panels = n.div_ceil(nr);
        let elements = panels * k * nr;
        let mut data = WeightBuffer::zeroed((elements * size_of::<E>()).div_ceil(4), huge_pages);
        let all: &mut [E] = bytemuck::cast_slice_mut(&mut data[..]);
        for (p, panel) in all
            .chunks_exact_mut((k * nr).max(1))
            .take(panels)
            .enumerate()
        {
            let c0 = p * nr;
            let width = nr.min(n - c0);
            for kk in 0..k {
                for c in 0..width {
                    panel[kk * nr + c] = w[[kk, c0 + c]];
                }
            }
        }
        PackedWeights {
            k,
            n,
            nr,
            precision,
            scales,
            code_offsets: Vec::new(),
            data,
            prefetch: false,
        }
    }

    /// Asks kernels to prefetch each next panel: worth it when the weights come from DRAM.
    pub(crate) fn with_prefetch(mut self, prefetch: bool) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Whether kernels prefetch each next panel.
    pub(crate) fn prefetch(&self) -> bool {
        self.prefetch
    }

    /// Rows of `W` (the reduction length).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Columns of `W` (output width).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Panel width.
    pub(crate) fn nr(&self) -> usize {
        self.nr
    }

    /// Every panel, one after the other (`F32` weights only).
    #[inline]
    pub(crate) fn f32_panels(&self) -> &[f32] {
        debug_assert_eq!(self.precision, Precision::F32);
        &self.data[..self.n.div_ceil(self.nr) * self.k * self.nr]
    }

    /// Panel `p`: `k * nr` floats (`F32` weights only).
    #[inline]
    pub(crate) fn panel(&self, p: usize) -> &[f32] {
        debug_assert_eq!(self.precision, Precision::F32);
        let len = self.k * self.nr;
        &self.data[p * len..(p + 1) * len]
    }

    /// Panel `p`: `k * nr` elements of the precision's storage type (`E` must be it: `f32`,
    /// `u16` for bf16, `i8` for int8); bf16's `k` rounded up to even (step pairs).
    ///
    /// # Panics
    /// If `E` is not as wide as the stored elements.
    #[inline]
    pub(crate) fn panel_elements<E: bytemuck::Pod>(&self, p: usize) -> &[E] {
        assert_eq!(size_of::<E>(), self.precision.bytes_per_weight());
        debug_assert_ne!(self.precision, Precision::Int8Full);
        let len = self.panel_steps() * self.nr;
        let all: &[E] = bytemuck::cast_slice(&self.data[..]);
        &all[p * len..(p + 1) * len]
    }

    /// Full int8 panel `p`: `k.div_ceil(4)` groups of `nr × 4` codes (see the type's
    /// documentation).
    #[inline]
    pub(crate) fn vnni_panel(&self, p: usize) -> &[i8] {
        debug_assert_eq!(self.precision, Precision::Int8Full);
        let len = self.panel_steps() * self.nr;
        let all: &[i8] = bytemuck::cast_slice(&self.data[..]);
        &all[p * len..(p + 1) * len]
    }

    /// Full int8: `128 · Σ_k q[k, c]` for each column (empty in other precisions).
    pub(crate) fn code_offsets(&self) -> &[i32] {
        &self.code_offsets
    }

    /// The precision the elements are stored in.
    pub(crate) fn precision(&self) -> Precision {
        self.precision
    }

    /// The int8 scale of each column (empty unless the precision is int8).
    pub(crate) fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Bytes held: the packed elements (padding included) and the scales.
    pub(crate) fn bytes(&self) -> usize {
        self.n.div_ceil(self.nr) * self.panel_steps() * self.nr * self.precision.bytes_per_weight()
            + 4 * (self.scales.len() + self.code_offsets.len())
    }

    /// Reduction steps a panel holds, padding included.
    fn panel_steps(&self) -> usize {
        match self.precision {
            Precision::F32 | Precision::Int8 => self.k,
            Precision::Bf16 => self.k.next_multiple_of(2),
            Precision::Int8Full => self.k.div_ceil(4) * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn panels_hold_columns_in_k_order_with_zero_padding() {
        let w = Array2::from_shape_fn((3, 5), |(i, j)| (10 * i + j) as f32);
        let p = PackedWeights::pack(w.view(), 4, false);
        assert_eq!(p.data.len(), 2 * 3 * 4);
        assert_eq!(
            &p.panel(0)[..8],
            &[0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]
        );
        assert_eq!(&p.panel(1)[..8], &[4.0, 0.0, 0.0, 0.0, 14.0, 0.0, 0.0, 0.0]);
        assert_eq!(p.bytes(), 2 * 3 * 4 * 4);
    }

    #[test]
    fn low_precision_panels_hold_the_converted_elements() {
        let w = Array2::from_shape_fn((3, 5), |(i, j)| (10 * i + j) as f32 - 12.0);
        let b = PackedWeights::pack_precision(w.view(), 4, false, Precision::Bf16);
        // k = 3 padded to 4 steps, two to a 32-bit word: the even step high, the odd one low.
        assert_eq!(b.bytes(), 2 * 4 * 4 * 2);
        let words: &[u32] = bytemuck::cast_slice(b.panel_elements::<u16>(1));
        let bits = |v: f32| u32::from(bf16_bits(v));
        assert_eq!(words[0], (bits(-8.0) << 16) | bits(2.0));
        assert_eq!(&words[1..4], &[0, 0, 0]);
        assert_eq!(words[4], bits(12.0) << 16);
        assert_eq!(words.len(), 8);
        let q = PackedWeights::pack_precision(w.view(), 4, false, Precision::Int8);
        assert_eq!(q.bytes(), 2 * 3 * 4 + 5 * 4);
        assert_eq!(q.scales().len(), 5);
        assert_eq!(q.scales()[0], 12.0 / 127.0);
        let codes: &[i8] = q.panel_elements(0);
        assert_eq!(&codes[..4], &[-127, -127, -127, -104]);
        assert_eq!(&codes[8..12], &[85, 104, 127, 127]);
    }

    #[test]
    fn full_int8_panels_group_four_steps_per_column_with_offsets() {
        // k = 5: two groups of 4 steps, the second padded with zeros.
        let w = Array2::from_shape_fn((5, 3), |(i, j)| {
            (i as f32 + 1.0) * if j == 1 { -1.0 } else { 1.0 }
        });
        let q = PackedWeights::pack_precision(w.view(), 2, false, Precision::Int8Full);
        assert_eq!(q.bytes(), 2 * 8 * 2 + 3 * 4 + 3 * 4);
        let codes = [25i8, 51, 76, 102, 127];
        let panel = q.vnni_panel(0);
        assert_eq!(&panel[..4], &codes[..4]); // column 0, steps 0..4
        assert_eq!(&panel[4..8], &codes.map(|c| -c)[..4]); // column 1
        assert_eq!(&panel[8..12], &[127, 0, 0, 0]); // column 0, step 4 and padding
        assert_eq!(&q.vnni_panel(1)[..4], &codes[..4]); // column 2
        assert_eq!(&q.vnni_panel(1)[4..8], &[0; 4]); // padded column
        let sum: i32 = codes.iter().map(|&c| i32::from(c)).sum();
        assert_eq!(q.code_offsets(), &[128 * sum, -128 * sum, 128 * sum]);
    }
}
