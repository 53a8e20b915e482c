//! Dense-layer kernels behind one boundary: `out = act(x · W + b)` for a block of rows, with `W`
//! packed at compile time. Every kernel reproduces the reference arithmetic bit for bit
//! (see [`reference`]), so which kernel runs never changes a result.

mod generic;
mod matrix;
mod packed;
pub(crate) mod reference;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use matrix::{Rows, RowsMut};
pub(crate) use packed::PackedWeights;

use crate::Activation;

/// A kernel family. [`KernelKind::detect`] picks the fastest one this CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelKind {
    /// Plain Rust without SIMD target features: runs anywhere. On CPUs without a fused
    /// multiply-add instruction it is slow, since each `mul_add` becomes a library call.
    Portable,
    /// The tiled kernel compiled for AVX2 + FMA (x86-64 only).
    Avx2Fma,
}

impl KernelKind {
    /// The fastest kernel this CPU can run.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if KernelKind::Avx2Fma.is_supported() {
            return KernelKind::Avx2Fma;
        }
        KernelKind::Portable
    }

    /// Every kernel this CPU can run (for tests and benches).
    pub fn all_supported() -> Vec<Self> {
        [KernelKind::Portable, KernelKind::Avx2Fma]
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            KernelKind::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2Fma => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2Fma => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Portable => "portable",
            KernelKind::Avx2Fma => "avx2-fma",
        }
    }

    /// The panel width the kernel's packed weights use.
    pub(crate) fn panel_width(self) -> usize {
        16
    }

    /// `out = act(x · W + b)` for the rows of `x`.
    ///
    /// # Panics
    /// If the kernel is not supported by this CPU or the shapes disagree.
    pub(crate) fn dense(
        self,
        x: Rows<'_>,
        w: &PackedWeights,
        bias: &[f32],
        activation: Activation,
        out: RowsMut<'_>,
    ) {
        assert_eq!(x.cols(), w.k());
        assert_eq!(out.cols(), w.n());
        assert_eq!(x.rows(), out.rows());
        assert_eq!(bias.len(), w.n());
        assert_eq!(w.nr(), self.panel_width());
        match self {
            KernelKind::Portable => generic::dense_tiled::<4, 16>(x, w, bias, activation, out),
            KernelKind::Avx2Fma => {
                assert!(self.is_supported(), "AVX2/FMA kernel on a CPU without them");
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU supports AVX2 and FMA (asserted above).
                unsafe {
                    x86::dense_avx2_fma(x, w, bias, activation, out)
                }
            }
        }
    }
}

#[cfg(test)]
mod conformance;
