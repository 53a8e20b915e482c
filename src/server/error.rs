//! [`ApiError`]: one error type for both protocols, with its HTTP status and gRPC code.

use std::time::Duration;

use crate::{RequestError, SubmitError};

/// Why a request to the server failed, as both protocols report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or does not fit the model (HTTP 400, gRPC INVALID_ARGUMENT).
    #[error("{0}")]
    BadRequest(String),
    /// No such model, version or route (HTTP 404, gRPC NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The body is over the server's byte limit (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    #[error("request body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The body's size, as far as it was read.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The server cannot take the request now: queue full, draining, model not ready (HTTP 503
    /// or 429 with `Retry-After`, gRPC UNAVAILABLE).
    #[error("{reason}")]
    Unavailable {
        /// What is unavailable.
        reason: String,
        /// When the client may retry.
        retry_after: Duration,
    },
    /// The request's deadline passed before it was computed (HTTP 504, gRPC DEADLINE_EXCEEDED).
    #[error("deadline exceeded before the request was computed")]
    Deadline,
    /// The model failed or panicked on the request (HTTP 500, gRPC INTERNAL).
    #[error("{0}")]
    Internal(String),
    /// A protocol feature the server does not implement (HTTP 501, gRPC UNIMPLEMENTED).
    #[error("{0}")]
    Unimplemented(String),
}

/// How long a client refused for overload is asked to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// A [`ApiError::BadRequest`] from anything printable.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// The overload error with the default retry hint.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        ApiError::Unavailable {
            reason: reason.into(),
            retry_after: RETRY_AFTER,
        }
    }

    /// The HTTP status code; `overload_status` is the one used for [`ApiError::Unavailable`]
    /// (503, or 429 for gateways that key on it).
    pub fn http_status(&self, overload_status: u16) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::TooLarge { .. } => 413,
            ApiError::Unavailable { .. } => overload_status,
            ApiError::Deadline => 504,
            ApiError::Internal(_) => 500,
            ApiError::Unimplemented(_) => 501,
        }
    }

    /// The gRPC status.
    pub fn grpc_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            ApiError::BadRequest(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::TooLarge { .. } => Code::ResourceExhausted,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Deadline => Code::DeadlineExceeded,
            ApiError::Internal(_) => Code::Internal,
            ApiError::Unimplemented(_) => Code::Unimplemented,
        };
        let mut status = tonic::Status::new(code, self.to_string());
        if let ApiError::Unavailable { retry_after, .. } = self {
            // gRPC retry pushback (proposal A6): a retrying client waits this long instead of
            // retrying at once and amplifying the overload.
            if let Ok(value) = retry_after.as_millis().to_string().parse() {
                status
                    .metadata_mut()
                    .insert("grpc-retry-pushback-ms", value);
            }
        }
        status
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::QueueFull(_) | SubmitError::Timeout(_) => {
                ApiError::unavailable("the model's queue is full")
            }
            SubmitError::ShuttingDown(_) => ApiError::unavailable("the server is shutting down"),
            SubmitError::UnknownModel { name, .. } => {
                ApiError::NotFound(format!("unknown model '{name}'"))
            }
            SubmitError::Invalid { error, .. } => ApiError::BadRequest(error.to_string()),
            e @ SubmitError::RowCount { .. } => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::DeadlineExceeded => ApiError::Deadline,
            other => ApiError::Internal(other.to_string()),
        }
    }
}
