//! `POST /v1/behaviors` (durable appends) and
//! `GET /v1/users/{id}/behaviors` (a user's newest behaviors).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hindsight_core::AsOf;
use hindsight_engine::TargetRequest;
use hindsight_index::{NewBehavior, Snapshot};

use super::{
    behavior_out, check_count, check_timestamp, check_user, now_secs, overrides, target, Shared,
};
use crate::api::*;
use crate::appender::AppendError;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::Deadline;

/// A behavior of the request, checked against the limits, with its target
/// still to resolve against a snapshot.
struct Checked {
    user_id: u64,
    target: TargetRequest,
    behavior_type: Option<hindsight_engine::IdOrName>,
    timestamp: Option<i64>,
}

/// Append behaviors; answered once they are durable and visible.
#[utoipa::path(
    post,
    path = "/v1/behaviors",
    request_body = AppendRequest,
    responses(
        (status = 200, description = "Committed (fsynced) and visible to retrieval", body = AppendResponse),
        (status = 400, description = "Malformed JSON; a value beyond the limits (user id, timestamp, categories or tags per behavior)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid values: empty or too many behaviors, unknown field or name", body = ErrorBody),
        (status = 500, description = "The commit failed; nothing was stored, retry", body = ErrorBody),
        (status = 503, description = "Queue full, past the deadline (the append may or may not be stored: retrying is safe), shutting down, or the index writer died", body = ErrorBody),
    )
)]
pub async fn append(
    State(st): Shared,
    deadline: Deadline,
    ApiJson(req): ApiJson<AppendRequest>,
) -> Result<Json<AppendResponse>, ApiError> {
    let n = req.behaviors.len();
    check_count(
        n,
        st.config.max_append_behaviors,
        ("behaviors", "max_append_behaviors"),
        ("empty_behaviors", "too_many_behaviors"),
    )?;
    let checked = req
        .behaviors
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let path = format!("behaviors[{i}]");
            check_user(&format!("{path}.user_id"), b.user_id)?;
            check_timestamp(&format!("{path}.timestamp"), b.timestamp)?;
            Ok(Checked {
                user_id: b.user_id,
                target: TargetRequest {
                    item_id: b.item_id,
                    overrides: overrides(&path, &b.category_id, &b.categories, &b.tags)?,
                },
                behavior_type: b.behavior_type.clone().map(Into::into),
                timestamp: b.timestamp,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    st.refuse_if_draining()?;
    if st.config.read_only {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            "this server serves its index read-only (read_only = true); send appends to a server that holds the index's writer",
        ));
    }
    if let Some(reason) = st.writer_failure() {
        return Err(writer_died(&st, reason));
    }
    st.metrics.append_size.observe(n as f64);
    let this = st.clone();
    let work = async move {
        let serving = this.serving.load_full();
        let index = serving.index.clone();
        let behaviors =
            tokio::task::spawn_blocking(move || to_new_behaviors(&index.snapshot(), &checked))
                .await
                .map_err(|e| ApiError::internal(format!("an append task failed: {e}")))??;
        let Some(appender) = serving.appender.as_ref() else {
            return Err(ApiError::internal("no writer for a writable index"));
        };
        match appender.append(behaviors).await {
            Ok((report, total)) => Ok(AppendResponse {
                added: report.added,
                duplicates: report.duplicates,
                index_behaviors: total,
            }),
            Err(AppendError::Overloaded) => {
                Err(this.shed("/v1/behaviors", "the append queue is full"))
            }
            Err(AppendError::Closed) => Err(ApiError::unavailable(
                "shutting_down",
                "the server is not accepting appends right now (shutting down or swapping the index); retry",
                this.config.retry_after_secs,
            )),
            Err(AppendError::WriterDied(reason)) => Err(writer_died(&this, reason)),
            Err(AppendError::Invalid(m)) => Err(ApiError::invalid("invalid_request", m)),
            Err(e @ AppendError::Failed(_)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "append_failed",
                e.to_string(),
            )),
        }
    };
    st.with_deadline(deadline, work).await.map(Json).map_err(|e| {
        if e.code == "deadline_exceeded" {
            ApiError {
                message: format!(
                    "{}; the append may or may not have been stored: retry it (appends are idempotent)",
                    e.message
                ),
                ..e
            }
        } else {
            e
        }
    })
}

fn writer_died(st: &crate::state::AppState, reason: String) -> ApiError {
    ApiError::unavailable("writer_failed", reason, st.config.retry_after_secs)
}

fn to_new_behaviors(snap: &Snapshot, behaviors: &[Checked]) -> Result<Vec<NewBehavior>, ApiError> {
    let now = now_secs();
    behaviors
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let path = format!("behaviors[{i}]");
            let behavior_type = match &b.behavior_type {
                None => 0,
                Some(t) => hindsight_engine::resolve_behavior_type(snap, t)
                    .map_err(|e| ApiError::from(e).at(&path))?,
            };
            Ok(NewBehavior {
                user_id: b.user_id,
                item_id: b.target.item_id,
                features: target(snap, &path, &b.target)?.features,
                behavior_type,
                timestamp: b.timestamp.unwrap_or(now),
            })
        })
        .collect()
}

/// A user's newest behaviors.
#[utoipa::path(
    get,
    path = "/v1/users/{id}/behaviors",
    params(
        ("id" = u64, Path, description = "The user"),
        ("limit" = Option<usize>, Query, description = "Most behaviors to return, newest first (default 50)"),
        ("as_of_seq" = Option<u32>, Query, description = "Only behaviors with a smaller sequence number"),
        ("as_of_timestamp" = Option<i64>, Query, description = "Only behaviors with a smaller timestamp"),
    ),
    responses(
        (status = 200, description = "Newest first; an unknown user has none", body = UserBehaviors),
        (status = 400, description = "A user id beyond the limits", body = ErrorBody),
        (status = 422, description = "Bad id or query", body = ErrorBody),
        (status = 503, description = "Overloaded", body = ErrorBody),
    )
)]
pub async fn user_behaviors(
    State(st): Shared,
    deadline: Deadline,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UserBehaviors>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::invalid("invalid_user_id", e.body_text()))?;
    let user: u64 = id.parse().map_err(|_| {
        ApiError::invalid(
            "invalid_user_id",
            format!("user id {id:?} is not a non-negative integer"),
        )
    })?;
    check_user("id", user)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if limit > st.config.max_list_limit {
        return Err(ApiError::invalid(
            "limit_too_large",
            format!(
                "limit {limit} is above the most this server lists ({}, max_list_limit)",
                st.config.max_list_limit
            ),
        ));
    }
    let admitted = st.admit("/v1/users/{id}/behaviors")?;
    st.run_cpu(deadline, admitted, move |st| {
        let snap = st.serving.load().index.snapshot();
        let history = snap.history(user);
        let as_of = AsOf {
            seq: q.as_of_seq,
            timestamp: q.as_of_timestamp,
        };
        Ok(UserBehaviors {
            user_id: user,
            history_len: history.len(),
            behaviors: history
                .newest(&as_of, limit)
                .iter()
                .map(|b| behavior_out(&snap, b, None))
                .collect(),
        })
    })
    .await
    .map(Json)
}
