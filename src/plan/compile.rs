//! Compiling a model: validate once, pick the kernel, pack the weights, fix the block size and
//! the split cut-offs. The result, [`CompiledModel`], is immutable; running it lives in `run/`.

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::kernels::{
    KernelKind, LINE_BYTES, MAX_INT8_FULL_K, PackedWeights, Precision, code_stride,
};
use crate::model::Model;
use crate::plan::cache::l2_bytes_per_core;
use crate::plan::options::{CompileOptions, NonFiniteInput};
use crate::plan::tuning::{
    INT8_FULL_FORK_FACTOR, INT8_FULL_RESIDENT_ROWS_PER_THREAD, L2_WEIGHT_BYTES, POOL_FORK_DISCOUNT,
    POOL_SPLIT_DISCOUNT, RESIDENT_ROWS_PER_THREAD, STREAMED_BLOCK_ROWS, STREAMED_ROWS_PER_THREAD,
    STREAMED_WEIGHT_BYTES, l2_block_rows,
};

/// One dense layer, its weights packed for the model's kernel.
#[derive(Debug)]
pub(crate) struct CompiledLayer {
    pub(crate) weights: PackedWeights,
    pub(crate) bias: Vec<f32>,
    pub(crate) activation: Activation,
}

impl CompiledLayer {
    /// Multiply-adds of this layer for `rows` rows, counted as two FLOPs each.
    pub(crate) fn flops(&self, rows: usize) -> u64 {
        2 * rows as u64 * self.weights.k().max(1) as u64 * self.weights.n() as u64
    }
}

/// A model ready to run: immutable, weights packed for one kernel. Share it through `Arc`.
///
/// Run it through a [`crate::Session`] ([`CompiledModel::session`]), through
/// [`crate::predict_batch`] on a pool of your own, or serve it with a [`crate::Scheduler`].
///
/// # Examples
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[8, 16, 4], Activation::Relu, Activation::Softmax, 1);
/// let compiled = model.compile()?;
/// assert_eq!((compiled.input_width(), compiled.output_width()), (8, 4));
/// let y = compiled.predict(ndarray::Array2::<f32>::ones((3, 8)).view())?;
/// assert_eq!(y.dim(), (3, 4));
/// assert!((y.row(0).sum() - 1.0).abs() < 1e-6);
/// # Ok::<(), densebatch::Error>(())
/// ```
#[derive(Debug)]
pub struct CompiledModel {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) input_width: usize,
    pub(crate) max_width: usize,
    pub(crate) layers: Vec<CompiledLayer>,
    pub(crate) kernel: KernelKind,
    pub(crate) precision: Precision,
    pub(crate) block_rows: usize,
    pub(crate) non_finite_input: NonFiniteInput,
    pub(crate) parallel_min_rows: usize,
    pub(crate) pool_parallel_min_rows: usize,
    pub(crate) parallel_min_flops: u64,
    pub(crate) split_min_flops: u64,
    pub(crate) pool_split_min_flops: u64,
    pub(crate) column_split_rows_per_thread: usize,
    /// Whether the column split must beat the row split (the rows limit was not given).
    pub(crate) compare_splits: bool,
    pub(crate) flops_per_sample: u64,
    /// Whether the weights outgrow a last-level cache share ([`STREAMED_WEIGHT_BYTES`]).
    pub(crate) weights_streamed: bool,
    /// Whether the weights fit one core's L2 ([`L2_WEIGHT_BYTES`]).
    pub(crate) weights_fit_l2: bool,
    /// Packed weight bytes.
    pub(crate) weight_bytes: usize,
    /// One core's L2, detected or given ([`crate::Tuning::l2_bytes`]).
    pub(crate) l2_bytes: usize,
}

impl Model {
    /// Compiles the model with the default options: the fastest kernel this CPU runs, blocks
    /// sized for its caches, NaN/Inf inputs refused.
    ///
    /// # Errors
    /// As [`Model::compile_with`].
    pub fn compile(&self) -> Result<CompiledModel> {
        self.compile_with(&CompileOptions::default())
    }

