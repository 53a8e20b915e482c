//! Compiling a model: validate once, pack the weights for the chosen kernel, size the workspace.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::kernels::{KernelKind, PackedWeights, Rows, RowsMut};
use crate::model::Model;
use rayon::ThreadPool;

use crate::predictor::{Predictor, predict_row_split, row_split_tasks};
use crate::workspace::Workspace;

mod column_split;
use column_split::dense_columns_split;

/// Work (in FLOPs) per task below which a batch runs inline rather than being forked over a pool.
///
/// Measured with `cargo bench --bench parallel_cutoff` (inline on one thread vs forced
/// over two, idle 2-core AMD Zen 3): tiny-mlp broke even at 1.3 MFLOP per batch (1024 rows) and
/// gained 1.18× at 2.6 MFLOP; below that the fork and join (≈ 20 µs there) dominates. So a
/// task must carry about 1 MFLOP.
pub const DEFAULT_PARALLEL_MIN_FLOPS: u64 = 1_000_000;

/// How much less work a task needs when the caller is a thread of the pool (see
/// [`CompileOptions::pool_parallel_min_flops`]): its fork wakes nobody while the other threads
/// are still spinning from the last call. `cargo bench --bench parallel_cutoff`, two
/// threads, caller on the pool, forked against inline: tiny-mlp 1.23–1.24× at 512 rows (330
/// kFLOP per task), 0.87 / 1.30 at 256 (160 k), 0.83–0.87 at 128; 300→257→129→7 1.30–1.39× at
/// 4–8 rows (0.4–0.9 MFLOP per task). From outside the pool the same forks ran at 0.2–0.4×.
/// The price is paid by a pool thread that sleeps between calls, so that the other threads have
/// gone to sleep too: against 1 MFLOP per task, tiny-mlp at 512 / 1024 rows and the
/// 300→257→129→7 model at 4 rows ran 1.37 / 1.44 / 1.57× with calls back to back, 0.80 / 0.93 /
/// 0.74× with 0.3 ms between calls and 0.79 / 0.88 / 0.96× with 2 ms. A caller like that sets
/// [`CompileOptions::pool_parallel_min_flops`] to `parallel_min_flops`.
pub const POOL_FORK_DISCOUNT: u64 = 4;

/// How much less work per thread a layer split by columns needs when the caller is a thread of
/// the pool (see [`CompileOptions::pool_split_min_flops`]), for the same reason. mnist-mlp batch 1
/// on two threads (`split_cutoff`, 250 k against 500 k, both hidden layers then split):
/// 1.31–1.60× with calls back to back, 0.91–0.93× with 0.3–2 ms sleeps between them; from
/// outside the pool the same split ran at 0.46–0.52×.
pub const POOL_SPLIT_DISCOUNT: u64 = 2;

/// Work (in FLOPs) per thread of one layer split by output columns: a layer of a small batch is
/// split over one thread per this much work (see [`CompileOptions::split_min_flops`]).
///
/// `cargo bench --bench split_cutoff -- MODEL` (2 threads, Zen 3, cut-offs
/// alternated in blocks of 100 calls, 15 rounds), speed against 2 MFLOP: mnist-mlp at 500 kFLOP
/// 1.51–1.56× at batch 2, 1.15–1.19× at 3–6, even at 1 and ≥ 8, with the caller on a pool
/// thread; 1.45–1.47× and 1.10–1.19× from outside the pool. At 250 kFLOP batch 1 splits too:
/// 1.31–1.60× from a pool thread calling back to back, but 0.91–0.93× when it sleeps 0.3–2 ms
/// between calls (the other thread must be woken each time), and 0.46–0.52× from outside the
/// pool; `random:300,257,129,7` at 4–6 rows swung from 0.78–0.83× to 1.11–1.19× between runs.
/// So 500 k, halved for a caller on the pool ([`POOL_SPLIT_DISCOUNT`]).
pub const DEFAULT_SPLIT_MIN_FLOPS: u64 = 500_000;

/// With weights streamed from DRAM, batches of at most this many rows per thread are split
/// across threads by output columns, layer by layer: a row split makes every thread read all the
/// weights, a column split reads each once. wide-mlp on 2 threads (Zen 3, the two splits
/// alternated in one process): columns 1.25× at 1 row, 1.2× at 8, 1.02–1.05× at 32–64,
/// 1.01–1.17× at 128; even or mixed from 256.
const STREAMED_ROWS_PER_THREAD: usize = 64;

