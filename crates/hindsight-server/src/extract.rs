//! Request parsing that answers every mistake with a precise JSON error.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::ApiError;
use crate::state::Deadline;

/// A JSON body. Unlike `axum::Json` it does not insist on a JSON
/// Content-Type (so `curl -d '{...}'` works), and its rejections are
/// [`ApiError`]s: 400 `malformed_json`, 422 `invalid_request` (a missing
/// or unknown field, a wrong type, a negative id...), 413 `body_too_large`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty_body",
                "the request has no body; send a JSON object",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the whole body within the configured size limit and by the
/// request's body deadline ([`Deadline::body_at`]): a body that does not
/// arrive in time is a 408 `body_timeout`, and the connection is closed.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let body_at = req.extensions().get::<Deadline>().map(|d| d.body_at);
    let read = Bytes::from_request(req, state);
    let result = match body_at {
        Some(at) => match tokio::time::timeout_at(at, read).await {
            Ok(r) => r,
            Err(_) => {
                let mut e = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body did not arrive in time (body_read_timeout_ms, within request_timeout_ms); send the whole body at once",
                );
                e.close = true;
                return Err(e);
            }
        },
        None => read.await,
    };
    result.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than the server's max_body_bytes; send fewer candidates or behaviors per request",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.body_text())
        }
    })
}

/// Parses a JSON body into `T`, mapping serde's errors to API errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        Category::Data => ApiError::invalid("invalid_request", e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        ),
    })
}
