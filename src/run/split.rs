//! The split policy, pure: for a batch of so many rows on so many threads, whether it runs
//! inline, by rows (how many tasks, what chunks) or layer by layer by output columns.

use crate::plan::{
    COLUMN_PATH_SLACK_PERCENT, CompiledLayer, CompiledModel, L3_MIN_CHUNK_ROWS, MIN_CHUNK_ROWS,
};
use crate::predictor::Split;

impl CompiledModel {
    /// How a batch of `rows` rows runs on `threads` threads (see [`Split`]).
    pub(crate) fn plan_split(&self, rows: usize, threads: usize, caller_on_pool: bool) -> Split {
        if self.splits_by_columns(rows, threads, caller_on_pool) {
            return Split::Columns;
        }
        match self.row_tasks(rows, threads, caller_on_pool) {
            1 => Split::Inline,
            tasks => Split::Rows {
                tasks,
                chunk_rows: self.block_rows,
                min_chunk_rows: self.min_chunk_rows(),
            },
        }
    }

    /// Tasks a row split of `rows` rows runs on `threads` threads: one per minimum rows of work
    /// (fewer for a caller on the pool), at least one, at most one per thread.
    fn row_tasks(&self, rows: usize, threads: usize, caller_on_pool: bool) -> usize {
        let min_rows = if caller_on_pool {
            self.pool_parallel_min_rows
        } else {
            self.parallel_min_rows
        };
        (rows / min_rows.max(1)).clamp(1, threads.max(1))
    }

    /// The smallest row chunk: small when the weights stay in L2 (each chunk reads them all
    /// again), larger when they come from L3, a whole block when they stream from DRAM.
    fn min_chunk_rows(&self) -> usize {
        if self.weights_streamed {
            self.block_rows
        } else if self.weights_fit_l2 {
            MIN_CHUNK_ROWS
        } else {
            L3_MIN_CHUNK_ROWS
        }
    }

    /// How many threads layer `layer` is split over (by output columns) for `rows` rows when
    /// `threads` are available: one per [`crate::Tuning::split_min_flops`] of the layer's work
    /// ([`crate::Tuning::pool_split_min_flops`] for a caller on the pool), never for a row-wise
    /// activation (softmax needs whole rows), at most one thread per panel.
    pub(crate) fn column_threads(
        &self,
        layer: &CompiledLayer,
        rows: usize,
        threads: usize,
        caller_on_pool: bool,
    ) -> usize {
        if threads <= 1 || layer.activation.is_row_wise() {
            return 1;
        }
        let panels = layer.weights.n().div_ceil(layer.weights.nr());
        if self.split_keeps_weights_in_l2(threads) {
            return threads.min(panels);
        }
        let min_flops = if caller_on_pool {
            self.pool_split_min_flops
        } else {
            self.split_min_flops
        };
        ((layer.flops(rows) / min_flops.max(1)) as usize)
            .min(threads)
            .min(panels)
            .max(1)
    }

    /// Whether a block of `rows` rows finishes sooner split layer by layer over output columns
    /// than split by rows; always, when some layer splits, if the options fixed the rows per
    /// thread of the column split. Weights streamed from DRAM: whenever a layer splits, since
    /// the column split moves each weight over the memory bus once, the row split once per
    /// thread. Weights in cache: when the column split's critical path (each layer's work over
    /// its threads, unsplit layers whole) is no longer than the row split's (the block's work
    /// over its tasks), or at most `COLUMN_PATH_SLACK_PERCENT` longer when the weights
    /// outgrow L2.
    fn columns_beat_rows(&self, rows: usize, threads: usize, caller_on_pool: bool) -> bool {
        let mut split = false;
        let mut column_path = 0;
        for layer in &self.layers {
            let layer_threads = self.column_threads(layer, rows, threads, caller_on_pool);
            split |= layer_threads > 1;
            column_path += layer.flops(rows) / layer_threads as u64;
        }
        if !split || self.weights_streamed || !self.compare_splits {
            return split;
        }
        let tasks = self.row_tasks(rows, threads, caller_on_pool) as u64;
        let row_path = rows as u64 * self.flops_per_sample / tasks;
        let slack = if self.weights_fit_l2 {
            0
        } else {
            COLUMN_PATH_SLACK_PERCENT
        };
        column_path * 100 <= row_path * (100 + slack)
    }