/// The same for weights that stay in cache, where the column split saves only cache traffic.
/// mnist-mlp on 2 threads, 16 rows: columns 1.18× faster with the splits alternated in blocks of
/// 20 calls, 1.15× in separate processes, rows 1.05× with calls alternated one by one (which
/// evicts each split's cache state); from 32 rows the row split is as fast or faster (1.03×).
const RESIDENT_ROWS_PER_THREAD: usize = 8;

/// How much longer, in percent, than the row split's the column split's critical path may be
/// and still be chosen when the weights outgrow one core's L2 (see
/// [`CompiledModel::columns_beat_rows`]): the column split then reads each weight from L3 once,
/// the row split once per thread, and it runs more rows per register tile. A model whose last
/// layer is a softmax (never split) needs this to choose columns at all where the hidden layers
/// split evenly (mnist-mlp: 0.3–0.8 % longer at 2–16 rows, and 1.1–1.6× faster at 2–6); 12 %
/// leaves room for wider softmax heads.
const COLUMN_PATH_SLACK_PERCENT: u64 = 12;

/// Weight bytes up to which each thread of a row split holds all the weights in its own L2
/// (512 KiB per core on Zen 3, 1 MiB on Zen 4/5): the column split then saves no cache traffic,
/// and must shorten the critical path to be chosen. A 300→257→129→7 model (440 KB) on two
/// threads at 16 rows: columns (a path 0.7 % longer) 0.93–0.96× the speed of rows.
const L2_WEIGHT_BYTES: usize = 512 * 1024;

/// Activation bytes (two ping-pong buffers) a block of rows may take, so blocks stay in L2
/// (512 KiB per core on Zen 3, 1 MiB on Zen 4/5): mnist-mlp gets 83-row blocks.
const BLOCK_BYTES: usize = 512 * 1024;

/// Weight bytes above which weights are streamed from DRAM (larger than a last-level cache
/// share): blocks then get at least [`STREAMED_BLOCK_ROWS`] rows, so that each weight byte
/// fetched serves enough FLOPs, even though the activations spill from L2 to L3; and kernels
/// prefetch each next panel. `cargo bench --bench prefetch_probe` (calls alternated,
/// Zen 3) on wide-mlp (100 MB of weights), 1 / 2 threads: 1.32 / 1.37× at batch 8, 1.14 / 1.11×
/// at 32, 1.03 / 1.04× at 128; on mnist-mlp (2.6 MB, L3-resident) 0.85× at batch 8 and
/// 0.95–1.02× at 32–128, so off there.
const STREAMED_WEIGHT_BYTES: usize = 8 * 1024 * 1024;

/// The smallest row chunk for cache-resident weights: mnist-mlp on one thread (Zen 3, minimum
/// of 350 calls) costs 14.5 µs per row in 6-row calls, 13.9 in 16-row and 13.7 in 64-row ones.
const MIN_CHUNK_ROWS: usize = 16;

/// The smallest row chunk for weights that outgrow one core's L2 but not the L3 (mnist-mlp):
/// every chunk streams all the weights from L3 again, and its first row tile of each panel waits
/// for them. mnist-mlp on two threads, Zen 5, one chunk per task against three (calls
/// alternated): 1.06× at 96 and 128 rows (16- and 21-row chunks), 1.01× at 256 (43-row chunks).
const L3_MIN_CHUNK_ROWS: usize = 40;

/// Rows per block when weights are streamed from DRAM.
const STREAMED_BLOCK_ROWS: usize = 256;

/// What to do with NaN or infinite inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFiniteInput {
    /// Refuse the batch with [`Error::NonFiniteInput`], naming the first bad row and column.
    /// Costs one read of the input.
    #[default]
    Reject,
    /// Compute anyway; NaN and infinities propagate through the arithmetic as IEEE 754 says.
    Propagate,
}

