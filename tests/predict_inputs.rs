//! Bad and unusual inputs to a compiled model: typed errors, never a panic or a silent wrong answer.

mod common;

use common::input;
use densebatch::NonFiniteInput;
use densebatch::Tuning;
use densebatch::prelude::*;
use ndarray::{Array2, s};

fn compiled(options: CompileOptions) -> (Model, CompiledModel) {
    let model = Model::random(&[6, 9, 4], Activation::Relu, Activation::Softmax, 11);
    let compiled = model.compile_with(&options).unwrap();
    (model, compiled)
}

#[test]
fn wrong_width_is_refused() {
    let (_, m) = compiled(CompileOptions::default());
    let err = m.predict(Array2::zeros((3, 5)).view()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputWidth {
                expected: 6,
                got: 5
            }
        ),
        "{err}"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut ws = m.new_workspaces(2);
    let err = predict_batch(
        &m,
        &pool,
        &mut ws,
        Array2::zeros((5000, 7)).view(),
        Array2::zeros((5000, 4)).view_mut(),
    );
    assert!(matches!(
        err,
        Err(Error::InputWidth {
            expected: 6,
            got: 7
        })
    ));
}

#[test]
fn wrong_output_shape_and_too_few_workspaces() {
    let (_, m) = compiled(CompileOptions::default());
    let mut ws = m.new_workspace();
    let err = m.predict_into(
        &mut ws,
        Array2::zeros((3, 6)).view(),
        Array2::zeros((3, 5)).view_mut(),
    );
    assert!(matches!(
        err,
        Err(Error::OutputShape {
            expected: [3, 4],
            got: [3, 5]
        })
    ));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut one = m.new_workspaces(1);
    let x = Array2::zeros((100_000, 6));
    let err = predict_batch(
        &m,
        &pool,
        &mut one,
        x.view(),
        Array2::zeros((100_000, 4)).view_mut(),
    );
    assert!(
        matches!(err, Err(Error::TooFewWorkspaces { needed: 2, got: 1 })),
        "{err:?}"
    );
}

#[test]
fn empty_batch_gives_empty_output() {
    let (_, m) = compiled(CompileOptions::default());
    let y = m.predict(Array2::zeros((0, 6)).view()).unwrap();
    assert_eq!(y.dim(), (0, 4));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut ws = m.new_workspaces(2);
    predict_batch(
        &m,
        &pool,
        &mut ws,
        Array2::zeros((0, 6)).view(),
        Array2::zeros((0, 4)).view_mut(),
    )
    .unwrap();
}

/// The error `predict_batch` gives for `x` on a pool of `threads`.
fn batch_error(m: &CompiledModel, threads: usize, x: &Array2<f32>) -> Error {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut ws = m.new_workspaces(threads);
    let mut out = Array2::zeros((x.nrows(), m.output_width()));
    predict_batch(m, &pool, &mut ws, x.view(), out.view_mut()).unwrap_err()
}

#[test]
fn non_finite_input_rejected_by_default_with_its_position() {
    let (_, m) =
        compiled(CompileOptions::default().tuning(Tuning::default().parallel_min_flops(1)));
    let mut x = input(300, 6, 1);
    x[[250, 3]] = f32::NAN;
    let err = m.predict(x.view()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteInput {
                row: 250,
                col: 3,
                ..
            }
        ),
        "{err}"
    );
    // Through the pool the row still refers to the whole batch.
    let err = batch_error(&m, 2, &x);
    assert!(
        matches!(
            err,
            Error::NonFiniteInput {
                row: 250,
                col: 3,
                ..
            }
        ),
        "{err}"
    );
    x[[250, 3]] = f32::NEG_INFINITY;
    assert!(matches!(
        m.predict(x.view()),
        Err(Error::NonFiniteInput { row: 250, .. })
    ));
}

#[test]
fn the_earliest_bad_row_is_reported_whatever_the_threads() {
    // Small blocks: a 300-row batch becomes many chunks claimed by whichever thread is free.
    let (_, m) = compiled(
        CompileOptions::default()
            .block_rows(8)
            .tuning(Tuning::default().parallel_min_flops(1)),
    );
    let mut x = input(300, 6, 1);
    for row in [290, 97, 41, 180] {
        x[[row, 2]] = f32::NAN;
    }
    for threads in 1..=4 {
        for _ in 0..20 {
            let err = batch_error(&m, threads, &x);
            assert!(
                matches!(
                    err,
                    Error::NonFiniteInput {
                        row: 41,
                        col: 2,
                        ..
                    }
                ),
                "{threads} threads: {err}"
            );
        }
    }
}

