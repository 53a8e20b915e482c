//! The conformance suite every kernel runs against the reference path: awkward shapes
//! (0, 1, tile ± 1, primes, large), every activation, and results compared bit for bit.
//! Adding a kernel means adding one line to the `conformance!` list below. Each check also runs
//! the layer split by columns (as two threads would), which must give the same bits. A kind's
//! narrow-panel instantiations (layers at most 8 wide, 16 on AVX-512) run wherever `n` is that
//! small. Every kernel runs in every [`Precision`], against the reference of that precision
//! (`dense_reference_precision`).

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use ndarray::{Array1, Array2};
use proptest::prelude::*;

use super::{
    KernelKind, LayerInput, PackedWeights, Precision, QuantizedRows, Rows, RowsMut, code_stride,
};
use crate::Activation;
use crate::kernels::reference::dense_reference_precision;

fn data(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    // A cheap deterministic generator with varied signs and magnitudes.
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let h = (i as u64 * 7919 + j as u64 * 104_729 + seed * 15_485_863) % 2003;
        (h as f32 / 1001.0 - 1.0) * if h.is_multiple_of(3) { 4.0 } else { 0.5 }
    })
}

/// A kernel under test: a [`KernelKind`], or an instantiation that exists only for testing.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Candidate {
    Kind(KernelKind),
    /// The AVX-512 kernel's source, panel widths and tile height compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2FmaWide,
    /// Full int8 on AVX-512 VNNI even where AMX would run.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

/// A kernel under test with the precision its weights are packed in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject(pub(crate) Candidate, pub(crate) Precision);

impl From<Candidate> for Subject {
    fn from(kernel: Candidate) -> Self {
        Subject(kernel, Precision::F32)
    }
}

impl Candidate {
    fn supported(self) -> bool {
        match self {
            Candidate::Kind(kind) => kind.is_supported(),
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx2FmaWide => KernelKind::Avx2Fma.is_supported(),
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx512Vnni => super::x86_int8::has_vnni(),
        }
    }

    /// What the CPU needs to run the candidate.
    fn instruction_set(self) -> &'static str {
        match self {
            Candidate::Kind(KernelKind::Portable) => "nothing",
            Candidate::Kind(KernelKind::Avx2Fma) => "AVX2 and FMA",
            Candidate::Kind(KernelKind::Avx512) => "AVX-512F",
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx2FmaWide => "AVX2 and FMA",
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx512Vnni => "AVX-512 VNNI",
        }
    }

    fn panel_width(self, n: usize) -> usize {
        match self {
            Candidate::Kind(kind) => kind.panel_width(n),
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx2FmaWide if n <= 16 => 16,
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx2FmaWide => 32,
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx512Vnni => KernelKind::Avx512.panel_width(n),
        }
    }

    /// The kernel family whose full-int8 path the candidate runs.
    fn kind(self) -> KernelKind {
        match self {
            Candidate::Kind(kind) => kind,
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx2FmaWide => KernelKind::Avx2Fma,
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx512Vnni => KernelKind::Avx512,
        }
    }

    fn run(
        self,
        x: LayerInput<'_>,
        w: &PackedWeights,
        col0: usize,
        bias: &[f32],
        act: Activation,
        out: RowsMut<'_>,
    ) {
        let x = match x {
            LayerInput::F32(rows) => rows,
            #[cfg(target_arch = "x86_64")]
            LayerInput::Int8(rows) if matches!(self, Candidate::Avx2FmaWide) => {
                // SAFETY: `check` runs only supported candidates, and this one needs AVX2 + FMA.
                return unsafe { super::x86_int8::dense_avx2(rows, w, col0, bias, act, out) };
            }
            quantized => {
                return self
                    .kind()
                    .dense_layer_columns(quantized, w, col0, bias, act, out);
            }
        };
        match self {
            Candidate::Kind(kind) => kind.dense_columns(x, w, col0, bias, act, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `check` runs only supported candidates, and this one needs AVX2 + FMA.
            Candidate::Avx2FmaWide => unsafe {
                match w.precision() {
                    Precision::F32 => {
                        super::x86::dense_avx2_fma_wide(x, w, col0, bias, act, out, 128)
                    }
                    precision => super::x86_widened::dense_avx2_fma_wide(
                        x,
                        w,
                        col0,
                        bias,
                        act,
                        out,
                        128,
                        precision == Precision::Int8,
                    ),
                }
            },
            #[cfg(target_arch = "x86_64")]
            Candidate::Avx512Vnni => unreachable!("a full-int8 candidate only"),
        }
    }
}

