//! Dense-layer kernels behind one boundary: `out = act(x · W + b)` for a block of rows, with `W`
//! packed at compile time. Every kernel reproduces the reference arithmetic bit for bit
//! (see [`reference`]), so which kernel runs never changes a result.

mod buffer;
mod finite;
mod generic;
mod int8_dot;
mod matrix;
#[cfg(target_arch = "x86_64")]
mod narrow_avx512;
mod packed;
pub(crate) mod precision;
mod quantized_rows;
pub(crate) mod reference;
mod widened;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_amx;
#[cfg(target_arch = "x86_64")]
mod x86_int8;
#[cfg(target_arch = "x86_64")]
mod x86_widened;

pub(crate) use buffer::{LINE_BYTES, elements_to_line};
pub(crate) use matrix::{Rows, RowsMut};
pub(crate) use packed::PackedWeights;
pub use precision::{MAX_INT8_FULL_K, ParsePrecisionError, Precision};
pub(crate) use quantized_rows::{QuantizedRows, code_stride};

/// A layer's input as its kernel reads it: `f32` rows, or rows quantised per row for
/// [`Precision::Int8Full`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum LayerInput<'a> {
    F32(Rows<'a>),
    Int8(QuantizedRows<'a>),
}

use crate::Activation;

/// A kernel family. [`KernelKind::detect`] picks the fastest one this CPU supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelKind {
    /// Plain Rust without SIMD target features: runs anywhere. On CPUs without a fused
    /// multiply-add instruction it is slow, since each `mul_add` becomes a library call.
    Portable,
    /// The tiled kernel compiled for AVX2 + FMA, 16-wide panels; 4 or 8 wide for layers that
    /// narrow (x86-64 only).
    Avx2Fma,
    /// The same tiled kernel compiled for AVX-512F, 32-wide panels; 4 or 8 wide for layers that
    /// narrow (x86-64 only).
    Avx512,
}

/// Bytes of one panel slice per K-block (see `generic::dense_tiled`): half of a Zen 3 core's L2,
/// so a slice stays in L2 while every row tile of the block reuses it, and layers up to 4096 wide
/// (AVX2) run in one pass. Each extra pass stores and reloads the whole output block, which for
/// 256-row blocks of a 4096-wide layer (4 MB) comes from L3 or DRAM. Measured on Zen 3 with
/// calls alternated in one process: 256 KiB against 64 KiB on wide-mlp, one thread, 1.04–1.10×
/// (batch 8–512); 16 KiB (L1-resident) against 64 KiB 0.88–0.94×.
const KC_PANEL_BYTES: usize = 256 * 1024;

/// Fewest rows full int8 runs on AMX tiles (where the CPU has them) rather than VNNI.
const AMX_MIN_ROWS: usize = 4;