/// Options for [`Model::compile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Kernel to use; `None` picks the fastest this CPU supports.
    pub kernel: Option<KernelKind>,
    /// Largest block of rows a workspace holds. Larger batches are processed in blocks of this
    /// many rows (never refused); `None` sizes blocks so that activations stay in L2.
    pub block_rows: Option<usize>,
    /// NaN/Inf input policy.
    pub non_finite_input: NonFiniteInput,
    /// Work per task below which `predict_batch_into` called from outside the pool does not fork.
    pub parallel_min_flops: u64,
    /// The same for a caller on a thread of the pool, whose fork costs a join with a thread that
    /// is usually still awake rather than two thread wake-ups; `None` takes a quarter of
    /// `parallel_min_flops` ([`POOL_FORK_DISCOUNT`]).
    pub pool_parallel_min_flops: Option<u64>,
    /// Work per thread of one layer split by output columns: a small batch's layer is split over
    /// one thread per this many FLOPs (at most the pool's threads), not at all below twice it.
    pub split_min_flops: u64,
    /// The same for a caller on a thread of the pool; `None` takes half of `split_min_flops`
    /// ([`POOL_SPLIT_DISCOUNT`]).
    pub pool_split_min_flops: Option<u64>,
    /// Rows per thread up to which `predict_batch_into` splits each layer by output columns
    /// rather than splitting the batch by rows: a column split reads each weight once, a row
    /// split once per thread. `None` picks 64 for weights larger than a last-level cache share
    /// (8 MiB), which are streamed from DRAM, and 8 for weights that stay in cache, and splits
    /// by columns only where that shortens the critical path; `Some` splits by columns up to
    /// that many rows per thread whenever a layer is large enough to split.
    pub column_split_rows_per_thread: Option<usize>,
    /// Whether kernels prefetch each next weight panel; `None` turns it on for weights larger
    /// than a last-level cache share (8 MiB), which are streamed from DRAM.
    pub prefetch_weights: Option<bool>,
    /// Whether packed weights go in transparent huge pages (Linux; elsewhere, or where the
    /// system refuses, in ordinary memory); `None` turns it on for weights larger than a
    /// last-level cache share (8 MiB), which are streamed from DRAM. It changes no result.
    pub huge_pages: Option<bool>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            kernel: None,
            block_rows: None,
            non_finite_input: NonFiniteInput::Reject,
            parallel_min_flops: DEFAULT_PARALLEL_MIN_FLOPS,
            pool_parallel_min_flops: None,
            split_min_flops: DEFAULT_SPLIT_MIN_FLOPS,
            pool_split_min_flops: None,
            column_split_rows_per_thread: None,
            prefetch_weights: None,
            huge_pages: None,
        }
    }
}

#[derive(Debug)]
struct CompiledLayer {
    weights: PackedWeights,
    bias: Vec<f32>,
    activation: Activation,
}

/// A model ready to run: immutable, weights packed for one kernel. Share it through `Arc`.
///
/// # Examples
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[8, 16, 4], Activation::Relu, Activation::Softmax, 1);
/// let compiled = model.compile(&CompileOptions::default())?;
/// let x = ndarray::Array2::<f32>::ones((3, 8));
/// let y = compiled.predict(x.view())?;
/// assert_eq!(y.dim(), (3, 4));
/// assert!((y.row(0).sum() - 1.0).abs() < 1e-6);
/// # Ok::<(), densebatch::Error>(())
/// ```
#[derive(Debug)]
pub struct CompiledModel {
    name: String,
    version: String,
    input_width: usize,
    max_width: usize,
    layers: Vec<CompiledLayer>,
    kernel: KernelKind,
    block_rows: usize,
    non_finite_input: NonFiniteInput,
    parallel_min_rows: usize,
    pool_parallel_min_rows: usize,
    parallel_min_flops: u64,
    split_min_flops: u64,
    pool_split_min_flops: u64,
    column_split_rows_per_thread: usize,
    /// Whether the column split must beat the row split (the rows limit was not given).
    compare_splits: bool,
    flops_per_sample: u64,
    /// Whether the weights outgrow a last-level cache share ([`STREAMED_WEIGHT_BYTES`]).
    weights_streamed: bool,
    /// Whether the weights fit one core's L2 ([`L2_WEIGHT_BYTES`]).
    weights_fit_l2: bool,
}

