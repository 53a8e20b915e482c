//! Weights packed once, at compile time, into the panel layout the kernels stream.

use ndarray::ArrayView2;

use super::buffer::WeightBuffer;

/// A `[k, n]` weight matrix cut into column panels `nr` wide. Panel `p` holds, for each
/// `kk` in `0..k`, the `nr` weights `W[kk, p*nr .. p*nr+nr]` contiguously; the last panel is
/// zero-padded. A kernel's inner loop therefore reads one panel front to back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedWeights {
    k: usize,
    n: usize,
    nr: usize,
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

    /// Panel `p`: `k * nr` floats.
    #[inline]
    pub(crate) fn panel(&self, p: usize) -> &[f32] {
        let len = self.k * self.nr;
        &self.data[p * len..(p + 1) * len]
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * 4
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
    }
}
