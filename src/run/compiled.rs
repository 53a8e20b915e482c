//! [`CompiledModel`] as a [`Predictor`]: the calls `predict_batch`, sessions and the scheduler
//! make, each a thin step into the split policy and the block runner.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rayon::ThreadPool;

use crate::error::Result;
use crate::kernels::{Precision, code_stride};
use crate::plan::{CompiledModel, workspace_stride};
use crate::predictor::{Predictor, Split};
use crate::run::fork::Fork;
use crate::workspace::Workspace;

impl CompiledModel {
    /// Runs `x` on the calling thread and returns a new array: the simplest call, for a few
    /// rows now and then. It allocates the output and a workspace on every call; for repeated
    /// calls use a [`crate::Session`].
    ///
    /// # Errors
    /// [`crate::Error::InputWidth`], or [`crate::Error::NonFiniteInput`] naming the first bad row and column.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Predictor::predict(self, x)
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
        CompiledModel::output_width(self)
    }

    fn flops_per_sample(&self) -> u64 {
        self.flops_per_sample
    }

    fn new_workspace(&self) -> Workspace {
        let workspace = Workspace::new(self.block_rows, workspace_stride(self.max_width));
        if self.precision == Precision::Int8Full {
            workspace.with_codes(code_stride(self.max_width))
        } else {
            workspace
        }
    }

    fn split(&self, rows: usize, threads: usize, caller_on_pool: bool) -> Split {
        self.plan_split(rows, threads, caller_on_pool)
    }

    fn predict_into(
        &self,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_call(workspace, &x, &out)?;
        self.run_blocks(workspace, x, out, 1, false, Fork::Pool);
        Ok(())
    }

    /// Runs block by block, layer by layer, each layer's output columns split over the pool, so
    /// every thread streams a disjoint part of the weights. Each output is still one FMA chain,
    /// so the bits do not change.
    fn predict_split_columns(
        &self,
        pool: &ThreadPool,
        workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_call(workspace, &x, &out)?;
        let threads = pool.current_num_threads();
        let caller_on_pool = pool.current_thread_index().is_some();
        pool.install(|| self.run_blocks(workspace, x, out, threads, caller_on_pool, Fork::Pool));
        Ok(())
    }

    fn check_input(&self, x: ArrayView2<'_, f32>) -> Result<()> {
        CompiledModel::check_input(self, &x)
    }
}
