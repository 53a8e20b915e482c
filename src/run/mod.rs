//! Running compiled models: [`predict_batch`] asks the model for its [`Split`] and carries it
//! out (inline, by rows in `row_split`, by columns through `block` and `column_split`);
//! [`Session`] wraps it with a pool and workspaces of its own.

mod block;
mod column_split;
mod compiled;
mod fork;
mod row_split;
mod session;
mod split;
mod team;

use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::ThreadPool;

use crate::error::{Error, Result};
use crate::plan::CompiledModel;
use crate::predictor::{Predictor, Split};
use crate::workspace::Workspace;
use fork::Fork;
use team::Team;

pub use session::Session;

/// Runs `x` through `model` on `pool` into `out`: the expert path, for callers that own their
/// pool and workspaces (a [`Session`] does this for you).
///
/// The model chooses the [`Split`]: small batches run inline on the caller's thread, larger ones
/// are cut into chunks of rows over the pool, and small batches of large layers have each
/// layer's output columns spread over the pool. `workspaces` needs one entry per pool thread.
///
/// Called from outside the pool, each forked call is handed to a pool thread and the caller
/// sleeps until it is done (two thread wake-ups per call). A loop that makes many calls can run
/// inside [`ThreadPool::install`] instead: the calling thread is then one of the pool's and
/// computes a share of every batch (measured 1.37× on mnist-mlp batch 8 with 2 threads). A
/// [`Session`] does better still from any thread: its caller computes a share and its helpers
/// spin between calls instead of sleeping (mnist-mlp on 2 threads of an Intel Xeon, µs per
/// call: batch 1 13.0 against 14.1 inside `install` and 25.5 from outside; batch 32 156 against
/// 212 and 216).
///
/// ```
/// use densebatch::prelude::*;
/// let compiled = Model::random(&[8, 16, 4], Activation::Relu, Activation::Identity, 1).compile()?;
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
/// let mut workspaces = compiled.new_workspaces(2);
/// let x = ndarray::Array2::<f32>::ones((64, 8));
/// let mut y = ndarray::Array2::<f32>::zeros((64, 4));
/// pool.install(|| {
///     for _ in 0..3 {
///         predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())?;
///     }
///     Ok::<(), densebatch::Error>(())
/// })?;
/// assert_eq!(y.row(0), y.row(63));
/// # Ok::<(), densebatch::Error>(())
/// ```
///
/// # Errors
/// As [`Predictor::predict_into`], plus [`Error::TooFewWorkspaces`]. Row indices in
/// [`Error::NonFiniteInput`] refer to the whole batch.
pub fn predict_batch<P: Predictor + ?Sized>(
    model: &P,
    pool: &ThreadPool,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let rows = x.nrows();
    let caller_on_pool = pool.current_thread_index().is_some();
    let split = model.split(rows, pool.current_num_threads(), caller_on_pool);
    let needed = match split {
        Split::Rows { tasks, .. } => tasks,
        _ => 1,
    };
    if workspaces.len() < needed {
        return Err(Error::TooFewWorkspaces {
            needed,
            got: workspaces.len(),
        });
    }
    match split {
        Split::Rows {
            tasks,
            chunk_rows,
            min_chunk_rows,
        } if tasks > 1 => {
            check_shapes(model, &x, &out)?;
            let chunks = (tasks, chunk_rows, min_chunk_rows);
            pool.install(|| {
                row_split::predict_row_split(model, Fork::Pool, workspaces, x, out, chunks)
            })
        }
        Split::Columns => model.predict_split_columns(pool, &mut workspaces[0], x, out),
        _ => model.predict_into(&mut workspaces[0], x, out),
    }
}

/// Runs `x` through `model` into `out` with the calling thread computing a share of each split
/// and `team`'s helpers the others (a [`Session`]'s calls). The split is planned as for a caller
/// on the pool, since no wake-up is on the caller's path. `workspaces` holds one per thread.
pub(crate) fn predict_on_team(
    model: &CompiledModel,
    team: &Team,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let threads = team.threads();
    match model.plan_split(x.nrows(), threads, true) {
        Split::Rows {
            tasks,
            chunk_rows,
            min_chunk_rows,
        } if tasks > 1 => {
            check_shapes(model, &x, &out)?;
            let chunks = (tasks, chunk_rows, min_chunk_rows);
            let fork = Fork::Team(team);
            row_split::predict_row_split(model, fork, workspaces, x, out, chunks)
        }
        Split::Columns => {
            let workspace = &mut workspaces[0];
            model.check_call(workspace, &x, &out)?;
            model.run_blocks(workspace, x, out, threads, true, Fork::Team(team));
            Ok(())
        }
        _ => model.predict_into(&mut workspaces[0], x, out),
    }
}

/// The width and output shape checks a row split makes once for the whole batch (each chunk
/// checks its own values).
fn check_shapes<P: Predictor + ?Sized>(
    model: &P,
    x: &ArrayView2<'_, f32>,
    out: &ArrayViewMut2<'_, f32>,
) -> Result<()> {
    if x.ncols() != model.input_width() {
        return Err(Error::InputWidth {
            expected: model.input_width(),
            got: x.ncols(),
        });
    }
    if out.dim() != (x.nrows(), model.output_width()) {
        return Err(Error::OutputShape {
            expected: [x.nrows(), model.output_width()],
            got: [out.nrows(), out.ncols()],
        });
    }
    Ok(())
}
