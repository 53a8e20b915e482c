//! Compiling a model: validate once, pack the weights for the chosen kernel, size the workspace.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::kernels::{KernelKind, PackedWeights, Rows, RowsMut};
use crate::model::Model;
use rayon::ThreadPool;

use crate::predictor::{Predictor, predict_row_split};
use crate::workspace::Workspace;

mod column_split;
use column_split::dense_columns_split;

/// Work (in FLOPs) per task below which a batch runs inline rather than being forked over a pool.
///
/// Measured with `cargo run --release --example parallel_cutoff` (inline on one thread vs forced
/// over two, idle 2-core AMD Zen 3): tiny-mlp broke even at 1.3 MFLOP per batch (1024 rows) and
/// gained 1.18× at 2.6 MFLOP; below that the fork and join (≈ 20 µs there) dominates. So a
/// task must carry about 1 MFLOP.
pub const DEFAULT_PARALLEL_MIN_FLOPS: u64 = 1_000_000;

/// Work (in FLOPs) of one layer below which a small batch does not split it by output columns
/// (see [`CompileOptions::split_min_flops`]). Same probe on mnist-mlp: splitting every layer
/// lost at batch 1 (0.8 and 0.5 MFLOP layers: 61 µs vs 43 µs inline), broke even at batch 2
/// (1.6 and 1.0 MFLOP) and won 1.18–1.45× from batch 4 (≥ 3.2 MFLOP layers).
pub const DEFAULT_SPLIT_MIN_FLOPS: u64 = 2_000_000;

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

/// Activation bytes (two ping-pong buffers) a block of rows may take, so blocks stay in L2
/// (512 KiB per core on Zen 3, 1 MiB on Zen 4/5): mnist-mlp gets 83-row blocks.
const BLOCK_BYTES: usize = 512 * 1024;

/// Weight bytes above which weights are streamed from DRAM (larger than a last-level cache
/// share): blocks then get at least [`STREAMED_BLOCK_ROWS`] rows, so that each weight byte
/// fetched serves enough FLOPs, even though the activations spill from L2 to L3; and kernels
/// prefetch each next panel. `cargo run --release --example prefetch_probe` (calls alternated,
/// Zen 3) on wide-mlp (100 MB of weights), 1 / 2 threads: 1.32 / 1.37× at batch 8, 1.14 / 1.11×
/// at 32, 1.03 / 1.04× at 128; on mnist-mlp (2.6 MB, L3-resident) 0.85× at batch 8 and
/// 0.95–1.02× at 32–128, so off there.
const STREAMED_WEIGHT_BYTES: usize = 8 * 1024 * 1024;

