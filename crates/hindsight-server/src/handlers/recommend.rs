//! `POST /v1/recommend`.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::Json;
use hindsight_core::AsOf;
use hindsight_engine::{RankWith, RecommendInput, DEFAULT_RANK_CANDIDATES};

use super::{check_timestamp, check_user, now_secs, Shared};
use crate::api::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::{AppState, Deadline};

/// Recommend items to a user: recall with the SASRec model and its ANN
/// index (items seen before the as-of point left out unless
/// `exclude_seen` is false), optionally re-ranked by the served CTR model.
#[utoipa::path(
    post,
    path = "/v1/recommend",
    request_body = RecommendRequest,
    responses(
        (status = 200, description = "The items, best first", body = RecommendResponse),
        (status = 400, description = "Malformed JSON; a value beyond the limits (user id, timestamp)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token (auth_reads)", body = ErrorBody),
        (status = 409, description = "The server has no recall model (recall_model not set)", body = ErrorBody),
        (status = 422, description = "k or candidates out of range, unknown field", body = ErrorBody),
        (status = 503, description = "Overloaded, past the deadline or shutting down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn recommend(
    axum::extract::State(st): Shared,
    deadline: Deadline,
    ApiJson(req): ApiJson<RecommendRequest>,
) -> Result<Json<RecommendResponse>, ApiError> {
    check_user("user_id", req.user_id)?;
    check_timestamp("timestamp", req.timestamp)?;
    check_timestamp("as_of.timestamp", req.as_of.and_then(|a| a.timestamp))?;
    let max = st.config.max_recommend;
    if req.k == 0 || req.k > max {
        return Err(ApiError::invalid(
            "k_out_of_range",
            format!(
                "k must be between 1 and {max} (max_recommend), got {}",
                req.k
            ),
        ));
    }
    let candidates = req
        .candidates
        .unwrap_or(DEFAULT_RANK_CANDIDATES.min(max))
        .max(req.k);
    if req.candidates.is_some() && !req.rank {
        return Err(ApiError::invalid(
            "candidates_without_rank",
            "candidates is the number of recalled items the CTR model ranks; it needs \"rank\": true",
        ));
    }
    if candidates > max {
        return Err(ApiError::invalid(
            "candidates_out_of_range",
            format!("candidates must be between k and {max} (max_recommend), got {candidates}"),
        ));
    }
    let admitted = st.admit("/v1/recommend")?;
    st.run_cpu(deadline, admitted, move |st| {
        recommend_blocking(st, req, candidates)
    })
    .await
    .map(Json)
}

fn recommend_blocking(
    st: &AppState,
    req: RecommendRequest,
    candidates: usize,
) -> Result<RecommendResponse, ApiError> {
    let t0 = Instant::now();
    let serving: Arc<_> = st.serving.load_full();
    let Some(recommender) = &serving.recommender else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_recall_model",
            "this server has no recall model: start it with --recall-model DIR (a model of \
             `hindsight train --model sasrec`), or load one with POST /v1/admin/reload \
             {\"recall_model\": DIR}",
        ));
    };
    let snap = serving.index.snapshot();
    let as_of = req.as_of.unwrap_or_default();
    let input = RecommendInput {
        user_id: req.user_id,
        k: req.k,
        as_of: AsOf {
            seq: as_of.seq,
            timestamp: as_of.timestamp,
        },
        exclude_seen: req.exclude_seen,
        rank: req.rank.then_some(RankWith {
            scorer: &serving.scorer,
            candidates,
        }),
        timestamp: req.timestamp.or(as_of.timestamp).unwrap_or_else(now_secs),
    };
    let out = recommender.recommend(&snap, &input)?;
    st.metrics.recall.observe(out.recall_secs);
    let us = |s: f64| (s * 1e6) as u64;
    Ok(RecommendResponse {
        user_id: req.user_id,
        items: out
            .items
            .iter()
            .map(|r| RecommendedItem {
                item_id: r.item_id,
                recall_score: r.recall_score,
                score: r.rank_score,
            })
            .collect(),
        cold_start: out.cold_start,
        history_len: out.history_len,
        search: if recommender.ann_path().is_some() {
            "ann"
        } else {
            "exact"
        }
        .to_owned(),
        ranked_by: req
            .rank
            .then(|| serving.scorer.model().config().kind.as_str().to_owned()),
        timing_us: RecommendTiming {
            recall: us(out.recall_secs),
            rank: us(out.rank_secs),
            total: us(t0.elapsed().as_secs_f64()),
        },
    })
}