#[test]
fn non_finite_input_propagates_when_asked() {
    let (_, m) = compiled(CompileOptions::default().non_finite_input(NonFiniteInput::Propagate));
    let mut x = input(3, 6, 2);
    x[[1, 0]] = f32::NAN;
    let y = m.predict(x.view()).unwrap();
    assert!(y.row(1).iter().all(|v| v.is_nan()), "{y}");
    assert!(
        y.row(0)
            .iter()
            .chain(y.row(2).iter())
            .all(|v| v.is_finite())
    );
}

#[test]
fn batches_larger_than_the_workspace_are_processed_in_blocks() {
    let (model, m) = compiled(CompileOptions::default().block_rows(7));
    assert_eq!(m.new_workspace().rows(), 7);
    let x = input(100, 6, 3);
    let y = m.predict(x.view()).unwrap();
    assert_eq!(y, model.predict_reference(x.view()).unwrap());
}

#[test]
fn strided_inputs_and_outputs_are_handled() {
    let (model, m) = compiled(CompileOptions::default());
    let wide = input(40, 12, 4);
    let x = wide.slice(s![..;2, ..;2]); // every other row and column: not contiguous
    let mut out = Array2::<f32>::from_elem((20, 8), f32::NAN);
    let mut ws = m.new_workspace();
    m.predict_into(&mut ws, x, out.slice_mut(s![.., ..;2]))
        .unwrap();
    let expected = model.predict_reference(x).unwrap();
    assert_eq!(out.slice(s![.., ..;2]), expected);
    assert!(
        out.slice(s![.., 1..;2]).iter().all(|v| v.is_nan()),
        "untouched columns stay untouched"
    );
}

#[test]
fn column_ranges_of_wider_arrays_are_handled() {
    // Each row contiguous, the array not: rows are copied whole.
    let (model, m) = compiled(CompileOptions::default());
    let wide = input(30, 10, 5);
    let x = wide.slice(s![.., 3..9]);
    let mut out = Array2::<f32>::from_elem((30, 7), f32::NAN);
    let mut ws = m.new_workspace();
    m.predict_into(&mut ws, x, out.slice_mut(s![.., 2..6]))
        .unwrap();
    assert_eq!(out.slice(s![.., 2..6]), model.predict_reference(x).unwrap());
    assert!(
        out.slice(s![.., ..2]).iter().all(|v| v.is_nan())
            && out.slice(s![.., 6..]).iter().all(|v| v.is_nan()),
        "columns outside the range stay untouched"
    );
}

#[test]
fn a_workspace_for_a_narrower_model_is_refused() {
    let (_, m) = compiled(CompileOptions::default());
    let small = Model::random(&[2, 3], Activation::Relu, Activation::Identity, 1)
        .compile()
        .unwrap();
    let mut ws = small.new_workspace();
    let err = m.predict_into(
        &mut ws,
        Array2::zeros((2, 6)).view(),
        Array2::zeros((2, 4)).view_mut(),
    );
    assert!(matches!(err, Err(Error::WorkspaceTooSmall { .. })));
}

#[test]
fn a_full_int8_model_refuses_a_workspace_without_room_for_codes() {
    let options = CompileOptions::default().precision(densebatch::Precision::Int8Full);
    let (_, m) = compiled(options);
    let mut f32_workspace = compiled(CompileOptions::default()).1.new_workspace();
    let (x, mut out) = (Array2::zeros((2, 6)), Array2::zeros((2, 4)));
    let err = m.predict_into(&mut f32_workspace, x.view(), out.view_mut());
    assert!(
        matches!(err, Err(Error::WorkspaceWithoutCodes { needed, got: 0 }) if needed > 0),
        "{err:?}"
    );
    let mut own = m.new_workspace();
    m.predict_into(&mut own, x.view(), out.view_mut()).unwrap();
    assert_eq!(own.bytes(), m.workspace_bytes());
}
