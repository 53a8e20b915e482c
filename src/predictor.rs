//! The `Predictor` trait: what the batch runner and the scheduler need from a model.

use std::fmt;
use std::sync::Mutex;

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

    /// The fewest rows worth handing to a separate thread when the caller is outside the pool;
    /// smaller batches run inline.
    fn parallel_min_rows(&self) -> usize {
        1
    }

    /// The same when the caller is a thread of the pool, where a fork costs less (no thread
    /// has to be woken while the others still spin from the last call).
    fn pool_parallel_min_rows(&self) -> usize {
        self.parallel_min_rows()
    }

    /// Rows per chunk of a batch split by rows (see [`Predictor::predict_batch_into`]); chunks
    /// are evened out to about this size. Each chunk reads all the weights once.
    fn chunk_rows(&self) -> usize {
        64
    }

    /// The fewest rows a chunk may be cut down to so that each task gets several chunks (see
    /// [`Predictor::predict_batch_into`]). The default, [`Predictor::chunk_rows`], never cuts
    /// below the regular size; a model whose weights sit in cache can afford small chunks.
    fn min_chunk_rows(&self) -> usize {
        self.chunk_rows()
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

    /// Runs a batch on `pool`: one task per pool thread, each with its own workspace, takes
    /// chunks of contiguous rows (about [`Predictor::chunk_rows`]) and carries each through all
    /// layers until none is left. Batches too small to pay for a fork (see
    /// [`Predictor::parallel_min_rows`], and [`Predictor::pool_parallel_min_rows`] when called
    /// from a thread of `pool`) run inline on the caller's thread.
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

/// The row split behind [`Predictor::predict_batch_into`]: one task per workspace (at most one
/// per pool thread), inline below [`Predictor::parallel_min_rows`] rows per task
/// ([`Predictor::pool_parallel_min_rows`] for a caller on the pool). The rows are
/// cut into even chunks of about [`Predictor::chunk_rows`], the same number for every task and
/// at least [`CHUNKS_PER_TASK`] each while chunks keep [`Predictor::min_chunk_rows`] rows, and
/// each task takes the next unclaimed chunk until none is left: a thread slowed down by
/// something else on its core (other processes, a busy hypervisor) takes fewer chunks instead
/// of holding the whole batch back. Each chunk runs through all layers on one thread with that
/// thread's workspace.
pub(crate) fn predict_row_split<P: Predictor + ?Sized>(
    model: &P,
    pool: &ThreadPool,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let rows = x.nrows();
    let caller_on_pool = pool.current_thread_index().is_some();
    let tasks = row_split_tasks(model, rows, pool.current_num_threads(), caller_on_pool);
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
    // Whole blocks of even size, the same number per task, several per task when chunks
    // may be that small.
    let blocks = rows.div_ceil(model.chunk_rows().max(1));
    let finest = rows / model.min_chunk_rows().max(1);
    let per_task = blocks
        .div_ceil(tasks)
        .max(CHUNKS_PER_TASK.min(finest / tasks).max(1));
    // Chunks are handed out under a lock (a futex: no allocation), one per claim; a claim costs
    // far less than the chunk's compute.
    let chunks = Mutex::new(EvenChunks::new(x, out, per_task * tasks));
    pool.install(|| fork(model, &mut workspaces[..tasks], &chunks))
}

/// Tasks a row split of `rows` rows runs on `threads` threads: one per
/// [`Predictor::parallel_min_rows`] rows ([`Predictor::pool_parallel_min_rows`] when the caller
/// is a thread of the pool), at least one, at most one per thread.
pub(crate) fn row_split_tasks<P: Predictor + ?Sized>(
    model: &P,
    rows: usize,
    threads: usize,
    caller_on_pool: bool,
) -> usize {
    let min_rows = if caller_on_pool {
        model.pool_parallel_min_rows()
    } else {
        model.parallel_min_rows()
    };
    (rows / min_rows.max(1)).clamp(1, threads.max(1))
}

/// Chunks per task of a row split, when [`Predictor::min_chunk_rows`] allows: with one chunk
/// per task a batch waits for the slowest thread, and on a shared machine one of two vCPUs
/// often runs a third slower for seconds (mnist-mlp, 16-row chunks on two threads: 225 µs on
/// one, 345 µs on the other, call after call). Calls alternated with one chunk per task (Zen 3,
/// two threads): cutting down to 4 rows gained 1.04–1.48× at batch 128 while a vCPU was slow
/// and lost 3–5 % at batch 32 (6-row chunks); down to 16 rows, mnist-mlp's minimum, batches
/// 32–256 stayed within ±4 % while both vCPUs ran evenly.
const CHUNKS_PER_TASK: usize = 3;

/// A chunk of a row-split batch: its first row, its input rows, its output rows.
type Chunk<'x, 'o> = (usize, ArrayView2<'x, f32>, ArrayViewMut2<'o, f32>);

/// The rows of a batch in `count` consecutive chunks whose sizes differ by at most one.
struct EvenChunks<'x, 'o> {
    /// The rows not yet handed out.
    x: ArrayView2<'x, f32>,
    /// Their output rows (taken out and put back around each split).
    out: Option<ArrayViewMut2<'o, f32>>,
    /// The batch row where `x` starts.
    start: usize,
    /// Chunks handed out.
    taken: usize,
    count: usize,
}

impl<'x, 'o> EvenChunks<'x, 'o> {
    fn new(x: ArrayView2<'x, f32>, out: ArrayViewMut2<'o, f32>, count: usize) -> Self {
        EvenChunks {
            x,
            out: Some(out),
            start: 0,
            taken: 0,
            count,
        }
    }
}

impl<'x, 'o> Iterator for EvenChunks<'x, 'o> {
    type Item = Chunk<'x, 'o>;

    fn next(&mut self) -> Option<Chunk<'x, 'o>> {
        if self.taken == self.count {
            return None;
        }
        self.taken += 1;
        let rows = self.start + self.x.nrows();
        let len = rows * self.taken / self.count - self.start;
        let (x, x_rest) = self.x.split_at(Axis(0), len);
        let (out, out_rest) = self.out.take()?.split_at(Axis(0), len);
        self.x = x_rest;
        self.out = Some(out_rest);
        let start = self.start;
        self.start += len;
        Some((start, x, out))
    }
}

/// Starts one task per workspace by splitting the workspaces in halves recursively with
/// `rayon::join`, which keeps its jobs on the stack: no allocation per batch.
fn fork<'x, 'o, P, I>(model: &P, workspaces: &mut [Workspace], chunks: &Mutex<I>) -> Result<()>
where
    P: Predictor + ?Sized,
    // The chunks not yet claimed.
    I: Iterator<Item = Chunk<'x, 'o>> + Send,
{
    if let [workspace] = workspaces {
        return drain_chunks(model, workspace, chunks);
    }
    let half = workspaces.len() / 2;
    let (ws_left, ws_right) = workspaces.split_at_mut(half);
    let (left, right) = rayon::join(
        || fork(model, ws_left, chunks),
        || fork(model, ws_right, chunks),
    );
    match (left, right) {
        (Err(a), Err(b)) => Err(earlier_error(a, b)),
        (left, right) => left.and(right),
    }
}

/// One task: claims and runs chunks until none is left. It keeps going after an error so that
/// the error finally reported (the earliest row's) does not depend on which thread got where.
fn drain_chunks<'x, 'o, P, I>(model: &P, workspace: &mut Workspace, chunks: &Mutex<I>) -> Result<()>
where
    P: Predictor + ?Sized,
    I: Iterator<Item = Chunk<'x, 'o>> + Send,
{
    let mut first_error: Option<Error> = None;
    loop {
        // A panic in another task poisons the lock; the data (an iterator) is still sound.
        let next = chunks.lock().unwrap_or_else(|e| e.into_inner()).next();
        let Some((start, x, out)) = next else {
            break;
        };
        if let Err(e) = model.predict_into(workspace, x, out) {
            let e = match e {
                Error::NonFiniteInput { row, col, value } => Error::NonFiniteInput {
                    row: row + start,
                    col,
                    value,
                },
                other => other,
            };
            first_error = Some(match first_error {
                Some(earlier) => earlier_error(earlier, e),
                None => e,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Of two errors from the same batch, the one about the earlier row (else the first).
fn earlier_error(a: Error, b: Error) -> Error {
    match (&a, &b) {
        (Error::NonFiniteInput { row: ra, .. }, Error::NonFiniteInput { row: rb, .. })
            if rb < ra =>
        {
            b
        }
        _ => a,
    }
}

/// Runs `x` through `model` on `pool` into `out`: the free-function spelling of
/// [`Predictor::predict_batch_into`].
///
/// Called from outside the pool, each call is handed to a pool thread and the caller sleeps
/// until it is done (two thread wake-ups per call). A loop that makes many calls can run inside
/// [`ThreadPool::install`] instead: the calling thread is then one of the pool's and computes a
/// share of every batch (measured 1.37× on mnist-mlp batch 8 with 2 threads).
///
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[8, 16, 4], Activation::Relu, Activation::Identity, 1);
/// let compiled = model.compile(&CompileOptions::default())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks cover every row once, in order, and differ in size by at most one row.
    #[test]
    fn even_chunks_cover_the_rows() {
        for (rows, count) in [(32, 6), (7, 3), (5, 5), (128, 4), (1, 1), (100, 7)] {
            let x = Array2::from_shape_fn((rows, 2), |(r, _)| r as f32);
            let mut out = Array2::<f32>::zeros((rows, 1));
            let chunks = EvenChunks::new(x.view(), out.view_mut(), count);
            let mut next_row = 0;
            let mut sizes = Vec::new();
            for (start, xc, oc) in chunks {
                assert_eq!(start, next_row);
                assert_eq!(xc.nrows(), oc.nrows());
                assert_eq!(xc[[0, 0]], start as f32);
                next_row += xc.nrows();
                sizes.push(xc.nrows());
            }
            assert_eq!(next_row, rows);
            assert_eq!(sizes.len(), count);
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{rows} rows in {count}: {sizes:?}");
        }
    }
}
