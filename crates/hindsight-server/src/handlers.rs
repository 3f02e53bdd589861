//! The route handlers.
//!
//! CPU work (feature lookup, retrieval, the forward pass) runs on the
//! blocking pool, at most `workers` requests at once; at most
//! `max_in_flight` scoring and read requests are admitted (running or
//! waiting), the rest get 503 with Retry-After at once rather than queueing
//! without bound. Every request has a deadline (`request_timeout_ms`).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hindsight_core::{AsOf, Behavior, ItemFeatures, Target};
use hindsight_index::schema::MAX_USER_ID;
use hindsight_index::{NewBehavior, Snapshot};
use hindsight_logs::{Vocab, Vocabularies};
use hindsight_retrieval::StrategyKind;
use tokio::sync::OwnedSemaphorePermit;

use crate::api::*;
use crate::appender::AppendError;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_json, ApiJson};
use crate::state::AppState;

type Shared = State<Arc<AppState>>;

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn check_user(user: u64, what: &str) -> Result<(), ApiError> {
    if user > MAX_USER_ID {
        return Err(ApiError::invalid(
            "user_id_out_of_range",
            format!("{what} is {user}, above the largest user id the index holds ({MAX_USER_ID})"),
        ));
    }
    Ok(())
}

impl AppState {
    fn deadline(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    fn shed(&self, route: &str, why: &str) -> ApiError {
        self.metrics.shed.with_label_values(&[route]).inc();
        ApiError::unavailable(
            "overloaded",
            format!("{why}; retry after the Retry-After delay"),
            self.config.retry_after_secs,
        )
    }

    fn refuse_if_draining(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable(
                "shutting_down",
                "the server is shutting down; retry on another instance",
                self.config.retry_after_secs,
            ));
        }
        Ok(())
    }

    /// Admits a request or sheds it.
    fn admit(&self, route: &str) -> Result<OwnedSemaphorePermit, ApiError> {
        self.refuse_if_draining()?;
        self.admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.shed(route, "the server is at its limit of requests in flight"))
    }

    fn deadline_exceeded(&self) -> ApiError {
        ApiError::unavailable(
            "deadline_exceeded",
            format!(
                "the request took longer than request_timeout_ms ({} ms)",
                self.config.request_timeout_ms
            ),
            self.config.retry_after_secs,
        )
    }

    /// Runs CPU work on a worker within the request's deadline. The
    /// admission permit is held until the work ends, even if the deadline
    /// passes first, so abandoned work still counts as in flight.
    async fn run_cpu<T: Send + 'static>(
        self: &Arc<Self>,
        admitted: OwnedSemaphorePermit,
        work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let this = self.clone();
        let job = async move {
            let worker = this
                .workers
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ApiError::internal("the worker pool is closed"))?;
            let inner = this.clone();
            tokio::task::spawn_blocking(move || {
                let result = work(&inner);
                drop((worker, admitted));
                result
            })
            .await
            .map_err(|e| ApiError::internal(format!("a scoring task failed: {e}")))?
        };
        self.with_deadline(job).await
    }

    async fn with_deadline<T>(
        &self,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.deadline(), fut).await {
            Ok(r) => r,
            Err(_) => Err(self.deadline_exceeded()),
        }
    }
}

/// Refuses an empty list, or one longer than the configured `max`:
/// `(field, config key)` name them in the message, `(empty, too many)` are
/// the error codes.
fn check_count(
    len: usize,
    max: usize,
    (field, key): (&str, &str),
    (empty, too_many): (&'static str, &'static str),
) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::invalid(
            empty,
            format!("{field} is empty; give at least one"),
        ));
    }
    if len > max {
        return Err(ApiError::invalid(
            too_many,
            format!("{len} {field} given, the most one request may hold is {max} ({key}); split the request"),
        ));
    }
    Ok(())
}

/// Resolves ids or names against a vocabulary. With an empty vocabulary
/// (numeric ids in the logs, e.g. taobao categories) names must be numbers.
fn resolve(vocab: &Vocab, given: &[IdOrName], what: &str) -> Result<Vec<u64>, ApiError> {
    given
        .iter()
        .map(|v| match v {
            IdOrName::Id(id) => Ok(*id),
            IdOrName::Name(s) => {
                if let Some(id) = vocab.get(s).or_else(|| vocab.get(&s.to_lowercase())) {
                    Ok(id)
                } else if vocab.is_empty() {
                    s.trim().parse::<u64>().map_err(|_| {
                        ApiError::invalid(
                            "unknown_name",
                            format!("{what} {s:?} is not a numeric id, and this index has no {what} names"),
                        )
                    })
                } else {
                    Err(ApiError::invalid(
                        "unknown_name",
                        format!(
                            "unknown {what} {s:?}; the index knows {} {what} names (or give a numeric id)",
                            vocab.len()
                        ),
                    ))
                }
            }
        })
        .collect()
}

