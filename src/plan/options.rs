//! What a caller may choose when compiling a model: [`CompileOptions`] for everyone, [`Tuning`]
//! for experts who measured their own machine.

use crate::kernels::{KernelKind, Precision};
use crate::plan::tuning;

/// What to do with NaN or infinite inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NonFiniteInput {
    /// Refuse the batch with [`crate::Error::NonFiniteInput`], naming the first bad row and
    /// column. Costs one read of the input.
    #[default]
    Reject,
    /// Compute anyway; NaN and infinities propagate through the arithmetic as IEEE 754 says.
    Propagate,
}

/// Options for [`crate::Model::compile_with`]; [`crate::Model::compile`] takes the defaults.
///
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[8, 16, 4], Activation::Relu, Activation::Identity, 1);
/// let options = CompileOptions::default()
///     .kernel(KernelKind::Portable)
///     .non_finite_input(NonFiniteInput::Propagate);
/// let compiled = model.compile_with(&options)?;
/// assert_eq!(compiled.kernel(), KernelKind::Portable);
/// # Ok::<(), densebatch::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CompileOptions {
    pub(crate) kernel: Option<KernelKind>,
    pub(crate) block_rows: Option<usize>,
    pub(crate) non_finite_input: NonFiniteInput,
    pub(crate) precision: Precision,
    pub(crate) tuning: Tuning,
}

impl CompileOptions {
    /// Uses this kernel instead of the fastest the CPU supports ([`KernelKind::detect`]).
    pub fn kernel(mut self, kernel: KernelKind) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Caps the rows a workspace holds. Larger batches run in blocks of this many rows (never
    /// refused); by default blocks are sized so that activations stay in L2.
    pub fn block_rows(mut self, rows: usize) -> Self {
        self.block_rows = Some(rows);
        self
    }

    /// Sets the NaN/Inf input policy (default [`NonFiniteInput::Reject`]).
    pub fn non_finite_input(mut self, policy: NonFiniteInput) -> Self {
        self.non_finite_input = policy;
        self
    }

    /// Stores the weights in this precision (default [`Precision::F32`]): bf16 halves and int8
    /// quarters the bytes each call streams, at the accuracy `densebatch inspect --precision`
    /// reports. Results are bit-reproducible within a precision, not across them.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Replaces the measured cut-offs that decide how batches are split over threads.
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }
}

/// Expert knobs: the cut-offs that decide when a batch forks, when a layer splits by columns,
/// and how weights are laid out in memory. The defaults were measured (see the crate's
/// benches/probes); none of them changes a result, only its speed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tuning {
    pub(crate) parallel_min_flops: u64,
    pub(crate) pool_parallel_min_flops: Option<u64>,
    pub(crate) split_min_flops: u64,
    pub(crate) pool_split_min_flops: Option<u64>,
    pub(crate) column_split_rows_per_thread: Option<usize>,
    pub(crate) prefetch_weights: Option<bool>,
    pub(crate) huge_pages: Option<bool>,
    pub(crate) l2_bytes: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            parallel_min_flops: tuning::PARALLEL_MIN_FLOPS,
            pool_parallel_min_flops: None,
            split_min_flops: tuning::SPLIT_MIN_FLOPS,
            pool_split_min_flops: None,
            column_split_rows_per_thread: None,
            prefetch_weights: None,
            huge_pages: None,
            l2_bytes: None,
        }
    }
}

impl Tuning {
    /// Work per task (FLOPs) below which a batch called from outside the pool runs inline
    /// (default 1 MFLOP; in [`crate::Precision::Int8Full`], whose FLOPs run several times
    /// faster, 8 times this).
    pub fn parallel_min_flops(mut self, flops: u64) -> Self {
        self.parallel_min_flops = flops;
        self
    }

    /// The same for a caller on a thread of the pool, whose fork usually joins a thread that is
    /// still awake (default: a quarter of [`Tuning::parallel_min_flops`]). A pool thread that
    /// sleeps between calls should set it to the outside value.
    pub fn pool_parallel_min_flops(mut self, flops: u64) -> Self {
        self.pool_parallel_min_flops = Some(flops);
        self
    }

    /// Work per thread (FLOPs) of one layer split by output columns (default 500 kFLOP): a small
    /// batch's layer is split over one thread per this much work, not at all below twice it.
    pub fn split_min_flops(mut self, flops: u64) -> Self {
        self.split_min_flops = flops;
        self
    }

    /// The same for a caller on a thread of the pool (default: half of
    /// [`Tuning::split_min_flops`]).
    pub fn pool_split_min_flops(mut self, flops: u64) -> Self {
        self.pool_split_min_flops = Some(flops);
        self
    }

    /// Splits each layer by output columns up to this many rows per thread whenever a layer is
    /// large enough, instead of the default rule (64 rows for weights streamed from DRAM, 8 for
    /// weights in cache, none for weights in cache in [`crate::Precision::Int8Full`], and only
    /// where the column split shortens the critical path).
    pub fn column_split_rows_per_thread(mut self, rows: usize) -> Self {
        self.column_split_rows_per_thread = Some(rows);
        self
    }

    /// Whether kernels prefetch each next weight panel (default: for weights larger than a
    /// last-level cache share, 8 MiB, which are streamed from DRAM).
    pub fn prefetch_weights(mut self, prefetch: bool) -> Self {
        self.prefetch_weights = Some(prefetch);
        self
    }

    /// Whether packed weights go in transparent huge pages (Linux; elsewhere, or where the system
    /// refuses, ordinary memory). Default: for weights larger than 8 MiB.
    pub fn huge_pages(mut self, huge: bool) -> Self {
        self.huge_pages = Some(huge);
        self
    }

    /// One core's L2 in bytes, as the split plans and block sizes assume it (default: what the
    /// CPU reports). Weights too large for one L2 but small enough for the pool's together are
    /// split by columns at every small batch, from any caller, so each thread keeps its share in
    /// its L2; blocks of rows take up to half of it.
    pub fn l2_bytes(mut self, bytes: usize) -> Self {
        self.l2_bytes = Some(bytes);
        self
    }
}
