//! The measured constants that set how a compiled model splits and blocks its work. Each one
//! keeps the measurement and probe that chose it; none is public (experts override them through
//! [`crate::Tuning`]).

/// Work (in FLOPs) per task below which a batch runs inline rather than being forked over a pool.
///
/// Measured with `cargo bench --bench parallel_cutoff` (inline on one thread vs forced over two,
/// idle 2-core AMD Zen 3): tiny-mlp broke even at 1.3 MFLOP per batch (1024 rows) and gained
/// 1.18× at 2.6 MFLOP; below that the fork and join (≈ 20 µs there) dominates. So a task must
/// carry about 1 MFLOP.
pub(crate) const PARALLEL_MIN_FLOPS: u64 = 1_000_000;

/// How much less work a task needs when the caller is a thread of the pool: its fork wakes
/// nobody while the other threads are still spinning from the last call. `cargo bench --bench
/// parallel_cutoff`, two threads, caller on the pool, forked against inline: tiny-mlp
/// 1.23–1.24× at 512 rows (330 kFLOP per task), 0.87 / 1.30 at 256 (160 k), 0.83–0.87 at 128;
/// 300→257→129→7 1.30–1.39× at 4–8 rows (0.4–0.9 MFLOP per task). From outside the pool the
/// same forks ran at 0.2–0.4×. The price is paid by a pool thread that sleeps between calls, so
/// that the other threads have gone to sleep too: against 1 MFLOP per task, tiny-mlp at 512 /
/// 1024 rows and the 300→257→129→7 model at 4 rows ran 1.37 / 1.44 / 1.57× with calls back to
/// back, 0.80 / 0.93 / 0.74× with 0.3 ms between calls and 0.79 / 0.88 / 0.96× with 2 ms. A
/// caller like that sets [`crate::Tuning::pool_parallel_min_flops`] to the outside value.
pub(crate) const POOL_FORK_DISCOUNT: u64 = 4;

/// How much less work per thread a layer split by columns needs when the caller is a thread of
/// the pool, for the same reason. mnist-mlp batch 1 on two threads (`split_cutoff`, 250 k against
/// 500 k, both hidden layers then split): 1.31–1.60× with calls back to back, 0.91–0.93× with
/// 0.3–2 ms sleeps between them; from outside the pool the same split ran at 0.46–0.52×.
pub(crate) const POOL_SPLIT_DISCOUNT: u64 = 2;

/// Work (in FLOPs) per thread of one layer split by output columns: a layer of a small batch is
/// split over one thread per this much work.
///
/// `cargo bench --bench split_cutoff -- MODEL` (2 threads, Zen 3, cut-offs alternated in blocks
/// of 100 calls, 15 rounds), speed against 2 MFLOP: mnist-mlp at 500 kFLOP 1.51–1.56× at batch
/// 2, 1.15–1.19× at 3–6, even at 1 and ≥ 8, with the caller on a pool thread; 1.45–1.47× and
/// 1.10–1.19× from outside the pool. At 250 kFLOP batch 1 splits too: 1.31–1.60× from a pool
/// thread calling back to back, but 0.91–0.93× when it sleeps 0.3–2 ms between calls (the other
/// thread must be woken each time), and 0.46–0.52× from outside the pool; `random:300,257,129,7`
/// at 4–6 rows swung from 0.78–0.83× to 1.11–1.19× between runs. So 500 k, halved for a caller
/// on the pool ([`POOL_SPLIT_DISCOUNT`]).
pub(crate) const SPLIT_MIN_FLOPS: u64 = 500_000;

/// How many times f32's work per task ([`PARALLEL_MIN_FLOPS`]) full int8
/// ([`crate::Precision::Int8Full`]) needs before a call from outside the pool forks: its integer
/// products run a layer 3.2–8× faster than f32 on an AMD Zen 5 (VNNI; 7–13× on an Intel Xeon's
/// AMX), so a fork that pays for f32 work costs more than the same work in full int8. mnist-mlp in full int8 on two threads (Zen 5, `cargo bench --bench
/// split_cutoff -- DIR 1,2,4,8,16 ... 15 int8-full`), from outside the pool: 2 and 4 rows
/// forked by rows took 23–25 µs a call, one row inline 3.8 µs.
pub(crate) const INT8_FULL_FORK_FACTOR: u64 = 8;

/// [`RESIDENT_ROWS_PER_THREAD`] for full int8: none. mnist-mlp on two threads of an AMD Zen 5,
/// the caller on the pool (`split_cutoff`, as above): split by columns, one row took 7.2 µs a
/// call against 3.8 whole, and 4 / 8 / 16 rows 1.04 / 1.10 / 1.19× longer than forked by rows.
pub(crate) const INT8_FULL_RESIDENT_ROWS_PER_THREAD: usize = 0;

/// With weights streamed from DRAM, batches of at most this many rows per thread are split
/// across threads by output columns, layer by layer: a row split makes every thread read all the
/// weights, a column split reads each once. wide-mlp on 2 threads (Zen 3, the two splits
/// alternated in one process): columns 1.25× at 1 row, 1.2× at 8, 1.02–1.05× at 32–64,
/// 1.01–1.17× at 128; even or mixed from 256.
pub(crate) const STREAMED_ROWS_PER_THREAD: usize = 64;

