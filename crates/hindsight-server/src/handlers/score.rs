//! `POST /v1/score`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use hindsight_core::AsOf;
use hindsight_engine::TargetRequest;
use hindsight_retrieval::StrategyKind;

use super::{
    behavior_out, check_count, check_timestamp, check_user, now_secs, overrides, target, Shared,
};
use crate::api::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::{AppState, Deadline};

/// Score candidate items for a user.
#[utoipa::path(
    post,
    path = "/v1/score",
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "Scores in candidate order", body = ScoreResponse),
        (status = 400, description = "Malformed JSON; a value beyond the limits (user id, timestamp, features per candidate)", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token (auth_reads)", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid values: empty or too many candidates, unknown field, unknown strategy, n out of range", body = ErrorBody),
        (status = 503, description = "Overloaded, past the deadline or shutting down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn score(
    axum::extract::State(st): Shared,
    deadline: Deadline,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Json<ScoreResponse>, ApiError> {
    check_user("user_id", req.user_id)?;
    check_timestamp("timestamp", req.timestamp)?;
    check_timestamp("as_of.timestamp", req.as_of.and_then(|a| a.timestamp))?;
    check_count(
        req.candidates.len(),
        st.config.max_candidates,
        ("candidates", "max_candidates"),
        ("empty_candidates", "too_many_candidates"),
    )?;
    let targets = req
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(TargetRequest {
                item_id: c.item_id,
                overrides: overrides(
                    &format!("candidates[{i}]"),
                    &c.category_id,
                    &c.categories,
                    &c.tags,
                )?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let strategy = match &req.strategy {
        None => None,
        Some(s) => Some(
            s.parse::<StrategyKind>()
                .map_err(|e| ApiError::invalid("unknown_strategy", e.to_string()))?,
        ),
    };
    let admitted = st.admit("/v1/score")?;
    st.run_cpu(deadline, admitted, move |st| {
        score_blocking(st, req, targets, strategy)
    })
    .await
    .map(Json)
}

fn score_blocking(
    st: &AppState,
    req: ScoreRequest,
    targets: Vec<TargetRequest>,
    strategy: Option<StrategyKind>,
) -> Result<ScoreResponse, ApiError> {
    let t0 = Instant::now();
    let serving: Arc<_> = st.serving.load_full();
    let snap = serving.index.snapshot();
    let targets = targets
        .iter()
        .enumerate()
        .map(|(i, t)| target(&snap, &format!("candidates[{i}]"), t))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let as_of = req.as_of.unwrap_or_default();
    let input = hindsight_engine::ScoreInput {
        user_id: req.user_id,
        targets: &targets,
        as_of: AsOf {
            seq: as_of.seq,
            timestamp: as_of.timestamp,
        },
        filter: Default::default(),
        strategy,
        n: req.n,
        timestamp: req.timestamp.or(as_of.timestamp).unwrap_or_else(now_secs),
    };
    let scorer = &serving.scorer;
    let scored = scorer.score(&snap, &input)?;
    let m = &st.metrics;
    m.retrieval.observe(scored.retrieval_secs);
    m.model.observe(scored.model_secs);
    m.batch_size.observe(targets.len() as f64);
    let explain = req.explain.then(|| {
        targets
            .iter()
            .zip(&scored.retrieved)
            .map(|(t, r)| Explanation {
                item_id: t.item_id,
                categories: t.features.categories.clone(),
                tags: t.features.tags.clone(),
                behaviors: r
                    .iter()
                    .map(|r| behavior_out(&snap, &r.behavior, Some(r.score)))
                    .collect(),
            })
            .collect()
    });
    let us = |s: f64| (s * 1e6) as u64;
    Ok(ScoreResponse {
        user_id: req.user_id,
        scores: scored.scores,
        model: scorer.model().config().kind.as_str().to_owned(),
        strategy: strategy
            .unwrap_or(scorer.settings().strategy)
            .as_str()
            .to_owned(),
        n: req.n.unwrap_or(scorer.settings().n),
        history_len: scored.history_len,
        explain,
        timing_us: Timing {
            retrieval: us(scored.retrieval_secs),
            model: us(scored.model_secs),
            batch: us(scored.batch_secs),
            total: us(t0.elapsed().as_secs_f64()),
        },
    })
}
