//! [`Request`]s, their one-shot replies ([`ReplyHandle`], [`ReplyFuture`]), and the errors a
//! submit ([`SubmitError`]) or a reply ([`RequestError`]) can carry.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};

use super::spin::poll_for;

/// What a caller gets back for a request: its output rows, or why there are none.
pub type Reply = Result<Array2<f32>, RequestError>;

/// One or a few samples for one model, with an optional deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    input: Array2<f32>,
    deadline: Option<Instant>,
}

impl Request {
    /// A request for the rows of `input` (`[rows, input_width]`).
    pub fn new(input: Array2<f32>) -> Self {
        // Standard layout lets the worker copy each request with one slice copy.
        let input = if input.is_standard_layout() {
            input
        } else {
            input.as_standard_layout().into_owned()
        };
        Request {
            input,
            deadline: None,
        }
    }

    /// A request for one sample.
    pub fn one(sample: Vec<f32>) -> Self {
        let width = sample.len();
        Request::new(
            Array1::from(sample)
                .into_shape_with_order((1, width))
                .expect("1 × n"),
        )
    }

    /// Sets an absolute deadline: if the request has not been computed by then, it is answered
    /// with [`RequestError::DeadlineExceeded`] and never computed.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// The samples.
    pub fn input(&self) -> &Array2<f32> {
        &self.input
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.input.nrows()
    }

    /// Takes the samples back.
    pub fn into_input(self) -> Array2<f32> {
        self.input
    }

    /// The row-major samples as one slice.
    pub(crate) fn as_slice(&self) -> &[f32] {
        self.input
            .as_slice()
            .expect("constructor keeps the standard layout")
    }
}

/// Why a request accepted by the scheduler has no result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The deadline passed before the request could be computed; it was not computed.
    #[error("deadline exceeded before compute")]
    DeadlineExceeded,
    /// The model returned an error for this request (its batch was retried request by request,
    /// so this error is the request's own).
    #[error("model failed: {0}")]
    Model(#[source] crate::Error),
    /// The model panicked while computing this request's batch; the worker was restarted.
    #[error("model panicked while computing this request's batch")]
    ModelPanicked,
    /// The scheduler lost the request without answering it. A bug: every accepted request is
    /// answered; this is the answer a request gives itself if it is ever dropped unanswered.
    #[error("request dropped unanswered")]
    Dropped,
}

/// Why a request was not accepted. Every variant hands the request back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The model's queue is full (backpressure); retry later or shed load.
    #[error("queue full")]
    QueueFull(Request),
    /// The queue stayed full for the whole timeout of a blocking submit.
    #[error("queue still full at the end of the timeout")]
    Timeout(Request),
    /// No model of that name is loaded.
    #[error("no model named `{name}`")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The request.
        request: Request,
    },
    /// The model's [`crate::Predictor::check_input`] refused the input (width, or NaN/Inf as
    /// the model's policy says); it is rejected alone.
    #[error("invalid request: {error}")]
    Invalid {
        /// What is wrong (boxed to keep `SubmitError`, returned on every submit, small).
        #[source]
        error: Box<crate::Error>,
        /// The request.
        request: Request,
    },
    /// The request has no rows, or more than the model's `max_batch_size`.
    #[error("request has {rows} rows; the model takes 1 to {max_batch_size} per request")]
    RowCount {
        /// Rows in the request.
        rows: usize,
        /// The model's `max_batch_size`.
        max_batch_size: usize,
        /// The request.
        request: Request,
    },
    /// The scheduler is shutting down.
    #[error("scheduler is shutting down")]
    ShuttingDown(Request),
}

impl SubmitError {
    /// The request that was not accepted.
    pub fn into_request(self) -> Request {
        match self {
            SubmitError::QueueFull(r) | SubmitError::Timeout(r) | SubmitError::ShuttingDown(r) => r,
            SubmitError::UnknownModel { request, .. }
            | SubmitError::Invalid { request, .. }
            | SubmitError::RowCount { request, .. } => request,
        }
    }
}

/// The caller's end of a request: wait for it with [`ReplyHandle::wait`],
/// [`ReplyHandle::wait_timeout`], or `.await` (any executor; no runtime needed).
/// Dropping it cancels the request: if it has not been computed yet, it will not be.
#[derive(Debug)]
pub struct ReplyHandle {
    receiver: oneshot::Receiver<Reply>,
    /// How long `wait` polls before it sleeps (the model's `reply_spin`).
    spin: Duration,
}

impl ReplyHandle {
    /// Blocks until the reply arrives. It polls for the model's
    /// [`reply_spin`](crate::ModelConfig::reply_spin) first, then sleeps.
    pub fn wait(self) -> Reply {
        poll_for(self.spin, || self.receiver.has_message().then_some(()));
        self.receiver.recv().unwrap_or(Err(RequestError::Dropped))
    }

    /// Blocks up to `timeout`; `None` if the reply has not arrived yet (the handle stays valid).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Reply> {
        match self.receiver.recv_timeout(timeout) {
            Ok(reply) => Some(reply),
            Err(oneshot::RecvTimeoutError::Timeout) => None,
            Err(oneshot::RecvTimeoutError::Disconnected) => Some(Err(RequestError::Dropped)),
        }
    }

    /// Whether the reply has arrived (then [`ReplyHandle::wait`] returns at once).
    pub fn is_ready(&self) -> bool {
        self.receiver.has_message()
    }
}

impl IntoFuture for ReplyHandle {
    type Output = Reply;
    type IntoFuture = ReplyFuture;

    fn into_future(self) -> ReplyFuture {
        ReplyFuture {
            inner: self.receiver.into_future(),
        }
    }
}

/// The future of a [`ReplyHandle`]: resolves to the [`Reply`]. Runtime-agnostic (it stores the
/// task's waker and the worker wakes it).
#[derive(Debug)]
pub struct ReplyFuture {
    inner: oneshot::AsyncReceiver<Reply>,
}

impl Future for ReplyFuture {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(RequestError::Dropped)))
    }
}

/// The scheduler's end of a request: answers exactly once. If dropped unanswered it answers
/// by itself ([`RequestError::ModelPanicked`] during a panic, else [`RequestError::Dropped`]),
/// so no caller ever waits forever.
#[derive(Debug)]
pub(crate) struct Responder {
    sender: Option<oneshot::Sender<Reply>>,
}

impl Responder {
    /// A responder and its handle, whose `wait` polls for `spin` before sleeping.
    pub(crate) fn pair(spin: Duration) -> (Responder, ReplyHandle) {
        let (sender, receiver) = oneshot::channel();
        (
            Responder {
                sender: Some(sender),
            },
            ReplyHandle { receiver, spin },
        )
    }

    /// Sends the reply; a caller who dropped its handle simply does not get it.
    pub(crate) fn reply(mut self, reply: Reply) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(reply);
        }
    }

    /// Whether the caller dropped its handle.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.sender.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    /// Gives up without answering: for a request handed back to its caller before acceptance.
    pub(crate) fn disarm(mut self) {
        self.sender = None;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            // Dropped while unwinding: the model (or the worker) panicked with this request.
            let error = if std::thread::panicking() {
                RequestError::ModelPanicked
            } else {
                RequestError::Dropped
            };
            let _ = sender.send(Err(error));
        }
    }
}

/// A request inside the scheduler: the caller's data, when it came in, who to answer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) request: Request,
    pub(crate) submitted: Instant,
    pub(crate) responder: Responder,
}
