//! Errors: [`ServerError`] for starting and reloading, [`ApiError`] for
//! what a request gets back (`{"error": {"code", "message"}}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Errors of starting, configuring or reloading the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The index could not be opened or written.
    #[error(transparent)]
    Index(#[from] hindsight_index::IndexError),
    /// The model could not be loaded or does not fit the index.
    #[error(transparent)]
    Engine(#[from] hindsight_engine::EngineError),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] hindsight_model::ModelError),
    /// A socket or file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`,
    /// `too_many_candidates`, `overloaded`.
    pub code: &'static str,
    /// What went wrong and what to do, for humans.
    pub message: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Seconds for a Retry-After header (503s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 422: the request is well-formed JSON but its values are not valid.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503 with Retry-After.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 500: a failure on the server's side (logged).
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<hindsight_engine::EngineError> for ApiError {
    fn from(e: hindsight_engine::EngineError) -> Self {
        match e {
            hindsight_engine::EngineError::InvalidInput(m) => {
                ApiError::invalid("invalid_request", m)
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<hindsight_index::IndexError> for ApiError {
    fn from(e: hindsight_index::IndexError) -> Self {
        match e {
            hindsight_index::IndexError::InvalidInput(m) => ApiError::invalid("invalid_request", m),
            other => ApiError::internal(other.to_string()),
        }
    }
}
