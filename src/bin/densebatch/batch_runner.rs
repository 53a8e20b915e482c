//! Running batches of a compiled model on a thread pool of its own: the one place the commands
//! call the library's batch API.

use anyhow::{Context, Result};
use densebatch::prelude::*;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::ThreadPool;

use crate::batch_alloc::BatchAllocWindow;
use crate::stats::BatchStats;

/// A pool of `threads` threads and one workspace per thread, allocated once for every batch.
pub struct BatchRunner {
    pool: ThreadPool,
    workspaces: Vec<Workspace>,
}

impl BatchRunner {
    /// Starts the pool and allocates the workspaces for `compiled`.
    pub fn new(compiled: &CompiledModel, threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .context("cannot start the thread pool")?;
        // Every pool thread runs once now: threads allocate their own state when they start,
        // which a measured batch would otherwise count.
        pool.broadcast(|_| ());
        let workspaces = compiled.new_workspaces(threads);
        Ok(BatchRunner { pool, workspaces })
    }

    /// Bytes of the workspaces.
    pub fn workspace_bytes(&self) -> usize {
        self.workspaces.iter().map(Workspace::bytes).sum()
    }

    /// Computes `out` for the rows of `x`.
    pub fn predict_into(
        &mut self,
        compiled: &CompiledModel,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<(), Error> {
        predict_batch(compiled, &self.pool, &mut self.workspaces, x, out)
    }

    /// As [`BatchRunner::predict_into`], recording the batch's time and the heap bytes it
    /// allocated (on the calling thread and the pool's) in `stats`.
    pub fn predict_measured(
        &mut self,
        compiled: &CompiledModel,
        x: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
        stats: &mut BatchStats,
    ) -> Result<(), Error> {
        let rows = x.nrows();
        let allocations = BatchAllocWindow::open(&self.pool);
        let started = std::time::Instant::now();
        let result = predict_batch(compiled, &self.pool, &mut self.workspaces, x, out);
        let elapsed = started.elapsed();
        stats.record(rows, elapsed, allocations.close());
        result
    }
}
