//! Running a checked batch on one thread, block by block and layer by layer: the workspace's
//! two buffers ping-pong between layers, and a layer may split its columns over the pool.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, Axis};

use crate::error::{Error, Result};
use crate::kernels::{
    KernelKind, LayerInput, Precision, QuantizedRows, Rows, RowsMut, code_stride,
};
use crate::plan::{CompiledModel, NonFiniteInput};
use crate::run::column_split::dense_columns_split;
use crate::run::fork::Fork;
use crate::workspace::Workspace;

impl CompiledModel {
    /// Checks a batch's width, and its values unless the model propagates NaN/Inf: one
    /// vectorised scan, then a scalar search for the first bad value only when there is one.
    pub(crate) fn check_input(&self, x: &ArrayView2<'_, f32>) -> Result<()> {
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
    pub(crate) fn check_call(
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
        let code_bytes = workspace.rows * code_stride(self.max_width);
        if self.precision == Precision::Int8Full && workspace.codes.len() < code_bytes {
            return Err(Error::WorkspaceWithoutCodes {
                needed: code_bytes,
                got: workspace.codes.len(),
            });
        }
        Ok(())
    }

    /// Runs a checked batch block by block (see [`Self::run_block`]).
    pub(crate) fn run_blocks(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
        caller_on_pool: bool,
        fork: Fork<'_>,
    ) {
        let rows = x.nrows();
        let mut start = 0;
        while start < rows {
            let len = ws.rows.min(rows - start);
            let xb = x.slice_axis(Axis(0), (start..start + len).into());
            let ob = out.slice_axis_mut(Axis(0), (start..start + len).into());
            self.run_block(ws, xb, ob, threads, caller_on_pool, fork);
            start += len;
        }
    }

    /// Runs one block of at most `block_rows` rows through every layer; with `threads > 1`
    /// each large enough layer is split by output columns over `fork`.
    fn run_block(
        &self,
        ws: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
        caller_on_pool: bool,
        fork: Fork<'_>,
    ) {
        let rows = x.nrows();
        let width = ws.width;
        let quantize = self.precision == Precision::Int8Full;
        let Workspace {
            front,
            back,
            row_scales,
            codes,
            ..
        } = ws;
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
                (&mut *back, &mut *front)
            } else {
                (&mut *front, &mut *back)
            };
            let input = match (i, x.as_slice()) {
                (0, Some(slice)) => Rows::new(slice, rows, k, k),
                _ => Rows::new(src, rows, k, width),
            };
            let src = if quantize {
                let stride = code_stride(k);
                self.kernel
                    .quantize_rows(input, &mut codes[..], stride, &mut row_scales[..]);
                LayerInput::Int8(QuantizedRows::new(
                    &codes[..],
                    &row_scales[..],
                    rows,
                    k,
                    stride,
                ))
            } else {
                LayerInput::F32(input)
            };
            let dst = if i == last && direct_out {
                RowsMut::new(out.as_slice_mut().expect("standard layout"), rows, n, n)
            } else {
                RowsMut::new(dst, rows, n, width)
            };
            let layer_threads = self.column_threads(layer, rows, threads, caller_on_pool);
            dense_columns_split(self.kernel, src, layer, dst, layer_threads, fork);
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
