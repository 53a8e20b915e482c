//! `predict_into` and `predict_batch` allocate nothing: checked with a counting global allocator.
//! Calls that enter a rayon pool from outside it share rayon's job queue, which takes one block
//! per 63 calls; that much is allowed and no more.
//! One test only, so no other test allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::Array2;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn predicting_does_not_allocate() {
    predict_into_does_not_allocate();
    predict_batch_does_not_allocate_on_either_split();
    session_predict_into_does_not_allocate();
}

fn predict_into_does_not_allocate() {
    for (widths, out_act) in [
        (vec![784, 512, 512, 10], Activation::Softmax),
        (vec![16, 32, 4], Activation::Identity),
        (vec![300, 257, 129, 7], Activation::Sigmoid),
    ] {
        let model = Model::random(&widths, Activation::Relu, out_act, 1);
        let compiled = model
            .compile_with(&CompileOptions::default().block_rows(32))
            .unwrap();
        let mut ws = compiled.new_workspace();
        for batch in [1, 31, 32, 33, 200] {
            let x = Array2::from_elem((batch, widths[0]), 0.25f32);
            let mut y = Array2::zeros((batch, compiled.output_width()));
            compiled
                .predict_into(&mut ws, x.view(), y.view_mut())
                .unwrap();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            compiled
                .predict_into(&mut ws, x.view(), y.view_mut())
                .unwrap();
            let after = ALLOCATIONS.load(Ordering::SeqCst);
            assert_eq!(after - before, 0, "{widths:?} batch {batch} allocated");
            assert!(y.iter().all(|v| v.is_finite()));
        }
    }
}

/// On a two-thread pool, once every batch size has run (a pool thread's first job may allocate
/// its thread-local state): the row split and the column split (forced by
/// `column_split_rows_per_thread`), in one block and in several.
fn predict_batch_does_not_allocate_on_either_split() {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Gelu,
        Activation::Softmax,
        2,
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for columns in [0, 64] {
        let compiled = model
            .compile_with(
                &CompileOptions::default().block_rows(32).tuning(
                    Tuning::default()
                        .parallel_min_flops(1)
                        .split_min_flops(1)
                        .column_split_rows_per_thread(columns),
                ),
            )
            .unwrap();
        let mut workspaces = compiled.new_workspaces(2);
        let mut round = |counted: bool| {
            let start = ALLOCATIONS.load(Ordering::SeqCst);
            for batch in [2, 31, 33, 100] {
                let x = Array2::from_elem((batch, 300), 0.25f32);
                let mut y = Array2::zeros((batch, compiled.output_width()));
                for _ in 0..3 {
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    predict_batch(&compiled, &pool, &mut workspaces, x.view(), y.view_mut())
                        .unwrap();
                    let after = ALLOCATIONS.load(Ordering::SeqCst);
                    if counted {
                        assert!(
                            after - before <= 1,
                            "columns {columns} batch {batch} allocated {} times",
                            after - before
                        );
                    }
                }
                assert!((y.row(0).sum() - 1.0).abs() < 1e-5);
            }
            // The round's own inputs and outputs: 2 allocations per batch size.
            ALLOCATIONS.load(Ordering::SeqCst) - start - 8
        };
        warm_up(&mut round);
        assert_within_injector_budget(round(true), 4 * 3, &format!("columns {columns}"));
    }
}

/// A session owns its helper threads and workspaces: once every batch size has run,
/// `predict_into` allocates nothing, on one thread (the caller's), two and three.
fn session_predict_into_does_not_allocate() {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Relu,
        Activation::Softmax,
        3,
    );
    let batches = [1, 8, 100, 700];
    for threads in [1, 2, 3] {
        let session = model.compile().unwrap().session(threads).unwrap();
        let inputs: Vec<_> = batches
            .iter()
            .map(|&batch| Array2::from_elem((batch, 300), 0.5f32))
            .collect();
        let mut outputs: Vec<_> = batches
            .iter()
            .map(|&batch| Array2::<f32>::zeros((batch, session.output_width())))
            .collect();
        let mut round = |counted: bool| {
            let start = ALLOCATIONS.load(Ordering::SeqCst);
            for (x, y) in inputs.iter().zip(&mut outputs) {
                for _ in 0..3 {
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    session.predict_into(x.view(), y.view_mut()).unwrap();
                    let after = ALLOCATIONS.load(Ordering::SeqCst);
                    if counted {
                        assert_eq!(
                            after - before,
                            0,
                            "session on {threads} threads, batch {} allocated",
                            x.nrows(),
                        );
                    }
                }
                assert!((y.row(y.nrows() - 1).sum() - 1.0).abs() < 1e-5);
            }
            ALLOCATIONS.load(Ordering::SeqCst) - start
        };
        warm_up(&mut round);
        assert_eq!(round(true), 0, "session on {threads} threads");
    }
}

/// Jobs sent into a rayon pool from outside it queue in its injector, which takes a new block of
/// 63 slots every 63 jobs: one allocation per 63 calls that is rayon's, not ours. Which call of a
/// round pays for it depends on how long warm-up took, so a round may hold one per 63 calls
/// (rounded up) and nothing more.
fn assert_within_injector_budget(allocations: usize, calls: usize, what: &str) {
    assert!(
        allocations <= calls.div_ceil(63),
        "{what}: {allocations} allocations in {calls} calls"
    );
}

/// Runs uncounted rounds until one allocates nothing (at most 100): a pool thread's first part in
/// a job sets up its thread-local state (rayon's, the epoch-based deque's), and on a busy machine a
/// thread may first take part many calls in.
fn warm_up(round: &mut impl FnMut(bool) -> usize) {
    for _ in 0..100 {
        if round(false) == 0 {
            return;
        }
    }
}
