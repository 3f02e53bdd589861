//! Health, readiness, metrics, the API document and the fallbacks.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::Shared;
use crate::api::Health;
use crate::error::ApiError;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        serving: None,
        reason: None,
    })
}

/// Readiness: a model and index are loaded, the index's writer is alive
/// and the server is not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "Shutting down (`draining`), or the index writer died (`not_ready`, with the reason)", body = Health)
    )
)]
pub async fn readyz(State(st): Shared) -> Response {
    let unavailable = |status: &str, reason: Option<String>| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: status.into(),
                serving: None,
                reason,
            }),
        )
            .into_response()
    };
    if st.draining.load(Ordering::SeqCst) {
        return unavailable("draining", None);
    }
    if let Some(reason) = st.writer_failure() {
        return unavailable("not_ready", Some(reason));
    }
    Json(Health {
        status: "ready".into(),
        serving: Some(st.serving.load().info()),
        reason: None,
    })
    .into_response()
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(st): Shared) -> Response {
    let snap = st.serving.load().index.snapshot();
    st.metrics.index_behaviors.set(snap.num_behaviors() as i64);
    st.metrics.index_segments.set(snap.segments().len() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi().to_json().unwrap_or_default(),
    )
        .into_response()
}

/// 404 for every unknown path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see GET /openapi.json",
    )
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see GET /openapi.json",
    )
}
