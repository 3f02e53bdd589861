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
    #[cfg(feature = "model")]
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
    /// Whether to close the connection after the answer (`Connection:
    /// close`), e.g. when the body was not read.
    pub close: bool,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// 400: the request is malformed, or a value is beyond the limits every
    /// entry point shares.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The same error, its message prefixed by where in the request it
    /// arose (a JSON path such as `candidates[2]`).
    pub fn at(self, path: &str) -> Self {
        ApiError {
            message: format!("{path}: {}", self.message),
            ..self
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
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
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
            hindsight_engine::EngineError::UnknownName(m) => ApiError::invalid("unknown_name", m),
            hindsight_engine::EngineError::Index(e) => e.into(),
            e @ hindsight_engine::EngineError::Retrieval(
                hindsight_retrieval::RetrievalError::MissingEmbeddings(_),
            ) => ApiError::invalid("missing_embeddings", e.to_string()),
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

/// The code of an error response that did not come from an [`ApiError`]
/// (an extractor's or the HTTP stack's rejection), by status.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "body_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        417 => "expectation_failed",
        431 => "headers_too_large",
        s if s >= 500 => "internal",
        _ => "client_error",
    }
}

/// Gives an error response that is not JSON (a rejection from axum or
/// tower, plain text) the API's JSON error body, keeping its status, its
/// headers and its text as the message.
pub(crate) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_lowercase()
    } else {
        text
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_of(status),
            message,
        },
    };
    let json = serde_json::to_vec(&body).expect("an error body serializes");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(json))
}
