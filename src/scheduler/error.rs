//! The scheduler's errors: [`SchedulerError`] for loading and configuring,
//! [`ServeError`] for serving a request end to end ([`crate::Scheduler::predict`]).

use super::request::{RequestError, SubmitError};

/// Why a scheduler or model operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No model of that name is loaded.
    #[error("no model named `{0}`")]
    UnknownModel(String),
    /// A model of that name is already loaded (use `replace`).
    #[error("a model named `{0}` is already loaded")]
    AlreadyLoaded(String),
    /// The scheduler is shutting down.
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// A configuration value is out of range.
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The setting, named as its builder method.
        field: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// The model failed during warmup and was not loaded.
    #[error("model `{model}` failed warmup: {source}")]
    Warmup {
        /// The model's name.
        model: String,
        /// The model's error.
        source: Box<crate::Error>,
    },
    /// The model panicked during warmup and was not loaded.
    #[error("model `{0}` panicked during warmup")]
    WarmupPanicked(String),
    /// The compute pool could not be built.
    #[error("cannot build the compute pool: {0}")]
    Pool(#[source] rayon::ThreadPoolBuildError),
    /// A model's worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why [`crate::Scheduler::predict`] has no result: whatever submitting or serving the request
/// failed with. `?` converts [`SubmitError`] (dropping the request it hands back) and
/// [`RequestError`] into it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// No model of that name is loaded.
    #[error("no model named `{0}`")]
    UnknownModel(String),
    /// The model's queue is full (from [`crate::Scheduler::try_submit`]).
    #[error("queue full")]
    QueueFull,
    /// The queue stayed full for a whole submit timeout.
    #[error("queue still full at the end of the timeout")]
    Timeout,
    /// The scheduler is shutting down.
    #[error("scheduler is shutting down")]
    ShuttingDown,
    /// The input does not fit the model (width, or NaN/Inf the model refuses).
    #[error("invalid request: {0}")]
    Invalid(#[source] crate::Error),
    /// The request has no rows, or more than the model's `max_batch_size`.
    #[error("request has {rows} rows; the model takes 1 to {max_batch_size} per request")]
    RowCount {
        /// Rows in the request.
        rows: usize,
        /// The model's `max_batch_size`.
        max_batch_size: usize,
    },
    /// The request's deadline passed before it was computed.
    #[error("deadline exceeded before compute")]
    DeadlineExceeded,
    /// The request was dropped unanswered (see [`RequestError::Dropped`]).
    #[error("request dropped unanswered")]
    Dropped,
    /// The model returned an error for this request.
    #[error("model failed: {0}")]
    Model(#[source] crate::Error),
    /// The model panicked while computing this request's batch.
    #[error("model panicked while computing this request's batch")]
    ModelPanicked,
}

impl From<SubmitError> for ServeError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::QueueFull(_) => ServeError::QueueFull,
            SubmitError::Timeout(_) => ServeError::Timeout,
            SubmitError::ShuttingDown(_) => ServeError::ShuttingDown,
            SubmitError::UnknownModel { name, .. } => ServeError::UnknownModel(name),
            SubmitError::Invalid { error, .. } => ServeError::Invalid(*error),
            SubmitError::RowCount {
                rows,
                max_batch_size,
                ..
            } => ServeError::RowCount {
                rows,
                max_batch_size,
            },
        }
    }
}

impl From<RequestError> for ServeError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::DeadlineExceeded => ServeError::DeadlineExceeded,
            RequestError::Model(e) => ServeError::Model(e),
            RequestError::ModelPanicked => ServeError::ModelPanicked,
            RequestError::Dropped => ServeError::Dropped,
        }
    }
}