/// Runs `kernel` over `x[m,k] · w[k,n]`, whole and split by columns at a panel boundary, and
/// asserts bit equality with the reference. Returns whether it ran: a kernel this CPU cannot run
/// is skipped, and said so (see [`report_skip`]).
pub(crate) fn check(
    kernel: impl Into<Subject>,
    m: usize,
    k: usize,
    n: usize,
    act: Activation,
    seed: u64,
) -> bool {
    check_input(kernel, data(m, k, seed), n, act, seed)
}

/// As [`check`] with a given input; NaN outputs must be NaN in both.
pub(crate) fn check_input(
    subject: impl Into<Subject>,
    x: Array2<f32>,
    n: usize,
    act: Activation,
    seed: u64,
) -> bool {
    let Subject(kernel, precision) = subject.into();
    if !kernel.supported() {
        report_skip(kernel);
        return false;
    }
    let (m, k) = x.dim();
    let w = data(k, n, seed + 1);
    let b = Array1::from_iter((0..n).map(|j| j as f32 * 0.01 - 0.3));
    let expected = dense_reference_precision(x.view(), w.view(), Some(b.view()), act, precision);
    let nr = kernel.panel_width(n);
    // Prefetching is a hint: half the seeds run with it, and the bits must not change.
    let packed = PackedWeights::pack_precision(w.view(), nr, seed % 3 == 1, precision)
        .with_prefetch(seed % 2 == 1);
    // Rows with a stride wider than k, and an output with a stride wider than n, as in a workspace.
    let (xs, os) = (k + 3, n + 5);
    let mut xbuf = vec![f32::NAN; m * xs];
    for r in 0..m {
        xbuf[r * xs..r * xs + k].copy_from_slice(x.row(r).as_slice().unwrap());
    }
    let mut scales = vec![0.0f32; m];
    let code_stride = code_stride(k);
    let mut codes = vec![0u8; m * code_stride];
    let xrows = if precision == Precision::Int8Full {
        kernel.kind().quantize_rows(
            Rows::new(&xbuf, m, k, xs),
            &mut codes,
            code_stride,
            &mut scales,
        );
        LayerInput::Int8(QuantizedRows::new(&codes, &scales, m, k, code_stride))
    } else {
        LayerInput::F32(Rows::new(&xbuf, m, k, xs))
    };
    let bias = b.as_slice().unwrap();
    let mut splits = vec![n];
    if !act.is_row_wise() && n > nr {
        splits.push(n.div_ceil(nr) / 2 * nr);
    }
    for split in splits {
        let mut obuf = vec![f32::NAN; m * os];
        let (left, right) = RowsMut::new(&mut obuf, m, n, os).split_columns(split);
        kernel.run(xrows, &packed, 0, bias, act, left);
        if split < n {
            kernel.run(xrows, &packed, split, bias, act, right);
        }
        for r in 0..m {
            for c in 0..n {
                let (got, want) = (obuf[r * os + c], expected[[r, c]]);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{kernel:?} {precision} m={m} k={k} n={n} {act:?} split={split}: [{r},{c}] = {got}, reference {want}"
                );
            }
        }
    }
    true
}

/// Says once per kernel that its checks were skipped because this CPU lacks its instruction set:
/// written to stderr directly, past the test harness's output capture, so that a plain
/// `cargo test` shows it (the skipped tests still count as passed).
fn report_skip(kernel: Candidate) {
    static REPORTED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let name = format!("{kernel:?}");
    let mut reported = REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    if !reported.contains(&name) {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED conformance of {name}: this CPU lacks {}",
            kernel.instruction_set()
        );
        reported.push(name);
    }
}

/// Skips are only for kernels this CPU cannot run: the portable kernel and the one
/// [`KernelKind::detect`] picks here (what `compile` uses) are always checked.
#[test]
fn portable_and_detected_kernels_run_here() {
    let detected = KernelKind::detect();
    for kind in [KernelKind::Portable, detected] {
        assert!(
            check(Candidate::Kind(kind), 9, 37, 21, Activation::Gelu, 1),
            "{kind:?} was skipped on this CPU"
        );
    }
    if std::env::var_os("CI").is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "conformance: kernels this CPU runs {:?}, detected {detected:?}",
            KernelKind::all_supported()
        );
    }
}

const AWKWARD: &[usize] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 16, 17, 31, 32, 33, 47, 48, 49, 97,
];