/// The features of an item as given, or else as the index knows them.
fn features(
    snap: &Snapshot,
    item: u64,
    category_id: &Option<IdOrName>,
    categories: &Option<Vec<IdOrName>>,
    tags: &Option<Vec<IdOrName>>,
) -> Result<ItemFeatures, ApiError> {
    let vocabs = &snap.state().vocabs;
    if category_id.is_none() && categories.is_none() && tags.is_none() {
        return Ok(snap.item_features(item)?.unwrap_or_default());
    }
    let mut cats = resolve(
        &vocabs.categories,
        categories.as_deref().unwrap_or(&[]),
        "category",
    )?;
    if let Some(c) = category_id {
        cats.extend(resolve(
            &vocabs.categories,
            std::slice::from_ref(c),
            "category",
        )?);
    }
    let mut f = ItemFeatures {
        categories: cats,
        tags: resolve(&vocabs.tags, tags.as_deref().unwrap_or(&[]), "tag")?,
    };
    f.normalize();
    Ok(f)
}

fn behavior_out(vocabs: &Vocabularies, b: &Behavior, score: Option<f32>) -> BehaviorOut {
    BehaviorOut {
        seq: b.seq,
        item_id: b.item_id,
        categories: b.features.categories.clone(),
        tags: b.features.tags.clone(),
        behavior_type: vocabs
            .behavior_types
            .name(b.behavior_type as u64)
            .map_or_else(|| b.behavior_type.to_string(), str::to_owned),
        timestamp: b.timestamp,
        score,
    }
}

