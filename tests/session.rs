//! `Session`, the one-call way in: the same bits as the expert path (`predict_batch` on a pool of
//! one's own) and as each sample alone, whatever its thread count, and shareable by threads.

mod common;

use std::sync::Arc;

use common::input;
use densebatch::prelude::*;
use ndarray::{Array2, s};

#[test]
fn a_session_gives_the_bits_of_predict_batch_and_of_each_sample_alone() {
    let model = Model::random(
        &[300, 257, 129, 7],
        Activation::Gelu,
        Activation::Softmax,
        11,
    );
    let compiled = Arc::new(model.compile().unwrap());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut workspaces = compiled.new_workspaces(2);
    let sessions: Vec<Session> = [1, 2, 3]
        .iter()
        .map(|&threads| Session::new(Arc::clone(&compiled), threads).unwrap())
        .collect();
    for batch in [1, 2, 7, 64, 300] {
        let x = input(batch, 300, batch as u64);
        let mut expected = Array2::zeros((batch, 7));
        predict_batch(
            compiled.as_ref(),
            &pool,
            &mut workspaces,
            x.view(),
            expected.view_mut(),
        )
        .unwrap();
        for session in &sessions {
            let y = session.predict(x.view()).unwrap();
            assert_eq!(y, expected, "{} threads, batch {batch}", session.threads());
            let last = session.predict(x.slice(s![batch - 1.., ..])).unwrap();
            assert_eq!(last.row(0), expected.row(batch - 1));
        }
    }
    assert_eq!(
        sessions[1].predict(input(5, 300, 0).view()).unwrap(),
        model.predict_reference(input(5, 300, 0).view()).unwrap()
    );
}

#[test]
fn threads_sharing_a_session_each_get_their_own_answer() {
    let compiled = Model::random(&[16, 32, 4], Activation::Relu, Activation::Identity, 5)
        .compile()
        .unwrap();
    let expected: Vec<Array2<f32>> = (0..4)
        .map(|t| compiled.predict(input(40, 16, t).view()).unwrap())
        .collect();
    let session = Arc::new(compiled.session(2).unwrap());
    std::thread::scope(|scope| {
        for (t, expected) in expected.iter().enumerate() {
            let session = Arc::clone(&session);
            scope.spawn(move || {
                for _ in 0..200 {
                    let y = session.predict(input(40, 16, t as u64).view()).unwrap();
                    assert_eq!(&y, expected, "caller {t}");
                }
            });
        }
    });
}

/// A session's helpers spin between calls and sleep when idle; the caller does not wait for a
/// sleeping helper but takes its share. Either way every row's bits are those of the row alone,
/// whichever split (rows or columns) the machine's caches choose for the batch.
#[test]
fn a_session_gives_the_same_bits_whether_its_helpers_are_awake_or_asleep() {
    let compiled = Arc::new(
        Model::random(
            &[784, 512, 256, 10],
            Activation::Relu,
            Activation::Identity,
            9,
        )
        .compile()
        .unwrap(),
    );
    let sessions: Vec<Session> = [2, 3]
        .iter()
        .map(|&threads| Session::new(Arc::clone(&compiled), threads).unwrap())
        .collect();
    for batch in [1, 3, 8, 33, 200] {
        let x = input(batch, 784, batch as u64 + 100);
        let alone: Vec<Array2<f32>> = (0..batch)
            .map(|r| compiled.predict(x.slice(s![r..r + 1, ..])).unwrap())
            .collect();
        for session in &sessions {
            for pause_us in [0, 2_000] {
                for _ in 0..3 {
                    std::thread::sleep(std::time::Duration::from_micros(pause_us));
                    let y = session.predict(x.view()).unwrap();
                    for (r, row) in alone.iter().enumerate() {
                        assert_eq!(
                            y.row(r),
                            row.row(0),
                            "{} threads, batch {batch}, row {r}, pause {pause_us} µs",
                            session.threads()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_session_refuses_bad_input_with_typed_errors() {
    let session = Model::random(&[6, 8, 4], Activation::Relu, Activation::Softmax, 1)
        .compile()
        .unwrap()
        .session(2)
        .unwrap();
    let err = session.predict(Array2::zeros((3, 5)).view()).unwrap_err();
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
    let mut x = Array2::<f32>::zeros((3, 6));
    x[[2, 4]] = f32::NAN;
    let err = session.predict(x.view()).unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteInput { row: 2, col: 4, .. }),
        "{err}"
    );
    let mut small = Array2::zeros((3, 3));
    let err = session
        .predict_into(Array2::zeros((3, 6)).view(), small.view_mut())
        .unwrap_err();
    assert!(matches!(err, Error::OutputShape { .. }), "{err}");
    assert_eq!(
        session.predict(Array2::zeros((0, 6)).view()).unwrap().dim(),
        (0, 4)
    );
}
