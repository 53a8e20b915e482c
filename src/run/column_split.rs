//! One layer split by output columns over several threads: each thread computes its own share of
//! the columns first, then takes what is left of the others'.

use std::sync::Mutex;

use crate::kernels::{KernelKind, LayerInput, RowsMut};

use crate::plan::CompiledLayer;
use crate::run::fork::Fork;

/// Parts per thread. A thread that finishes its own parts takes the others' last ones, so a
/// thread on a slower vCPU (on shared hosts one vCPU can run at half to two thirds of its speed
/// for seconds while the other does not) computes fewer columns instead of making the others
/// wait. wide-mlp on 2 threads, against one part per thread (Zen 3, alternated in blocks of calls
/// in one process): 1.14× at 32 rows, 1.09× at 128, 0.98× at 8; mnist-mlp 0.99–1.02× at 8–32.
/// Each part is a run of whole panels, so each weight is still read by one thread only.
const PARTS_PER_THREAD: usize = 4;

/// Most parts one layer is cut into (a fixed array, so splitting allocates nothing).
const MAX_PARTS: usize = 64;

/// Panels per part unit: a one-row tile covers four panels at once (see `kernels::generic`), so
/// parts are multiples of four panels where the layer is wide enough.
const UNIT_PANELS: usize = 4;

/// `out = act(x · W + b)` for one layer, its output columns cut into panel runs that `threads`
/// workers of `fork` share. Each part writes a disjoint column range of the same rows with the
/// same FMA chains, so the split never changes a bit.
pub(crate) fn dense_columns_split(
    kernel: KernelKind,
    x: LayerInput<'_>,
    layer: &CompiledLayer,
    out: RowsMut<'_>,
    threads: usize,
    fork: Fork<'_>,
) {
    let nr = layer.weights.nr();
    let panels = out.cols().div_ceil(nr);
    // Narrow layers: smaller units rather than fewer threads.
    let unit = UNIT_PANELS.min(panels / threads.max(1)).max(1);
    let parts = (threads * PARTS_PER_THREAD)
        .min(panels.div_ceil(unit))
        .min(MAX_PARTS);
    let threads = threads.min(parts);
    if threads <= 1 {
        kernel.dense_layer_columns(x, &layer.weights, 0, &layer.bias, layer.activation, out);
        return;
    }
    let claims = Mutex::new(Claims::new(out, nr * unit, parts, threads));
    let work = |worker| {
        loop {
            // A panic in another worker poisons the lock; the parts left are still sound.
            let next = claims
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .claim(worker);
            let Some((col0, part)) = next else { break };
            kernel.dense_layer_columns(
                x,
                &layer.weights,
                col0,
                &layer.bias,
                layer.activation,
                part,
            );
        }
    };
    fork.run(threads, &work);
}

/// A block's output columns cut into parts of whole units (`unit` columns), as even as the
/// units allow, each part a first column and its view; worker `i` owns an even share of them.
struct Claims<'a> {
    parts: [Option<(usize, RowsMut<'a>)>; MAX_PARTS],
    count: usize,
    workers: usize,
}

impl<'a> Claims<'a> {
    /// `count` parts (at most [`MAX_PARTS`] and the number of units) for `workers` workers.
    fn new(out: RowsMut<'a>, unit: usize, count: usize, workers: usize) -> Self {
        let mut parts = [const { None }; MAX_PARTS];
        let mut rest = out;
        let mut col0 = 0;
        for (i, slot) in parts.iter_mut().enumerate().take(count) {
            let cols = rest.cols();
            let take = if i + 1 == count {
                cols
            } else {
                ((cols.div_ceil(unit) / (count - i)).max(1) * unit).min(cols)
            };
            let (part, tail) = rest.split_columns(take);
            *slot = Some((col0, part));
            rest = tail;
            col0 += take;
        }
        Claims {
            parts,
            count,
            workers,
        }
    }

    /// The next part for `worker`: its own parts in order, then the others' from the last one
    /// back (the parts their owners would reach last).
    fn claim(&mut self, worker: usize) -> Option<(usize, RowsMut<'a>)> {
        let own = worker * self.count / self.workers..(worker + 1) * self.count / self.workers;
        let next = own
            .clone()
            .find(|&p| self.parts[p].is_some())
            .or_else(|| (0..self.count).rev().find(|&p| self.parts[p].is_some()))?;
        self.parts[next].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_columns_on_unit_boundaries() {
        for (cols, unit, count) in [(512, 64, 8), (4096, 64, 8), (10, 16, 1), (130, 64, 3)] {
            let mut buf = vec![0.0f32; 2 * cols];
            let mut claims = Claims::new(RowsMut::new(&mut buf, 2, cols, cols), unit, count, 1);
            let mut next_col = 0;
            let mut parts = 0;
            while let Some((col0, mut part)) = claims.claim(0) {
                assert_eq!(col0, next_col, "one worker takes the parts in order");
                assert_eq!(col0 % unit, 0, "part off a unit boundary");
                assert!(part.cols() > 0, "empty part");
                part.row_mut(1).fill(1.0);
                next_col += part.cols();
                parts += 1;
            }
            assert_eq!((next_col, parts), (cols, count));
            assert!(buf[cols..].iter().all(|&v| v == 1.0), "row 1 fully written");
            assert!(buf[..cols].iter().all(|&v| v == 0.0), "row 0 untouched");
        }
    }

    #[test]
    fn workers_take_their_own_parts_first_then_the_others_last_ones() {
        let mut buf = vec![0.0f32; 8 * 16];
        let mut claims = Claims::new(RowsMut::new(&mut buf, 1, 128, 128), 16, 8, 2);
        let mut first_col = |worker| claims.claim(worker).map(|(col0, _)| col0);
        // Worker 1 owns parts 4..8 (columns 64..128), worker 0 parts 0..4.
        assert_eq!(first_col(1), Some(64));
        assert_eq!(first_col(0), Some(0));
        assert_eq!(first_col(1), Some(80));
        assert_eq!(first_col(1), Some(96));
        assert_eq!(first_col(1), Some(112));
        // Worker 1 is done with its own: it takes worker 0's last part, worker 0 goes on in order.
        assert_eq!(first_col(1), Some(48));
        assert_eq!(first_col(0), Some(16));
        assert_eq!(first_col(0), Some(32));
        assert_eq!(first_col(0), None);
        assert_eq!(first_col(1), None);
    }
}