macro_rules! conformance {
    ($($name:ident => $kernel:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn awkward_shapes_all_activations() {
                for &m in AWKWARD {
                    for &n in AWKWARD {
                        for (i, act) in Activation::ALL.into_iter().enumerate() {
                            let k = AWKWARD[(m + n + i) % AWKWARD.len()].max(1);
                            check($kernel, m, k, n, act, (m * n) as u64);
                        }
                    }
                }
            }

            #[test]
            fn nan_input_stays_in_its_row() {
                for act in Activation::ALL {
                    let mut x = data(9, 37, 5);
                    x[[4, 20]] = f32::NAN;
                    x[[7, 0]] = f32::INFINITY;
                    check_input($kernel, x, 21, act, 5);
                }
            }

            #[test]
            fn zero_k_gives_bias() {
                check($kernel, 5, 0, 19, Activation::Identity, 3);
                check($kernel, 9, 0, 3, Activation::Identity, 4);
            }

            #[test]
            fn large_shapes() {
                check($kernel, 67, 1031, 263, Activation::Relu, 9);
                check($kernel, 13, 4099, 33, Activation::Softmax, 11);
                // Several K-blocks (3 at 16-wide panels, 5 at 32) and every small-row tile shape.
                for m in 1..=8 {
                    check($kernel, m, 8209, 97, Activation::Gelu, 13 + m as u64);
                }
                // Blocks taller than one tile with widened weights: each panel slice widened
                // once into a scratch, a chunk (a K-block of its own) at a time, for the f32
                // tiles, the tallest included; by a pass of its own (9 rows at 8-row tiles) or
                // by the first tile as it computes (24 and 41 rows; 9 at 6-row tiles).
                for (m, act) in [(9, Activation::Identity), (24, Activation::Relu), (41, Activation::Tanh)] {
                    check($kernel, m, 2053, 97, act, 29 + m as u64);
                }
                // Narrow layers (4-, 8- and 16-wide panels) over several K-blocks too.
                for m in [1, 5, 13] {
                    check($kernel, m, 40_961, 3, Activation::Sigmoid, 17 + m as u64);
                    check($kernel, m, 40_961, 7, Activation::Softmax, 19 + m as u64);
                    check($kernel, m, 40_961, 13, Activation::Tanh, 23 + m as u64);
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(48))]
                #[test]
                fn random_shapes(m in 0usize..40, k in 0usize..300, n in 1usize..80,
                                 act in 0usize..6, seed in 0u64..1000) {
                    check($kernel, m, k, n, Activation::ALL[act], seed);
                }
            }
        }
    )*};
}

conformance! {
    portable => Candidate::Kind(KernelKind::Portable),
    avx2_fma => Candidate::Kind(KernelKind::Avx2Fma),
    avx512 => Candidate::Kind(KernelKind::Avx512),
    portable_bf16 => Subject(Candidate::Kind(KernelKind::Portable), Precision::Bf16),
    avx2_fma_bf16 => Subject(Candidate::Kind(KernelKind::Avx2Fma), Precision::Bf16),
    avx512_bf16 => Subject(Candidate::Kind(KernelKind::Avx512), Precision::Bf16),
    portable_int8 => Subject(Candidate::Kind(KernelKind::Portable), Precision::Int8),
    avx2_fma_int8 => Subject(Candidate::Kind(KernelKind::Avx2Fma), Precision::Int8),
    avx512_int8 => Subject(Candidate::Kind(KernelKind::Avx512), Precision::Int8),
    portable_int8_full => Subject(Candidate::Kind(KernelKind::Portable), Precision::Int8Full),
    avx2_fma_int8_full => Subject(Candidate::Kind(KernelKind::Avx2Fma), Precision::Int8Full),
    avx512_int8_full => Subject(Candidate::Kind(KernelKind::Avx512), Precision::Int8Full),
}

#[cfg(target_arch = "x86_64")]
conformance! {
    avx2_fma_wide => Candidate::Avx2FmaWide,
    avx2_fma_wide_bf16 => Subject(Candidate::Avx2FmaWide, Precision::Bf16),
    avx2_fma_wide_int8 => Subject(Candidate::Avx2FmaWide, Precision::Int8),
    avx2_fma_wide_int8_full => Subject(Candidate::Avx2FmaWide, Precision::Int8Full),
    avx512_vnni_int8_full => Subject(Candidate::Avx512Vnni, Precision::Int8Full),
}