/// The same for weights that stay in cache, where the column split saves only cache traffic.
/// mnist-mlp on 2 threads, 16 rows: columns 1.18× faster with the splits alternated in blocks of
/// 20 calls, 1.15× in separate processes, rows 1.05× with calls alternated one by one (which
/// evicts each split's cache state); from 32 rows the row split is as fast or faster (1.03×).
pub(crate) const RESIDENT_ROWS_PER_THREAD: usize = 8;

/// How much longer, in percent, than the row split's the column split's critical path may be
/// and still be chosen when the weights outgrow one core's L2: the column split then reads each
/// weight from L3 once, the row split once per thread, and it runs more rows per register tile.
/// A model whose last layer is a softmax (never split) needs this to choose columns at all where
/// the hidden layers split evenly (mnist-mlp: 0.3–0.8 % longer at 2–16 rows, and 1.1–1.6× faster
/// at 2–6); 12 % leaves room for wider softmax heads.
pub(crate) const COLUMN_PATH_SLACK_PERCENT: u64 = 12;

/// Weight bytes up to which each thread of a row split holds all the weights in its own L2
/// (512 KiB per core on Zen 3, 1 MiB on Zen 4/5): the column split then saves no cache traffic,
/// and must shorten the critical path to be chosen. A 300→257→129→7 model (440 KB) on two
/// threads at 16 rows: columns (a path 0.7 % longer) 0.93–0.96× the speed of rows.
pub(crate) const L2_WEIGHT_BYTES: usize = 512 * 1024;

/// Activation bytes (two ping-pong buffers) a block of rows may take at least, so blocks stay
/// in L2 (512 KiB per core on Zen 3, 1 MiB on Zen 4/5); on cores with a larger L2, half of it
/// (see [`l2_block_rows`]).
pub(crate) const BLOCK_BYTES: usize = 512 * 1024;

/// Rows per block for weights that are not streamed: as many as keep the activations in
/// [`BLOCK_BYTES`] or half the L2, whichever is larger, 16 to 256, rounded down to whole register
/// tiles of `tile_rows`. Every block reads all the weights from L3 when they outgrow L2, so a
/// larger L2 is better spent on fewer blocks; and a block of whole tiles runs no short tiles but
/// at the end of the batch. mnist-mlp on Intel Xeon (AVX-512, 2 MiB L2), one thread, builds
/// interleaved: 80-row blocks against 83-row ones (9 tiles of 8 rows, then 6 + 5) 1.04× at 128
/// and 512 rows; 160-row blocks (1 MiB) 1.09× at 128 rows and 1.06× at 512. bf16 weights, which
/// widen each panel slice once per block, gain no more from taller blocks: mnist-mlp on an AMD
/// Zen 5 (1 MiB L2), one thread, `cargo bench --bench block_rows -- DIR bf16 128,512 0,160,240`:
/// 1.02× for 160 and 240 rows at both batch sizes.
pub(crate) fn l2_block_rows(max_width: usize, l2_bytes: usize, tile_rows: usize) -> usize {
    let bytes = BLOCK_BYTES.max(l2_bytes / 2);
    let rows = (bytes / (8 * max_width.max(1))).clamp(16, 256);
    (rows / tile_rows * tile_rows).max(1)
}

/// Weight bytes above which weights are streamed from DRAM (larger than a last-level cache
/// share): blocks then get at least [`STREAMED_BLOCK_ROWS`] rows, so that each weight byte
/// fetched serves enough FLOPs, even though the activations spill from L2 to L3; and kernels
/// prefetch each next panel. `cargo bench --bench prefetch_probe` (calls alternated, Zen 3) on
/// wide-mlp (100 MB of weights), 1 / 2 threads: 1.32 / 1.37× at batch 8, 1.14 / 1.11× at 32,
/// 1.03 / 1.04× at 128; on mnist-mlp (2.6 MB, L3-resident) 0.85× at batch 8 and 0.95–1.02× at
/// 32–128, so off there.
pub(crate) const STREAMED_WEIGHT_BYTES: usize = 8 * 1024 * 1024;

/// The smallest row chunk for cache-resident weights: mnist-mlp on one thread (Zen 3, minimum
/// of 350 calls) costs 14.5 µs per row in 6-row calls, 13.9 in 16-row and 13.7 in 64-row ones.
pub(crate) const MIN_CHUNK_ROWS: usize = 16;

/// The smallest row chunk for weights that outgrow one core's L2 but not the L3 (mnist-mlp):
/// every chunk streams all the weights from L3 again, and its first row tile of each panel waits
/// for them. mnist-mlp on two threads, Zen 5, one chunk per task against three (calls
/// alternated): 1.06× at 96 and 128 rows (16- and 21-row chunks), 1.01× at 256 (43-row chunks).
pub(crate) const L3_MIN_CHUNK_ROWS: usize = 40;

/// Rows per block when weights are streamed from DRAM.
pub(crate) const STREAMED_BLOCK_ROWS: usize = 256;
