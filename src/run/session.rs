//! [`Session`]: a compiled model with its own thread pool and workspaces, the one-call way to run
//! batches.

use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::error::{Error, Result};
use crate::plan::CompiledModel;
use crate::predictor::Predictor;
use crate::run::predict_on_team;
use crate::run::team::Team;
use crate::workspace::Workspace;

/// A compiled model ready to run batches on its own threads: it owns the model, helper threads
/// and one workspace per thread, so a call is one line and allocates nothing but its output
/// ([`Session::predict_into`] not even that).
///
/// The calling thread computes a share of every split batch itself, and the helpers (one fewer
/// than the session's threads) take the other shares; an idle helper spins for 100 µs before
/// it sleeps, so back-to-back calls pay no thread wake-up, and a sleeping helper is not waited
/// for (the caller takes its share).
///
/// `Send + Sync`: share it between threads (`Arc<Session>`). Concurrent calls each take a set
/// of workspaces; a set is made the first time more calls overlap than ever before, and kept.
/// While one call's batch is split over the helpers, a concurrent call computes its batch on
/// its own thread.
///
/// # Examples
/// ```
/// use densebatch::prelude::*;
/// let model = Model::random(&[16, 32, 4], Activation::Relu, Activation::Softmax, 7);
/// let session = model.compile()?.session(2)?;
/// let x = ndarray::Array2::from_shape_fn((64, 16), |(i, j)| ((i + j) as f32).sin());
/// let y = session.predict(x.view())?;
/// assert_eq!(y.dim(), (64, 4));
/// // Bit-identical to the same row run alone.
/// assert_eq!(session.predict(x.slice(ndarray::s![9..10, ..]))?.row(0), y.row(9));
/// # Ok::<(), densebatch::Error>(())
/// ```
#[derive(Debug)]
pub struct Session {
    model: Arc<CompiledModel>,
    /// `None` for one thread: calls then run on the caller's thread alone.
    team: Option<Team>,
    threads: usize,
    /// Idle workspace sets, one workspace per pool thread each.
    idle: Mutex<Vec<Vec<Workspace>>>,
}

impl CompiledModel {
    /// A [`Session`] running this model on `threads` threads (0: as many as this process may
    /// use, see [`std::thread::available_parallelism`]).
    ///
    /// # Errors
    /// [`Error::ThreadPool`] if the threads cannot be started.
    pub fn session(self, threads: usize) -> Result<Session> {
        Session::new(Arc::new(self), threads)
    }
}

impl Session {
    /// A session for a model shared with others (a scheduler, another session). `threads` as
    /// in [`CompiledModel::session`]; one thread runs every call on the caller's thread.
    ///
    /// # Errors
    /// [`Error::ThreadPool`] if the threads cannot be started.
    pub fn new(model: Arc<CompiledModel>, threads: usize) -> Result<Session> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let team = if threads == 1 {
            None
        } else {
            let team = Team::new(threads - 1, "densebatch-session")
                .map_err(|source| Error::ThreadPool { threads, source })?;
            Some(team)
        };
        let idle = Mutex::new(vec![model.new_workspaces(threads)]);
        Ok(Session {
            model,
            team,
            threads,
            idle,
        })
    }

    /// The compiled model.
    pub fn model(&self) -> &Arc<CompiledModel> {
        &self.model
    }

    /// Threads the session computes on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Width of an input sample.
    pub fn input_width(&self) -> usize {
        self.model.input_width()
    }

    /// Width of an output row.
    pub fn output_width(&self) -> usize {
        self.model.output_width()
    }

    /// Runs the batch `x` (`[rows, input_width]`, any strides) and returns `[rows, output_width]`.
    ///
    /// # Errors
    /// [`Error::InputWidth`], or [`Error::NonFiniteInput`] naming the first bad row and column
    /// (unless the model was compiled to propagate NaN/Inf).
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let mut out = Array2::zeros((x.nrows(), self.model.output_width()));
        self.predict_into(x, out.view_mut())?;
        Ok(out)
    }

    /// Runs the batch `x` into `out` (`[rows, output_width]`, any strides). Allocates nothing
    /// unless more calls overlap than ever before.
    ///
    /// # Errors
    /// As [`Session::predict`], and [`Error::OutputShape`]. On error `out`'s contents are
    /// unspecified.
    pub fn predict_into(&self, x: ArrayView2<'_, f32>, out: ArrayViewMut2<'_, f32>) -> Result<()> {
        let mut workspaces = self.take_workspaces();
        let result = match &self.team {
            Some(team) => predict_on_team(self.model.as_ref(), team, &mut workspaces, x, out),
            None => self.model.predict_into(&mut workspaces[0], x, out),
        };
        self.lock_idle().push(workspaces);
        result
    }

    fn take_workspaces(&self) -> Vec<Workspace> {
        let idle = self.lock_idle().pop();
        idle.unwrap_or_else(|| self.model.new_workspaces(self.threads))
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Workspace>>> {
        // The workspaces are scratch: a panic while the lock was held leaves nothing to repair.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
