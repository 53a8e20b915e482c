//! Test models for the scheduler tests: an echo model, a model that blocks on a gate, one that
//! panics or fails on marker inputs, all counting the rows they compute.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use densebatch::{Error, Predictor, Split, Workspace};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Generous timeout for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// What a marker row makes the model do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnMarker {
    /// Nothing special.
    Nothing,
    /// Panic.
    Panic,
    /// Return an error for any batch holding the marker.
    Fail,
    /// Signal `entered` then block until `release` gets a message.
    Block,
}

/// Copies its input plus `offset` to the output; reacts to rows whose first value is `MARKER`.
#[derive(Debug)]
pub struct TestModel {
    pub width: usize,
    pub offset: f32,
    pub on_marker: OnMarker,
    pub rows_computed: AtomicU64,
    pub entered: Sender<()>,
    pub entered_rx: Receiver<()>,
    pub release: Receiver<()>,
    pub release_tx: Sender<()>,
    /// Rows whose first value was seen (the ids computed), when tracking is on.
    pub seen: Mutex<Vec<f32>>,
    pub track: bool,
}

pub const MARKER: f32 = -777.0;

impl TestModel {
    pub fn new(width: usize, on_marker: OnMarker) -> Self {
        let (entered, entered_rx) = crossbeam_channel::unbounded();
        let (release_tx, release) = crossbeam_channel::unbounded();
        TestModel {
            width,
            offset: 0.0,
            on_marker,
            rows_computed: AtomicU64::new(0),
            entered,
            entered_rx,
            release,
            release_tx,
            seen: Mutex::new(Vec::new()),
            track: false,
        }
    }

    pub fn with_offset(mut self, offset: f32) -> Self {
        self.offset = offset;
        self
    }

    pub fn tracking(mut self) -> Self {
        self.track = true;
        self
    }

    pub fn rows(&self) -> u64 {
        self.rows_computed.load(Ordering::SeqCst)
    }
}

impl Predictor for TestModel {
    fn name(&self) -> &str {
        "test"
    }
    fn input_width(&self) -> usize {
        self.width
    }
    fn output_width(&self) -> usize {
        self.width
    }
    fn flops_per_sample(&self) -> u64 {
        self.width as u64
    }
    fn new_workspace(&self) -> Workspace {
        Workspace::new(1, self.width)
    }
    fn split(&self, _rows: usize, _threads: usize, _caller_on_pool: bool) -> Split {
        Split::Inline
    }
    /// Refuses a wrong width and NaN/Inf, as a compiled model does by default.
    fn check_input(&self, x: ArrayView2<'_, f32>) -> densebatch::Result<()> {
        if x.ncols() != self.width {
            return Err(Error::InputWidth {
                expected: self.width,
                got: x.ncols(),
            });
        }
        match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            Some(((row, col), &value)) => Err(Error::NonFiniteInput { row, col, value }),
            None => Ok(()),
        }
    }
    fn predict_into(
        &self,
        _workspace: &mut Workspace,
        x: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> densebatch::Result<()> {
        if x.ncols() != self.width {
            return Err(Error::InputWidth {
                expected: self.width,
                got: x.ncols(),
            });
        }
        let marked = x.rows().into_iter().any(|r| r[0] == MARKER);
        if marked {
            match self.on_marker {
                OnMarker::Nothing => {}
                OnMarker::Panic => panic!("test model: marker input"),
                OnMarker::Fail => {
                    return Err(Error::InputWidth {
                        expected: 0,
                        got: 0,
                    });
                }
                OnMarker::Block => {
                    self.entered.send(()).unwrap();
                    self.release.recv_timeout(PATIENCE).unwrap();
                }
            }
        }
        self.rows_computed
            .fetch_add(x.nrows() as u64, Ordering::SeqCst);
        if self.track {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(x.rows().into_iter().map(|r| r[0]));
        }
        out.zip_mut_with(&x, |o, i| *o = i + self.offset);
        Ok(())
    }
}

pub fn model(width: usize, on_marker: OnMarker) -> Arc<TestModel> {
    Arc::new(TestModel::new(width, on_marker))
}
