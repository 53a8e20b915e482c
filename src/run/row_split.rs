//! The row split: a batch cut into even chunks of rows that one task per pool thread claims
//! and runs through all layers, so a slowed thread takes fewer chunks.

use std::sync::{Mutex, MutexGuard};

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::error::{Error, Result};
use crate::predictor::Predictor;
use crate::run::fork::Fork;
use crate::workspace::Workspace;

/// Runs `x` into `out` in `tasks` tasks on `fork` (checked by the caller: at least two tasks,
/// at least that many workspaces). The rows are cut into even chunks of about `chunk_rows`, the
/// same number for every task and at least [`CHUNKS_PER_TASK`] each while chunks keep
/// `min_chunk_rows` rows, and each task takes the next unclaimed chunk until none is left: a
/// thread slowed down by something else on its core (other processes, a busy hypervisor) takes
/// fewer chunks instead of holding the whole batch back. Each chunk runs through all layers on
/// one thread with that thread's workspace.
pub(crate) fn predict_row_split<P: Predictor + ?Sized>(
    model: &P,
    fork: Fork<'_>,
    workspaces: &mut [Workspace],
    x: ArrayView2<'_, f32>,
    out: ArrayViewMut2<'_, f32>,
    (tasks, chunk_rows, min_chunk_rows): (usize, usize, usize),
) -> Result<()> {
    let rows = x.nrows();
    // Whole blocks of even size, the same number per task, several per task when chunks
    // may be that small.
    let blocks = rows.div_ceil(chunk_rows.max(1));
    let finest = rows / min_chunk_rows.max(1);
    let per_task = blocks
        .div_ceil(tasks)
        .max(CHUNKS_PER_TASK.min(finest / tasks).max(1));
    // Chunks and workspaces are handed out under locks (futexes: no allocation), one per
    // claim; a claim costs far less than the chunk's compute.
    let chunks = Mutex::new(EvenChunks::new(x, out, per_task * tasks));
    let idle_workspaces = Mutex::new(workspaces[..tasks].iter_mut());
    let first_error = Mutex::new(None);
    fork.run(tasks, &|_| {
        let Some(workspace) = lock(&idle_workspaces).next() else {
            return;
        };
        if let Err(e) = drain_chunks(model, workspace, &chunks) {
            let mut first = lock(&first_error);
            *first = Some(match first.take() {
                Some(earlier) => earlier_error(earlier, e),
                None => e,
            });
        }
    });
    let first_error = first_error.into_inner().unwrap_or_else(|e| e.into_inner());
    first_error.map_or(Ok(()), Err)
}

/// Locks `m`; a panic in another task poisons it, but what it guards (an iterator, an error)
/// is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Chunks per task of a row split, when the smallest chunk size allows: with one chunk
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

/// One task: claims and runs chunks until none is left. It keeps going after an error so that
/// the error finally reported (the earliest row's) does not depend on which thread got where.
fn drain_chunks<'x, 'o, P, I>(model: &P, workspace: &mut Workspace, chunks: &Mutex<I>) -> Result<()>
where
    P: Predictor + ?Sized,
    I: Iterator<Item = Chunk<'x, 'o>> + Send,
{
    let mut first_error: Option<Error> = None;
    loop {
        let next = lock(chunks).next();
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

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