impl Model {
    /// Compiles the model: picks the kernel, packs the weights, sizes the workspace.
    ///
    /// # Errors
    /// [`Error::UnsupportedKernel`] when `options.kernel` names a kernel this CPU cannot run.
    pub fn compile(&self, options: &CompileOptions) -> Result<CompiledModel> {
        let kernel = options.kernel.unwrap_or_else(KernelKind::detect);
        if !kernel.is_supported() {
            return Err(Error::UnsupportedKernel {
                kernel: kernel.name(),
            });
        }
        let spec = self.spec();
        let max_width = spec
            .layers
            .iter()
            .map(|l| l.output)
            .chain([spec.input_width])
            .max()
            .unwrap_or(1);
        let weight_bytes: usize = self.layers().iter().map(|l| 4 * l.weight.len()).sum();
        let l2_rows = (BLOCK_BYTES / (8 * max_width)).clamp(16, 256);
        let streamed = weight_bytes > STREAMED_WEIGHT_BYTES;
        let block_rows = options
            .block_rows
            .unwrap_or(if streamed {
                l2_rows.max(STREAMED_BLOCK_ROWS)
            } else {
                l2_rows
            })
            .max(1);
        let layers = spec
            .layers
            .iter()
            .zip(self.layers())
            .map(|(ls, lw)| CompiledLayer {
                weights: PackedWeights::pack(
                    lw.weight.view(),
                    kernel.panel_width(ls.output),
                    options.huge_pages.unwrap_or(streamed),
                )
                .with_prefetch(options.prefetch_weights.unwrap_or(streamed)),
                bias: lw
                    .bias
                    .as_ref()
                    .map_or_else(|| vec![0.0; ls.output], |b| b.to_vec()),
                activation: ls.activation,
            })
            .collect();
        let flops_per_sample = spec.flops_per_sample();
        Ok(CompiledModel {
            name: spec.name.clone(),
            version: spec.version.clone(),
            input_width: spec.input_width,
            max_width,
            layers,
            kernel,
            block_rows,
            non_finite_input: options.non_finite_input,
            parallel_min_rows: rows_for(options.parallel_min_flops, flops_per_sample),
            pool_parallel_min_rows: rows_for(
                options
                    .pool_parallel_min_flops
                    .unwrap_or(options.parallel_min_flops / POOL_FORK_DISCOUNT),
                flops_per_sample,
            ),
            parallel_min_flops: options.parallel_min_flops,
            split_min_flops: options.split_min_flops,
            pool_split_min_flops: options
                .pool_split_min_flops
                .unwrap_or(options.split_min_flops / POOL_SPLIT_DISCOUNT),
            column_split_rows_per_thread: options.column_split_rows_per_thread.unwrap_or(
                if streamed {
                    STREAMED_ROWS_PER_THREAD
                } else {
                    RESIDENT_ROWS_PER_THREAD
                },
            ),
            compare_splits: options.column_split_rows_per_thread.is_none(),
            flops_per_sample,
            weights_streamed: streamed,
            weights_fit_l2: weight_bytes <= L2_WEIGHT_BYTES,
        })
    }
}

impl CompiledModel {
    /// The model's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The kernel the weights were packed for.
    pub fn kernel(&self) -> KernelKind {
        self.kernel
    }