    /// Compiles the model: picks the kernel, packs the weights, sizes the workspace.
    ///
    /// # Errors
    /// [`Error::UnsupportedKernel`] when `options` names a kernel this CPU cannot run;
    /// [`Error::PrecisionLimit`] when a layer has more inputs than full int8 sums exactly
    /// ([`crate::MAX_INT8_FULL_K`]).
    pub fn compile_with(&self, options: &CompileOptions) -> Result<CompiledModel> {
        let tuning = &options.tuning;
        let kernel = options.kernel.unwrap_or_else(KernelKind::detect);
        if !kernel.is_supported() {
            return Err(Error::UnsupportedKernel {
                kernel: kernel.name(),
            });
        }
        let spec = self.spec();
        if options.precision == Precision::Int8Full
            && let Some((layer, ls)) =
                (spec.layers.iter().enumerate()).find(|(_, ls)| ls.input > MAX_INT8_FULL_K)
        {
            return Err(Error::PrecisionLimit {
                precision: Precision::Int8Full.name(),
                layer,
                inputs: ls.input,
                limit: MAX_INT8_FULL_K,
            });
        }
        let max_width = spec
            .layers
            .iter()
            .map(|l| l.output)
            .chain([spec.input_width])
            .max()
            .unwrap_or(1);
        let precision = options.precision;
        let weight_bytes: usize = self
            .layers()
            .iter()
            .map(|l| precision.bytes_per_weight() * l.weight.len())
            .sum();
        let l2_bytes = tuning.l2_bytes.unwrap_or_else(l2_bytes_per_core);
        let l2_rows = l2_block_rows(max_width, l2_bytes, kernel.tile_rows());
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
                weights: PackedWeights::pack_precision(
                    lw.weight.view(),
                    kernel.panel_width(ls.output),
                    tuning.huge_pages.unwrap_or(streamed),
                    precision,
                )
                .with_prefetch(tuning.prefetch_weights.unwrap_or(streamed)),
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
            precision,
            block_rows,
            non_finite_input: options.non_finite_input,
            parallel_min_rows: rows_for(
                if precision == Precision::Int8Full {
                    tuning
                        .parallel_min_flops
                        .saturating_mul(INT8_FULL_FORK_FACTOR)
                } else {
                    tuning.parallel_min_flops
                },
                flops_per_sample,
            ),
            pool_parallel_min_rows: rows_for(
                tuning
                    .pool_parallel_min_flops
                    .unwrap_or(tuning.parallel_min_flops / POOL_FORK_DISCOUNT),
                flops_per_sample,
            ),
            parallel_min_flops: tuning.parallel_min_flops,
            split_min_flops: tuning.split_min_flops,
            pool_split_min_flops: tuning
                .pool_split_min_flops
                .unwrap_or(tuning.split_min_flops / POOL_SPLIT_DISCOUNT),
            column_split_rows_per_thread: tuning.column_split_rows_per_thread.unwrap_or(
                if streamed {
                    STREAMED_ROWS_PER_THREAD
                } else if precision == Precision::Int8Full {
                    INT8_FULL_RESIDENT_ROWS_PER_THREAD
                } else {
                    RESIDENT_ROWS_PER_THREAD
                },
            ),
            compare_splits: tuning.column_split_rows_per_thread.is_none(),
            flops_per_sample,
            weights_streamed: streamed,
            weights_fit_l2: weight_bytes <= L2_WEIGHT_BYTES,
            weight_bytes,
            l2_bytes,
        })
    }
}

impl CompiledModel {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Width of an input sample.
    pub fn input_width(&self) -> usize {
        self.input_width
    }

    /// Width of an output row.
    pub fn output_width(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weights.n())
    }

    /// Floating-point operations per sample (two per multiply-add).
    pub fn flops_per_sample(&self) -> u64 {
        self.flops_per_sample
    }

    /// The kernel the weights were packed for.
    pub fn kernel(&self) -> KernelKind {
        self.kernel
    }

    /// The precision the weights are stored in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Rows per block (the workspace's height).
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Bytes of packed weights in their precision (padding, int8 scales and biases included).
    pub fn weight_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.bytes() + 4 * l.bias.len())
            .sum()
    }

    /// Bytes of one workspace: two activation buffers, a scale per row and, in full int8, the
    /// rows' activation codes; each buffer but the scales a cache line more, for its alignment.
    pub fn workspace_bytes(&self) -> usize {
        let codes = if self.precision == Precision::Int8Full {
            self.block_rows * code_stride(self.max_width) + LINE_BYTES
        } else {
            0
        };
        let activations = 4 * self.block_rows * workspace_stride(self.max_width) + LINE_BYTES;
        2 * activations + 4 * self.block_rows + codes
    }
}

/// Rows that carry at least `flops` of work (at least one).
fn rows_for(flops: u64, flops_per_sample: u64) -> usize {
    flops.div_ceil(flops_per_sample.max(1)).max(1) as usize
}

/// The row stride of workspace buffers: the widest activation, padded by one cache line when
/// rows would otherwise lie a multiple of 1 KiB apart. A register tile reads 6 rows at once; at
/// a 4 KiB-multiple stride (wide-mlp's 4096 floats) they all map to the same L1 set and evict
/// each other (and alias in the load/store unit's 4K disambiguation).
pub(crate) fn workspace_stride(max_width: usize) -> usize {
    if (max_width * 4).is_multiple_of(1024) {
        max_width + 16
    } else {
        max_width
    }
}