    /// Whether `predict_batch_into` splits a batch of `rows` rows by columns on `threads`
    /// threads, called from a thread of the pool or not. From outside the pool a fork wakes a
    /// pool thread and, at the end, the caller, so the batch must carry the row split's minimum
    /// work per task (a 300→257→129→7 model at 8 rows, 1.8 MFLOP: 0.56–0.65× the speed of
    /// running it inline).
    pub(crate) fn splits_by_columns(
        &self,
        rows: usize,
        threads: usize,
        caller_on_pool: bool,
    ) -> bool {
        rows <= self.column_split_rows_per_thread.saturating_mul(threads)
            && (caller_on_pool
                || rows as u64 * self.flops_per_sample >= threads as u64 * self.parallel_min_flops
                || self.split_keeps_weights_in_l2(threads))
            && self.columns_beat_rows(rows.min(self.block_rows), threads, caller_on_pool)
    }

    /// Whether splitting every layer by columns over `threads` threads keeps the weights in
    /// the threads' L2s from one call to the next: they outgrow one core's L2 but fit in three
    /// quarters of the pool's (the rest is for activations and code). Each layer is then split
    /// over every thread at any small batch, from any caller, since the wake-up costs less than
    /// reading the weights from L3: mnist-mlp (2.7 MB) at one row on two threads of an Intel
    /// Xeon with 2 MiB of L2 per core (`cargo bench --bench split_cutoff`), split from outside
    /// the pool 22 µs a call at two rows against 167 µs whole, and at one row from a pool thread
    /// 18 µs against 65 µs.
    pub(crate) fn split_keeps_weights_in_l2(&self, threads: usize) -> bool {
        threads > 1
            && self.weight_bytes > self.l2_bytes
            && self.weight_bytes.saturating_mul(4)
                <= threads.saturating_mul(self.l2_bytes).saturating_mul(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, CompileOptions, Model, Tuning};

    /// Plans as on a CPU with 512 KiB of L2 per core (Zen 3), whatever runs the test.
    fn zen3_l2() -> Tuning {
        Tuning::default().l2_bytes(512 << 10)
    }

    fn compiled(widths: &[usize], options: &CompileOptions) -> CompiledModel {
        Model::random(widths, Activation::Relu, Activation::Softmax, 1)
            .compile_with(options)
            .expect("compiles")
    }

    #[test]
    fn small_batches_of_an_l3_sized_model_split_by_columns_from_two_rows() {
        // 784→512→512→10 (2.6 MB): hidden layers of 0.8 and 0.5 MFLOP per row, which split at
        // one row only for a caller on the pool (250 kFLOP per thread).
        let model = compiled(
            &[784, 512, 512, 10],
            &CompileOptions::default().tuning(zen3_l2()),
        );
        assert!(model.splits_by_columns(1, 2, true));
        assert!(!model.splits_by_columns(1, 2, false), "one row stays whole");
        for caller_on_pool in [true, false] {
            for rows in [2, 3, 6, 16] {
                assert!(
                    model.splits_by_columns(rows, 2, caller_on_pool),
                    "{rows} rows"
                );
            }
            assert!(
                !model.splits_by_columns(17, 2, caller_on_pool),
                "past 8 rows per thread"
            );
            assert!(!model.splits_by_columns(2, 1, caller_on_pool), "one thread");
        }
    }

    #[test]
    fn an_l2_sized_model_splits_by_columns_only_where_the_path_is_shorter() {
        // 300→257→129→7 (440 KB): from a pool thread 8 rows fork by rows (4 per task, 0.9
        // MFLOP) and 16 too, which the column split (its softmax layer whole, the 129-wide layer
        // unsplit at 8 rows) does not beat; from outside, 8 rows are too little to wake the pool.
        let model = compiled(
            &[300, 257, 129, 7],
            &CompileOptions::default().tuning(zen3_l2()),
        );
        assert!(!model.splits_by_columns(8, 2, true));
        assert!(!model.splits_by_columns(8, 2, false));
        assert!(!model.splits_by_columns(16, 2, true));
        let forced = compiled(
            &[300, 257, 129, 7],
            &CompileOptions::default().tuning(zen3_l2().column_split_rows_per_thread(8)),
        );
        assert!(
            forced.splits_by_columns(16, 2, true),
            "a given rows limit is obeyed"
        );
    }

    #[test]
    fn streamed_weights_split_by_columns_whatever_the_path() {
        // 1100→2100→1000 (17.6 MB) with a softmax head: the unsplit last layer makes the
        // column path longer, but the row split would stream every weight once per thread.
        let model = compiled(
            &[1100, 2100, 1000],
            &CompileOptions::default().tuning(zen3_l2()),
        );
        assert!(model.weights_streamed);
        assert!(model.splits_by_columns(1, 2, false));
        assert!(model.splits_by_columns(128, 2, true));
        assert!(
            !model.splits_by_columns(129, 2, true),
            "past 64 rows per thread"
        );
    }

    #[test]
    fn a_caller_on_the_pool_forks_with_a_quarter_of_the_work() {
        // 300→257→129→7: 222 kFLOP per row (with bias and activation), so 1 MFLOP takes 5 rows
        // and 250 kFLOP 2.
        let model = compiled(
            &[300, 257, 129, 7],
            &CompileOptions::default().tuning(zen3_l2()),
        );
        assert_eq!(model.flops_per_sample(), 222_312);
        assert_eq!(model.parallel_min_rows, 5);
        assert_eq!(model.pool_parallel_min_rows, 2);
        let given = compiled(
            &[300, 257, 129, 7],
            &CompileOptions::default().tuning(zen3_l2().pool_parallel_min_flops(1_000_000)),
        );
        assert_eq!(given.pool_parallel_min_rows, 5);
    }

    #[test]
    fn full_int8_in_cache_never_splits_by_columns_and_forks_from_outside_with_more_work() {
        // 784→512→512→10 in full int8 (0.67 MB), 1.34 MFLOP a row: f32 splits its small batches
        // by columns (above); full int8 forks by rows instead, from outside the pool at 6 rows
        // per task (8 MFLOP), not 1.
        let int8_full = CompileOptions::default()
            .precision(crate::Precision::Int8Full)
            .tuning(Tuning::default().l2_bytes(1 << 20));
        let model = compiled(&[784, 512, 512, 10], &int8_full);
        assert!(!model.weights_streamed);
        for caller_on_pool in [true, false] {
            for rows in [1, 2, 8, 16] {
                assert!(
                    !model.splits_by_columns(rows, 2, caller_on_pool),
                    "{rows} rows"
                );
            }
        }
        assert_eq!(model.parallel_min_rows, 6);
        assert_eq!(model.pool_parallel_min_rows, 1);
        assert_eq!(model.plan_split(4, 2, false), Split::Inline);
        assert!(matches!(
            model.plan_split(4, 2, true),
            Split::Rows { tasks: 2, .. }
        ));
        // Streamed weights still split by columns: 1100→4100→1000 is 8.6 MB in full int8.
        let streamed = compiled(&[1100, 4100, 1000], &int8_full);
        assert!(streamed.weights_streamed);
        assert!(streamed.splits_by_columns(1, 2, false));
    }

    #[test]
    fn weights_that_fit_the_pools_l2s_split_at_one_row_from_any_caller() {
        // mnist-mlp's 2.7 MB with 2 MiB of L2 per core: split over two threads, each keeps its
        // 1.3 MB share in its L2; on one thread, or with 1 MiB per core, nothing changes.
        let l2 = |bytes| CompileOptions::default().tuning(Tuning::default().l2_bytes(bytes));
        let model = compiled(&[784, 512, 512, 10], &l2(2 << 20));
        assert!(model.split_keeps_weights_in_l2(2));
        assert!(!model.split_keeps_weights_in_l2(1));
        for caller_on_pool in [true, false] {
            assert!(model.splits_by_columns(1, 2, caller_on_pool));
            let hidden = &model.layers[..2];
            assert!(
                hidden
                    .iter()
                    .all(|l| model.column_threads(l, 1, 2, caller_on_pool) == 2)
            );
        }
        let smaller = compiled(&[784, 512, 512, 10], &l2(1 << 20));
        assert!(!smaller.split_keeps_weights_in_l2(2));
        assert!(!smaller.splits_by_columns(1, 2, false));
        let fits_one = compiled(&[300, 257, 129, 7], &l2(2 << 20));
        assert!(
            !fits_one.split_keeps_weights_in_l2(2),
            "fits one L2 already"
        );
    }
}