/// The smallest row chunk for cache-resident weights: mnist-mlp on one thread (Zen 3, minimum
/// of 350 calls) costs 14.5 µs per row in 6-row calls, 13.9 in 16-row and 13.7 in 64-row ones.
const MIN_CHUNK_ROWS: usize = 16;

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
    /// Work per task below which `predict_batch_into` does not fork.
    pub parallel_min_flops: u64,
    /// Work of one layer below which a small batch does not split it by columns.
    pub split_min_flops: u64,
    /// Rows per thread up to which `predict_batch_into` splits each layer by output columns
    /// rather than splitting the batch by rows: a column split reads each weight once, a row
    /// split once per thread. `None` picks 64 for weights larger than a last-level cache share
    /// (8 MiB), which are streamed from DRAM, and 8 for weights that stay in cache.
    pub column_split_rows_per_thread: Option<usize>,
    /// Whether kernels prefetch each next weight panel; `None` turns it on for weights larger
    /// than a last-level cache share (8 MiB), which are streamed from DRAM.
    pub prefetch_weights: Option<bool>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            kernel: None,
            block_rows: None,
            non_finite_input: NonFiniteInput::Reject,
            parallel_min_flops: DEFAULT_PARALLEL_MIN_FLOPS,
            split_min_flops: DEFAULT_SPLIT_MIN_FLOPS,
            column_split_rows_per_thread: None,
            prefetch_weights: None,
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
    split_min_flops: u64,
    column_split_rows_per_thread: usize,
    flops_per_sample: u64,
    /// Whether the weights outgrow a last-level cache share ([`STREAMED_WEIGHT_BYTES`]).
    weights_streamed: bool,
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
                weights: PackedWeights::pack(lw.weight.view(), kernel.panel_width(ls.output))
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
            parallel_min_rows: options
                .parallel_min_flops
                .div_ceil(flops_per_sample.max(1))
                .max(1) as usize,
            split_min_flops: options.split_min_flops,
            column_split_rows_per_thread: options.column_split_rows_per_thread.unwrap_or(
                if streamed {
                    STREAMED_ROWS_PER_THREAD
                } else {
                    RESIDENT_ROWS_PER_THREAD
                },
            ),
            flops_per_sample,
            weights_streamed: streamed,
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
        if self.non_finite_input == NonFiniteInput::Reject && !all_finite(x) {
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
    /// `threads` are available: enough work per thread to pay for a join, never a row-wise
    /// activation (softmax needs whole rows), at most one thread per panel.
    fn column_threads(&self, layer: &CompiledLayer, rows: usize, threads: usize) -> usize {
        if threads <= 1 || layer.activation.is_row_wise() {
            return 1;
        }
        let (k, n) = (layer.weights.k() as u64, layer.weights.n() as u64);
        let flops = 2 * rows as u64 * k.max(1) * n;
        let panels = layer.weights.n().div_ceil(layer.weights.nr());
        ((flops / self.split_min_flops.max(1)) as usize)
            .min(threads)
            .min(panels)
            .max(1)
    }

    /// Runs a checked batch block by block (see [`Self::run_block`]).
    fn run_blocks(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
    ) {
        let rows = x.nrows();
        let mut start = 0;
        while start < rows {
            let len = ws.rows.min(rows - start);
            let xb = x.slice_axis(Axis(0), (start..start + len).into());
            let ob = out.slice_axis_mut(Axis(0), (start..start + len).into());
            self.run_block(ws, xb, ob, threads);
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
            let layer_threads = self.column_threads(layer, rows, threads);
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

    /// One block: the rows the workspace holds.
    fn chunk_rows(&self) -> usize {
        self.block_rows
    }

    /// Small chunks when the weights stay in cache (each chunk reads them all again), none
    /// smaller than a block when they stream from DRAM.
    fn min_chunk_rows(&self) -> usize {
        if self.weights_streamed {
            self.block_rows
        } else {
            MIN_CHUNK_ROWS
        }
    }

    fn predict_into(
        &self,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_call(workspace, &x, &out)?;
        self.run_blocks(workspace, x, out, 1);
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
        let by_columns = rows <= self.column_split_rows_per_thread.saturating_mul(threads)
            && self
                .layers
                .iter()
                .any(|l| self.column_threads(l, rows.min(self.block_rows), threads) > 1);
        if !by_columns {
            return predict_row_split(self, pool, workspaces, x, out);
        }
        let Some(workspace) = workspaces.first_mut() else {
            return Err(Error::TooFewWorkspaces { needed: 1, got: 0 });
        };
        self.check_call(workspace, &x, &out)?;
        pool.install(|| self.run_blocks(workspace, x, out, threads));
        Ok(())
    }
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

/// Whether every value is finite: a branch-free scan (it vectorises) for the common case; the
/// caller locates the first bad value only when there is one.
fn all_finite(x: &ArrayView2<'_, f32>) -> bool {
    fn scan(values: &[f32]) -> bool {
        // Exponent bits all ones means NaN or infinity.
        values.iter().fold(0u32, |bad, v| {
            bad | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
        }) == 0
    }
    match x.as_slice() {
        Some(values) => scan(values),
        None => x.outer_iter().all(|row| {
            row.as_slice()
                .map_or_else(|| row.iter().all(|v| v.is_finite()), scan)
        }),
    }
}
