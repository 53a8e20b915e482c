//! The [`Predictor`] trait: what `predict_batch` and the scheduler need from a model, and the
//! [`Split`] a model chooses for a batch.

use std::fmt;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rayon::ThreadPool;

use crate::error::Result;
use crate::workspace::Workspace;

/// How a batch runs on a pool: what [`Predictor::split`] answers and
/// [`crate::predict_batch`] carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Split {
    /// On the calling thread, with the first workspace.
    Inline,
    /// Chunks of rows handed out to `tasks` tasks (one per workspace), each chunk run through
    /// all layers by [`Predictor::predict_into`]. Chunks are evened out to about `chunk_rows`
    /// rows and cut down to no fewer than `min_chunk_rows` so that each task gets several.
    Rows {
        /// Tasks, at most one per pool thread.
        tasks: usize,
        /// The regular chunk size.
        chunk_rows: usize,
        /// The smallest chunk size.
        min_chunk_rows: usize,
    },
    /// Each layer's output columns spread over the pool's threads
    /// ([`Predictor::predict_split_columns`]), so that each weight is read once.
    Columns,
}

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

    /// How a batch of `rows` rows runs on `threads` threads, called from a thread of that pool
    /// (`caller_on_pool`) or not. The default splits by rows, one task per row up to one per
    /// thread, in chunks of 64 rows.
    fn split(&self, rows: usize, threads: usize, caller_on_pool: bool) -> Split {
        let _ = caller_on_pool;
        match rows.min(threads) {
            0 | 1 => Split::Inline,
            tasks => Split::Rows {
                tasks,
                chunk_rows: 64,
                min_chunk_rows: 64,
            },
        }
    }

    /// Checks a batch before it runs: its width, and whatever else the model refuses (a
    /// compiled model refuses NaN/Inf unless compiled to propagate them). The scheduler calls it
    /// on the submitting thread, so that a bad request is refused alone. The default checks the
    /// width.
    ///
    /// # Errors
    /// [`crate::Error::InputWidth`], [`crate::Error::NonFiniteInput`].
    fn check_input(&self, x: ArrayView2<'_, f32>) -> Result<()> {
        if x.ncols() == self.input_width() {
            Ok(())
        } else {
            Err(crate::Error::InputWidth {
                expected: self.input_width(),
                got: x.ncols(),
            })
        }
    }

    /// Runs the batch `x` into `out` on the calling thread, using `workspace` as scratch.
    /// Allocates nothing. An empty batch is fine and writes nothing.
    ///
    /// # Errors
    /// [`crate::Error::InputWidth`], [`crate::Error::OutputShape`],
    /// [`crate::Error::WorkspaceTooSmall`], or [`crate::Error::NonFiniteInput`] when the model
    /// rejects NaN/Inf input. On error `out`'s contents are unspecified.
    fn predict_into(
        &self,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()>;

    /// Runs the batch with each layer's output columns spread over `pool`'s threads, for
    /// [`Split::Columns`]. The default runs [`Predictor::predict_into`] on the calling thread.
    ///
    /// # Errors
    /// As [`Predictor::predict_into`].
    fn predict_split_columns(
        &self,
        pool: &ThreadPool,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        let _ = pool;
        self.predict_into(workspace, x, out)
    }

    /// Convenience: runs `x` on the calling thread and returns a new array. Allocates the output
    /// and a workspace on every call; use a [`crate::Session`] or [`Predictor::predict_into`]
    /// on hot paths.
    ///
    /// # Errors
    /// As [`Predictor::predict_into`].
    fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((x.nrows(), self.output_width()));
        self.predict_into(&mut self.new_workspace(), x, out.view_mut())?;
        Ok(out)
    }
}
