//! `POST /v1/admin/reload`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;

use super::Shared;
use crate::api::{ReloadRequest, ServingInfo};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_json, read_body};

/// Load a model (and optionally another index) and swap it in without
/// failing requests. A pair that does not fit, or files that fail to open
/// or load, are refused (409) and the current pair keeps serving. An empty
/// body re-reads the current paths.
#[utoipa::path(
    post,
    path = "/v1/admin/reload",
    request_body(content = Option<ReloadRequest>, description = "What to load (default: the current paths)"),
    responses(
        (status = 200, description = "Swapped in", body = ServingInfo),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 409, description = "Refused; the previous pair keeps serving", body = ErrorBody),
    )
)]
pub async fn reload(State(st): Shared, req: Request) -> Result<Json<ServingInfo>, ApiError> {
    let body = read_body(req, &()).await?;
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        parse_json(&body)?
    };
    st.refuse_if_draining()?;
    st.reload(req.model, req.index, req.recall_model)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                "reload_refused",
                format!("{e}; still serving the previous model and index"),
            )
        })
}