/// Score candidate items for a user.
#[utoipa::path(
    post,
    path = "/v1/score",
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "Scores in candidate order", body = ScoreResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token (auth_reads)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid values: empty or too many candidates, unknown field, id out of range, unknown strategy, n out of range", body = ErrorBody),
        (status = 503, description = "Overloaded, past the deadline or shutting down; see Retry-After", body = ErrorBody),
    )
)]
pub async fn score(
    State(st): Shared,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Json<ScoreResponse>, ApiError> {
    check_user(req.user_id, "user_id")?;
    check_count(
        req.candidates.len(),
        st.config.max_candidates,
        ("candidates", "max_candidates"),
        ("empty_candidates", "too_many_candidates"),
    )?;
    let strategy = match &req.strategy {
        None => None,
        Some(s) => Some(
            s.parse::<StrategyKind>()
                .map_err(|e| ApiError::invalid("unknown_strategy", e.to_string()))?,
        ),
    };
    let admitted = st.admit("/v1/score")?;
    st.run_cpu(admitted, move |st| score_blocking(st, req, strategy))
        .await
        .map(Json)
}

fn score_blocking(
    st: &AppState,
    req: ScoreRequest,
    strategy: Option<StrategyKind>,
) -> Result<ScoreResponse, ApiError> {
    let t0 = Instant::now();
    let serving = st.serving.load_full();
    let snap = serving.index.snapshot();
    let targets = req
        .candidates
        .iter()
        .map(|c| {
            Ok(Target {
                item_id: c.item_id,
                features: features(&snap, c.item_id, &c.category_id, &c.categories, &c.tags)?,
            })
        })
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
    let vocabs = &snap.state().vocabs;
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
                    .map(|r| behavior_out(vocabs, &r.behavior, Some(r.score)))
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

/// Append behaviors; answered once they are durable and visible.
#[utoipa::path(
    post,
    path = "/v1/behaviors",
    request_body = AppendRequest,
    responses(
        (status = 200, description = "Committed (fsynced) and visible to retrieval", body = AppendResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Invalid values: empty or too many behaviors, unknown field or name, id out of range", body = ErrorBody),
        (status = 500, description = "The commit failed; nothing was stored, retry", body = ErrorBody),
        (status = 503, description = "Queue full, past the deadline (the append may or may not be stored: retrying is safe) or shutting down", body = ErrorBody),
    )
)]
pub async fn append(
    State(st): Shared,
    ApiJson(req): ApiJson<AppendRequest>,
) -> Result<Json<AppendResponse>, ApiError> {
    let n = req.behaviors.len();
    check_count(
        n,
        st.config.max_append_behaviors,
        ("behaviors", "max_append_behaviors"),
        ("empty_behaviors", "too_many_behaviors"),
    )?;
    for (i, b) in req.behaviors.iter().enumerate() {
        check_user(b.user_id, &format!("behaviors[{i}].user_id"))?;
        if b.timestamp.is_some_and(|t| t < 0) {
            return Err(ApiError::invalid(
                "invalid_timestamp",
                format!("behaviors[{i}].timestamp is negative; give unix seconds"),
            ));
        }
    }
    st.refuse_if_draining()?;
    st.metrics.append_size.observe(n as f64);
    let this = st.clone();
    let work = async move {
        let serving = this.serving.load_full();
        let index = serving.index.clone();
        let behaviors =
            tokio::task::spawn_blocking(move || to_new_behaviors(&index.snapshot(), &req))
                .await
                .map_err(|e| ApiError::internal(format!("an append task failed: {e}")))??;
        match serving.appender.append(behaviors).await {
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
            Err(AppendError::Invalid(m)) => Err(ApiError::invalid("invalid_request", m)),
            Err(e @ AppendError::Failed(_)) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "append_failed",
                e.to_string(),
            )),
        }
    };
    st.with_deadline(work).await.map(Json).map_err(|e| {
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

fn to_new_behaviors(snap: &Snapshot, req: &AppendRequest) -> Result<Vec<NewBehavior>, ApiError> {
    let now = now_secs();
    req.behaviors
        .iter()
        .enumerate()
        .map(|(i, b)| {
            to_new_behavior(snap, b, now).map_err(|e| ApiError {
                message: format!("behaviors[{i}]: {}", e.message),
                ..e
            })
        })
        .collect()
}

fn to_new_behavior(snap: &Snapshot, b: &BehaviorIn, now: i64) -> Result<NewBehavior, ApiError> {
    let types = &snap.state().vocabs.behavior_types;
    let behavior_type = match &b.behavior_type {
        None => 0,
        Some(t) => {
            let id = resolve(types, std::slice::from_ref(t), "behavior type")?[0];
            if id > u8::MAX as u64 || (!types.is_empty() && id >= types.len() as u64) {
                return Err(ApiError::invalid(
                    "unknown_name",
                    format!(
                        "behavior_type {id} is not a known type id (known: {})",
                        types.names().join(", ")
                    ),
                ));
            }
            id as u8
        }
    };
    Ok(NewBehavior {
        user_id: b.user_id,
        item_id: b.item_id,
        features: features(snap, b.item_id, &b.category_id, &b.categories, &b.tags)?,
        behavior_type,
        timestamp: b.timestamp.unwrap_or(now),
    })
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
        (status = 422, description = "Bad id or query", body = ErrorBody),
        (status = 503, description = "Overloaded", body = ErrorBody),
    )
)]
pub async fn user_behaviors(
    State(st): Shared,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<UserBehaviors>, ApiError> {
    let user: u64 = id.parse().map_err(|_| {
        ApiError::invalid(
            "invalid_user_id",
            format!("user id {id:?} is not a non-negative integer"),
        )
    })?;
    check_user(user, "the user id")?;
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
    st.run_cpu(admitted, move |st| {
        let snap = st.serving.load().index.snapshot();
        let history = snap.history(user);
        let as_of = AsOf {
            seq: q.as_of_seq,
            timestamp: q.as_of_timestamp,
        };
        let vocabs = &snap.state().vocabs;
        Ok(UserBehaviors {
            user_id: user,
            history_len: history.len(),
            behaviors: history
                .newest(&as_of, limit)
                .iter()
                .map(|b| behavior_out(vocabs, b, None))
                .collect(),
        })
    })
    .await
    .map(Json)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        serving: None,
    })
}

/// Readiness: a model and index are loaded and the server is not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    responses((status = 200, body = Health), (status = 503, description = "Shutting down", body = Health))
)]
pub async fn readyz(State(st): Shared) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "draining".into(),
                serving: None,
            }),
        )
            .into_response();
    }
    Json(Health {
        status: "ready".into(),
        serving: Some(st.serving.load().info()),
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

/// Load a model (and optionally another index) and swap it in without
/// failing requests. A pair that does not fit is refused (409) and the
/// current pair keeps serving. An empty body re-reads the current paths.
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
pub async fn reload(State(st): Shared, body: Bytes) -> Result<Json<ServingInfo>, ApiError> {
    let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        parse_json(&body)?
    };
    st.refuse_if_draining()?;
    st.reload(req.model, req.index)
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

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Response {
    use utoipa::OpenApi;
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::ApiDoc::openapi().to_json().unwrap_or_default(),
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
