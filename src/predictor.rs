//! The `Predictor` trait: what the batch runner and the scheduler need from a model.

use std::fmt;

use ndarray::{Array2, ArrayView2, ArrayViewD, ArrayViewMut2, Axis};
use rayon::ThreadPool;

use crate::error::{Error, Result};
use crate::workspace::Workspace;

/// A compiled model that maps a batch of samples `[rows, input_width]` to
/// `[rows, output_width]`.
///
/// Object-safe and `Send + Sync`, so an `Arc<dyn Predictor>` can be shared by threads and kept in
/// a registry. Implementations promise that a sample's output does not depend on the batch it
/// arrives in: not on the batch size, its position, or the thread count.
pub trait Predictor: Send + Sync + fmt::Debug {
    /// The model's name.
    fn name(&self) -> &str;

    /// Width of an input sample.
    fn input_width(&self) -> usize;

    /// Width of an output row.
    fn output_width(&self) -> usize;

    /// Floating-point operations per sample (for cut-offs and reports).
    fn flops_per_sample(&self) -> u64;

    /// A fresh workspace sized for this model: allocate one per thread, once.
    fn new_workspace(&self) -> Workspace;

    /// `count` fresh workspaces, one per thread of the pool that will run the model.
    fn new_workspaces(&self, count: usize) -> Vec<Workspace> {
        (0..count.max(1)).map(|_| self.new_workspace()).collect()
    }

    /// The fewest rows worth handing to a separate thread; smaller batches run inline.
    fn parallel_min_rows(&self) -> usize {
        1
    }

    /// Runs the batch `x` into `out` on the calling thread, using `workspace` as scratch.
    /// Allocates nothing. An empty batch is fine and writes nothing.
    ///
    /// # Errors
    /// [`Error::InputWidth`], [`Error::OutputShape`], [`Error::WorkspaceTooSmall`], or
    /// [`Error::NonFiniteInput`] when the model rejects NaN/Inf input. On error `out`'s contents
    /// are unspecified.
    fn predict_into(
        &self,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()>;

    /// Convenience: runs `x` and returns a new array. Allocates the output and a workspace on
    /// every call; use [`Predictor::predict_into`] on hot paths.
    ///
    /// # Errors
    /// As [`Predictor::predict_into`].
    fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((x.nrows(), self.output_width()));
        self.predict_into(&mut self.new_workspace(), x, out.view_mut())?;
        Ok(out)
    }

    /// Convenience for inputs of unknown rank: a 1-D array is one sample, a 2-D array a batch.
    /// Allocates like [`Predictor::predict`].
    ///
    /// # Errors
    /// [`Error::InputRank`] for any other rank; otherwise as [`Predictor::predict_into`].
    fn predict_dyn(&self, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        match x.ndim() {
            1 => self.predict(
                x.insert_axis(Axis(0))
                    .into_dimensionality()
                    .expect("rank 2"),
            ),
            2 => self.predict(x.into_dimensionality().expect("rank 2")),
            got => Err(Error::InputRank { got }),
        }
    }

    /// Runs a batch on `pool`: the rows are cut into one contiguous block per task, each task
    /// carries its block through all layers with its own workspace. Batches too small to pay
    /// for a fork (see [`Predictor::parallel_min_rows`]) run inline on the caller's thread.
    ///
    /// `workspaces` needs one entry per pool thread.
    ///
    /// # Errors
    /// As [`Predictor::predict_into`], plus [`Error::TooFewWorkspaces`]. Row indices in
    /// [`Error::NonFiniteInput`] refer to the whole batch.
    fn predict_batch_into(
        &self,
        pool: &ThreadPool,
        workspaces: &mut [Workspace],
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        predict_row_split(self, pool, workspaces, x, out)
    }
}

/// The row split behind [`Predictor::predict_batch_into`]: contiguous blocks of rows, one per
/// task, each carried through all layers by one thread with its own workspace; inline below
/// [`Predictor::parallel_min_rows`] rows per task.
pub(crate) fn predict_row_split<P: Predictor + ?Sized>(
    model: &P,
    pool: &ThreadPool,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let rows = x.nrows();
    let tasks = (rows / model.parallel_min_rows().max(1)).clamp(1, pool.current_num_threads());
    if workspaces.len() < tasks.max(1) {
        return Err(Error::TooFewWorkspaces {
            needed: tasks,
            got: workspaces.len(),
        });
    }
    if tasks == 1 {
        return model.predict_into(&mut workspaces[0], x, out);
    }
    if x.ncols() != model.input_width() {
        return Err(Error::InputWidth {
            expected: model.input_width(),
            got: x.ncols(),
        });
    }
    if out.dim() != (rows, model.output_width()) {
        return Err(Error::OutputShape {
            expected: [rows, model.output_width()],
            got: [out.nrows(), out.ncols()],
        });
    }
    pool.install(|| fork(model, &mut workspaces[..tasks], x, out, 0))
}

/// Splits rows and workspaces in halves recursively with `rayon::join`, which keeps its jobs on
/// the stack: no allocation per batch.
fn fork<P: Predictor + ?Sized>(
    model: &P,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
    first_row: usize,
) -> Result<()> {
    if workspaces.len() == 1 {
        return model
            .predict_into(&mut workspaces[0], x, out)
            .map_err(|e| match e {
                Error::NonFiniteInput { row, col, value } => Error::NonFiniteInput {
                    row: row + first_row,
                    col,
                    value,
                },
                other => other,
            });
    }
    let half = workspaces.len() / 2;
    let mid = x.nrows() * half / workspaces.len();
    let (ws_left, ws_right) = workspaces.split_at_mut(half);
    let (x_left, x_right) = x.split_at(Axis(0), mid);
    let (out_left, out_right) = out.split_at(Axis(0), mid);
    let (left, right) = rayon::join(
        || fork(model, ws_left, x_left, out_left, first_row),
        || fork(model, ws_right, x_right, out_right, first_row + mid),
    );
    left.and(right)
}

/// Runs `x` through `model` on `pool` into `out`: the free-function spelling of
/// [`Predictor::predict_batch_into`].
///
/// # Errors
/// As [`Predictor::predict_batch_into`].
pub fn predict_batch<P: Predictor + ?Sized>(
    model: &P,
    pool: &ThreadPool,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    model.predict_batch_into(pool, workspaces, x, out)
}