    /// Rows per block (the workspace's height).
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Bytes of packed weights.
    pub fn weight_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.bytes() + 4 * l.bias.len())
            .sum()
    }

    /// Bytes of one workspace.
    pub fn workspace_bytes(&self) -> usize {
        2 * 4 * self.block_rows * workspace_stride(self.max_width)
    }

    fn check_input(&self, x: &ArrayView2<'_, f32>) -> Result<()> {
        if x.ncols() != self.input_width {
            return Err(Error::InputWidth {
                expected: self.input_width,
                got: x.ncols(),
            });
        }
        if self.non_finite_input == NonFiniteInput::Reject && !all_finite(self.kernel, x) {
            for (row, values) in x.outer_iter().enumerate() {
                if let Some(col) = values.iter().position(|v| !v.is_finite()) {
                    return Err(Error::NonFiniteInput {
                        row,
                        col,
                        value: values[col],
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks a call's operands: input width and values, output shape, workspace size.
    fn check_call(
        &self,
        workspace: &Workspace,
        x: &ArrayView2<'_, f32>,
        out: &ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_input(x)?;
        let rows = x.nrows();
        if out.dim() != (rows, self.output_width()) {
            return Err(Error::OutputShape {
                expected: [rows, self.output_width()],
                got: [out.nrows(), out.ncols()],
            });
        }
        if workspace.width < self.max_width || workspace.rows == 0 {
            return Err(Error::WorkspaceTooSmall {
                needed: self.max_width,
                got: workspace.width * workspace.rows,
            });
        }
        Ok(())
    }

    /// How many threads layer `layer` is split over (by output columns) for `rows` rows when
    /// `threads` are available: one per [`CompileOptions::split_min_flops`] of the layer's work
    /// ([`CompileOptions::pool_split_min_flops`] for a caller on the pool), never for a row-wise
    /// activation (softmax needs whole rows), at most one thread per panel.
    fn column_threads(
        &self,
        layer: &CompiledLayer,
        rows: usize,
        threads: usize,
        caller_on_pool: bool,
    ) -> usize {
        if threads <= 1 || layer.activation.is_row_wise() {
            return 1;
        }
        let panels = layer.weights.n().div_ceil(layer.weights.nr());
        let min_flops = if caller_on_pool {
            self.pool_split_min_flops
        } else {
            self.split_min_flops
        };
        ((layer_flops(layer, rows) / min_flops.max(1)) as usize)
            .min(threads)
            .min(panels)
            .max(1)
    }

    /// Whether a block of `rows` rows finishes sooner split layer by layer over output columns
    /// than split by rows; always, when some layer splits, if the options fixed the rows per
    /// thread of the column split. Weights streamed from DRAM: whenever a layer splits, since
    /// the column split moves each weight over the memory bus once, the row split once per
    /// thread. Weights in cache: when the column split's critical path (each layer's work over
    /// its threads, unsplit layers whole) is no longer than the row split's (the block's work
    /// over its tasks), or at most [`COLUMN_PATH_SLACK_PERCENT`] longer when the weights
    /// outgrow L2.
    fn columns_beat_rows(&self, rows: usize, threads: usize, caller_on_pool: bool) -> bool {
        let mut split = false;
        let mut column_path = 0;
        for layer in &self.layers {
            let layer_threads = self.column_threads(layer, rows, threads, caller_on_pool);
            split |= layer_threads > 1;
            column_path += layer_flops(layer, rows) / layer_threads as u64;
        }
        if !split || self.weights_streamed || !self.compare_splits {
            return split;
        }
        let tasks = row_split_tasks(self, rows, threads, caller_on_pool) as u64;
        let row_path = rows as u64 * self.flops_per_sample / tasks;
        let slack = if self.weights_fit_l2 {
            0
        } else {
            COLUMN_PATH_SLACK_PERCENT
        };
        column_path * 100 <= row_path * (100 + slack)
    }

    /// Whether `predict_batch_into` splits a batch of `rows` rows by columns on `threads`
    /// threads, called from a thread of the pool or not. From outside the pool a fork wakes a
    /// pool thread and, at the end, the caller, so the batch must carry the row split's minimum
    /// work per task (a 300→257→129→7 model at 8 rows, 1.8 MFLOP: 0.56–0.65× the speed of
    /// running it inline).
    fn splits_by_columns(&self, rows: usize, threads: usize, caller_on_pool: bool) -> bool {
        rows <= self.column_split_rows_per_thread.saturating_mul(threads)
            && (caller_on_pool
                || rows as u64 * self.flops_per_sample >= threads as u64 * self.parallel_min_flops)
            && self.columns_beat_rows(rows.min(self.block_rows), threads, caller_on_pool)
    }

    /// Runs a checked batch block by block (see [`Self::run_block`]).
    fn run_blocks(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
        caller_on_pool: bool,
    ) {
        let rows = x.nrows();
        let mut start = 0;
        while start < rows {
            let len = ws.rows.min(rows - start);
            let xb = x.slice_axis(Axis(0), (start..start + len).into());
            let ob = out.slice_axis_mut(Axis(0), (start..start + len).into());
            self.run_block(ws, xb, ob, threads, caller_on_pool);
            start += len;
        }
    }

    /// Runs one block of at most `block_rows` rows through every layer; with `threads > 1`
    /// (called inside the pool) each large enough layer is split by output columns.
    fn run_block(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
        caller_on_pool: bool,
    ) {
        let rows = x.nrows();
        let width = ws.width;
        let Workspace { front, back, .. } = ws;
        // The first layer reads `x` in place when its rows are contiguous, else a copy in `back`.
        if x.as_slice().is_none() {
            for (r, row) in x.outer_iter().enumerate() {
                copy_row(&mut back[r * width..r * width + self.input_width], row);
            }
        }
        let last = self.layers.len() - 1;
        let direct_out = out.is_standard_layout();
        for (i, layer) in self.layers.iter().enumerate() {
            let (k, n) = (layer.weights.k(), layer.weights.n());
            // Layer i reads `back` and writes `front` when i is even, the other way when odd.
            let (src, dst) = if i % 2 == 0 {
                (&*back, &mut *front)
            } else {
                (&*front, &mut *back)
            };
            let src = match (i, x.as_slice()) {
                (0, Some(slice)) => Rows::new(slice, rows, k, k),
                _ => Rows::new(src, rows, k, width),
            };
            let dst = if i == last && direct_out {
                RowsMut::new(out.as_slice_mut().expect("standard layout"), rows, n, n)
            } else {
                RowsMut::new(dst, rows, n, width)
            };
            let layer_threads = self.column_threads(layer, rows, threads, caller_on_pool);
            dense_columns_split(self.kernel, src, layer, dst, layer_threads);
        }
        let src_is_front = last.is_multiple_of(2);
        if !direct_out {
            let result = if src_is_front { &*front } else { &*back };
            let n = self.output_width();
            for (r, mut row) in out.outer_iter_mut().enumerate() {
                let src = &result[r * width..r * width + n];
                match row.as_slice_mut() {
                    Some(dst) => dst.copy_from_slice(src),
                    None => row.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
                }
            }
        }
    }
}

impl Predictor for CompiledModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn input_width(&self) -> usize {
        self.input_width
    }

    fn output_width(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weights.n())
    }

    fn flops_per_sample(&self) -> u64 {
        self.flops_per_sample
    }

    fn new_workspace(&self) -> Workspace {
        Workspace::new(self.block_rows, workspace_stride(self.max_width))
    }

    fn parallel_min_rows(&self) -> usize {
        self.parallel_min_rows
    }

    fn pool_parallel_min_rows(&self) -> usize {
        self.pool_parallel_min_rows
    }

    /// One block: the rows the workspace holds.
    fn chunk_rows(&self) -> usize {
        self.block_rows
    }

    /// Small chunks when the weights stay in L2 (each chunk reads them all again), larger ones
    /// when they come from L3, none smaller than a block when they stream from DRAM.
    fn min_chunk_rows(&self) -> usize {
        if self.weights_streamed {
            self.block_rows
        } else if self.weights_fit_l2 {
            MIN_CHUNK_ROWS
        } else {
            L3_MIN_CHUNK_ROWS
        }
    }

    fn predict_into(
        &self,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_call(workspace, &x, &out)?;
        self.run_blocks(workspace, x, out, 1, false);
        Ok(())
    }

    /// Batches of at most [`CompileOptions::column_split_rows_per_thread`] rows per thread run
    /// block by block, layer by layer, each layer's output columns split over the pool, so every
    /// thread streams a disjoint part of the weights; other batches are split by rows
    /// ([`Predictor::predict_batch_into`]'s default). Either way each output is the same FMA
    /// chain, so the bits do not change.
    fn predict_batch_into(
        &self,
        pool: &ThreadPool,
        workspaces: &mut [Workspace],
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let rows = x.nrows();
        let threads = pool.current_num_threads();
        let caller_on_pool = pool.current_thread_index().is_some();
        let by_columns = self.splits_by_columns(rows, threads, caller_on_pool);
        if !by_columns {
            return predict_row_split(self, pool, workspaces, x, out);
        }
        let Some(workspace) = workspaces.first_mut() else {
            return Err(Error::TooFewWorkspaces { needed: 1, got: 0 });
        };
        self.check_call(workspace, &x, &out)?;
        pool.install(|| self.run_blocks(workspace, x, out, threads, caller_on_pool));
        Ok(())
    }
}

/// Rows that carry at least `flops` of work (at least one).
fn rows_for(flops: u64, flops_per_sample: u64) -> usize {
    flops.div_ceil(flops_per_sample.max(1)).max(1) as usize
}

/// Multiply-adds of one layer for `rows` rows, counted as two FLOPs each.
fn layer_flops(layer: &CompiledLayer, rows: usize) -> u64 {
    2 * rows as u64 * layer.weights.k().max(1) as u64 * layer.weights.n() as u64
}

/// The row stride of workspace buffers: the widest activation, padded by one cache line when
/// rows would otherwise lie a multiple of 1 KiB apart. A register tile reads 6 rows at once; at
/// a 4 KiB-multiple stride (wide-mlp's 4096 floats) they all map to the same L1 set and evict
/// each other (and alias in the load/store unit's 4K disambiguation).
fn workspace_stride(max_width: usize) -> usize {
    if (max_width * 4).is_multiple_of(1024) {
        max_width + 16
    } else {
        max_width
    }
}

/// Copies one input row into a workspace row: a `memcpy` when the row is contiguous (a column
/// slice of a wider array), element by element otherwise (a transposed view).
fn copy_row(dst: &mut [f32], row: ArrayView1<'_, f32>) {
    match row.as_slice() {
        Some(src) => dst.copy_from_slice(src),
        None => dst.iter_mut().zip(row).for_each(|(d, s)| *d = *s),
    }
}

/// Whether every value is finite: a branch-free scan for the common case; the caller locates the
/// first bad value only when there is one.
fn all_finite(kernel: KernelKind, x: &ArrayView2<'_, f32>) -> bool {
    match x.as_slice() {
        Some(values) => kernel.all_finite(values),
        None => x.outer_iter().all(|row| {
            row.as_slice().map_or_else(
                || row.iter().all(|v| v.is_finite()),
                |values| kernel.all_finite(values),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(widths: &[usize], options: &CompileOptions) -> CompiledModel {
        Model::random(widths, Activation::Relu, Activation::Softmax, 1)
            .compile(options)
            .expect("compiles")
    }

    #[test]
    fn small_batches_of_an_l3_sized_model_split_by_columns_from_two_rows() {
        // 784→512→512→10 (2.6 MB): hidden layers of 0.8 and 0.5 MFLOP per row, which split at
        // one row only for a caller on the pool (250 kFLOP per thread).
        let model = compiled(&[784, 512, 512, 10], &CompileOptions::default());
        assert!(model.splits_by_columns(1, 2, true));
        assert!(!model.splits_by_columns(1, 2, false), "one row stays whole");
        for caller_on_pool in [true, false] {
            for rows in [2, 3, 6, 16] {
                assert!(
                    model.splits_by_columns(rows, 2, caller_on_pool),
                    "{rows} rows"
                );
            }
            assert!(
                !model.splits_by_columns(17, 2, caller_on_pool),
                "past 8 rows per thread"
            );
            assert!(!model.splits_by_columns(2, 1, caller_on_pool), "one thread");
        }
    }

    #[test]
    fn an_l2_sized_model_splits_by_columns_only_where_the_path_is_shorter() {
        // 300→257→129→7 (440 KB): from a pool thread 8 rows fork by rows (4 per task, 0.9
        // MFLOP) and 16 too, which the column split (its softmax layer whole, the 129-wide layer
        // unsplit at 8 rows) does not beat; from outside, 8 rows are too little to wake the pool.
        let model = compiled(&[300, 257, 129, 7], &CompileOptions::default());
        assert!(!model.splits_by_columns(8, 2, true));
        assert!(!model.splits_by_columns(8, 2, false));
        assert!(!model.splits_by_columns(16, 2, true));
        let forced = compiled(
            &[300, 257, 129, 7],
            &CompileOptions {
                column_split_rows_per_thread: Some(8),
                ..CompileOptions::default()
            },
        );
        assert!(
            forced.splits_by_columns(16, 2, true),
            "a given rows limit is obeyed"
        );
    }

    #[test]
    fn streamed_weights_split_by_columns_whatever_the_path() {
        // 1100→2100→1000 (17.6 MB) with a softmax head: the unsplit last layer makes the
        // column path longer, but the row split would stream every weight once per thread.
        let model = compiled(&[1100, 2100, 1000], &CompileOptions::default());
        assert!(model.weights_streamed);
        assert!(model.splits_by_columns(1, 2, false));
        assert!(model.splits_by_columns(128, 2, true));
        assert!(
            !model.splits_by_columns(129, 2, true),
            "past 64 rows per thread"
        );
    }

    #[test]
    fn a_caller_on_the_pool_forks_with_a_quarter_of_the_work() {
        // 300→257→129→7: 222 kFLOP per row (with bias and activation), so 1 MFLOP takes 5 rows
        // and 250 kFLOP 2.
        let model = compiled(&[300, 257, 129, 7], &CompileOptions::default());
        assert_eq!(model.flops_per_sample(), 222_312);
        assert_eq!(model.parallel_min_rows(), 5);
        assert_eq!(model.pool_parallel_min_rows(), 2);
        let given = compiled(
            &[300, 257, 129, 7],
            &CompileOptions {
                pool_parallel_min_flops: Some(1_000_000),
                ..CompileOptions::default()
            },
        );
        assert_eq!(given.pool_parallel_min_rows(), 5);
    }
}