impl KernelKind {
    /// The fastest kernel this CPU can run.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        for kind in [KernelKind::Avx512, KernelKind::Avx2Fma] {
            if kind.is_supported() {
                return kind;
            }
        }
        KernelKind::Portable
    }

    /// Every kernel this CPU can run (for tests and benches).
    pub fn all_supported() -> Vec<Self> {
        [
            KernelKind::Portable,
            KernelKind::Avx2Fma,
            KernelKind::Avx512,
        ]
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
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 => {
                // AVX2 too: the kernel is compiled with it (every AVX-512F CPU has it).
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2Fma | KernelKind::Avx512 => false,
        }
    }

    /// # Panics
    /// If this CPU cannot run the kernel: the contract its `unsafe` entry points rely on.
    fn assert_supported(self) {
        assert!(
            self.is_supported(),
            "{} kernel on a CPU without it",
            self.name()
        );
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Portable => "portable",
            KernelKind::Avx2Fma => "avx2-fma",
            KernelKind::Avx512 => "avx512",
        }
    }

    /// Rows of a block that runs in full register tiles only when it has a multiple of them
    /// (AVX-512: tiles of 12 and 8 rows).
    pub(crate) fn tile_rows(self) -> usize {
        match self {
            KernelKind::Avx512 => generic::MR_MAX_32_REGISTERS,
            KernelKind::Portable | KernelKind::Avx2Fma => generic::MR_MAX_16_REGISTERS,
        }
    }

    /// The panel width of the kernel's packed weights for a layer `n` outputs wide. The SIMD
    /// kernels pack narrow layers (classifier heads) in 4-, 8- or (AVX-512) 16-wide panels
    /// rather than padding them to a full panel; all widths give the same bits.
    pub(crate) fn panel_width(self, n: usize) -> usize {
        match self {
            KernelKind::Portable => 16,
            KernelKind::Avx2Fma | KernelKind::Avx512 if n <= 4 => 4,
            KernelKind::Avx2Fma | KernelKind::Avx512 if n <= 8 => 8,
            KernelKind::Avx2Fma => 16,
            KernelKind::Avx512 if n <= 16 => 16,
            KernelKind::Avx512 => 32,
        }
    }

    /// Reduction length per K-block for panels `nr` wide.
    fn kc(nr: usize) -> usize {
        KC_PANEL_BYTES / (4 * nr)
    }

    /// `out = act(x · W + b)` for output columns `col0 .. col0 + out.cols()` only (`out`'s
    /// column 0 is layer column `col0`): what one thread computes when a layer is split by
    /// columns. `col0` must be a multiple of the panel width; `bias` is the whole layer's.
    ///
    /// # Panics
    /// If the kernel is not supported by this CPU, the shapes disagree, `col0` is not on a panel
    /// boundary, or a row-wise activation (softmax) is asked for a part of the columns.
    pub(crate) fn dense_columns(
        self,
        x: Rows<'_>,
        w: &PackedWeights,
        col0: usize,
        bias: &[f32],
        activation: Activation,
        out: RowsMut<'_>,
    ) {
        assert_eq!(x.cols(), w.k());
        assert!(col0 + out.cols() <= w.n());
        assert_eq!(x.rows(), out.rows());
        assert_eq!(bias.len(), w.n());
        assert_eq!(w.nr(), self.panel_width(w.n()));
        assert_eq!(col0 % w.nr(), 0, "column split off a panel boundary");
        assert_ne!(
            w.precision(),
            Precision::Int8Full,
            "full-int8 weights read quantised rows (dense_layer_columns)"
        );
        self.assert_supported();
        let kc = Self::kc(w.nr());
        if w.precision() != Precision::F32 {
            return widened::dense_columns(self, x, w, col0, bias, activation, out, kc);
        }
        match self {
            KernelKind::Portable => {
                generic::dense_tiled::<generic::Portable8, 16, 2, { generic::MR_MAX_16_REGISTERS }>(
                    x, w, col0, bias, activation, out, kc,
                )
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (asserted above).
            KernelKind::Avx2Fma => unsafe {
                x86::dense_avx2_fma(x, w, col0, bias, activation, out, kc)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F and FMA (asserted above).
            KernelKind::Avx512 => unsafe {
                x86::dense_avx512(x, w, col0, bias, activation, out, kc)
            },
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2Fma | KernelKind::Avx512 => unreachable!("not supported"),
        }
    }
}

impl KernelKind {
    /// [`Self::dense_columns`] for either kind of input; quantised rows need full-int8 weights.
    ///
    /// # Panics
    /// As [`Self::dense_columns`], and if the input's kind does not match the weights'.
    pub(crate) fn dense_layer_columns(
        self,
        x: LayerInput<'_>,
        w: &PackedWeights,
        col0: usize,
        bias: &[f32],
        activation: Activation,
        out: RowsMut<'_>,
    ) {
        let x = match x {
            LayerInput::F32(rows) => {
                return self.dense_columns(rows, w, col0, bias, activation, out);
            }
            LayerInput::Int8(rows) => rows,
        };
        assert_eq!(w.precision(), Precision::Int8Full);
        assert!(col0 + out.cols() <= w.n());
        assert_eq!(x.rows(), out.rows());
        assert_eq!(bias.len(), w.n());
        assert_eq!(w.nr(), self.panel_width(w.n()));
        assert_eq!(col0 % w.nr(), 0, "column split off a panel boundary");
        self.assert_supported();
        match self {
            KernelKind::Portable => int8_dot::dense_portable(x, w, col0, bias, activation, out),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512
                if x.rows() >= AMX_MIN_ROWS
                    && w.nr() == x86_amx::AMX_NR
                    && x86_int8::has_vnni()
                    && x86_amx::available() =>
            {
                // SAFETY: AMX int8 is available (checked here: CPU and OS) and the CPU supports
                // AVX-512F/BW, AVX2 and FMA (checked here).
                unsafe { x86_amx::dense_amx(x, w, col0, bias, activation, out) }
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F/BW/VNNI, AVX2 and FMA (checked here).
            KernelKind::Avx512 if x86_int8::has_vnni() => unsafe {
                x86_int8::dense_avx512_vnni(x, w, col0, bias, activation, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (asserted above; AVX-512 kinds need them).
            KernelKind::Avx2Fma | KernelKind::Avx512 => unsafe {
                x86_int8::dense_avx2(x, w, col0, bias, activation, out)
            },
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2Fma | KernelKind::Avx512 => unreachable!("not supported"),
        }
    }

    /// Quantises the rows of `x` for [`Precision::Int8Full`]: row `r`'s codes to `codes` at byte
    /// `r * stride`, its scale to `scales[r]` (see [`QuantizedRows`]).
    ///
    /// # Panics
    /// If the kernel is not supported by this CPU or the buffers are too short.
    pub(crate) fn quantize_rows(
        self,
        x: Rows<'_>,
        codes: &mut [u8],
        stride: usize,
        scales: &mut [f32],
    ) {
        self.assert_supported();
        match self {
            KernelKind::Portable => quantized_rows::quantize_rows(x, codes, stride, scales),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX-512F/BW, AVX2 and FMA (checked here).
            KernelKind::Avx512 if x86_int8::has_vnni() => unsafe {
                x86_int8::quantize_avx512(x, codes, stride, scales)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports AVX2 and FMA (asserted above).
            KernelKind::Avx2Fma | KernelKind::Avx512 => unsafe {
                x86_int8::quantize_avx2(x, codes, stride, scales)
            },
            #[cfg(not(target_arch = "x86_64"))]
            KernelKind::Avx2Fma | KernelKind::Avx512 => unreachable!("not supported"),
        }
    }
}

#[cfg(test)]
mod conformance;
