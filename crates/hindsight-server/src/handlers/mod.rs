//! The route handlers, one module per route group: [`score`], [`behaviors`]
//! (append, list), [`admin`] (reload), [`health`] (health, readiness,
//! metrics, the API document, fallbacks).
//!
//! CPU work (feature lookup, retrieval, the forward pass) runs on the
//! blocking pool under the admission and deadline rules of
//! [`crate::state`]. Every behavior and candidate is checked against
//! [`hindsight_core::limits`] (400 with the limit's code, the message
//! prefixed by the JSON path of the value).

pub mod admin;
pub mod behaviors;
pub mod health;
#[cfg(feature = "model")]
pub mod recommend;
#[cfg(feature = "model")]
pub mod score;

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use hindsight_core::limits::{self, LimitViolation};
use hindsight_core::Behavior;
use hindsight_engine::{FeatureOverrides, TargetRequest};
use hindsight_index::Snapshot;

use crate::api::{BehaviorOut, IdOrName};
use crate::error::ApiError;
use crate::state::{AppState, Deadline};

type Shared = State<Arc<AppState>>;

use hindsight_core::host::now_unix as now_secs;

impl<S: Send + Sync> FromRequestParts<S> for Deadline {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Deadline>()
            .copied()
            .ok_or_else(|| ApiError::internal("the request has no deadline; this is a bug"))
    }
}

/// 400 for a value beyond [`hindsight_core::limits`], named by its JSON
/// path.
fn limit_error(path: &str, v: LimitViolation) -> ApiError {
    ApiError::bad_request(v.code(), format!("{path}: {v}"))
}

/// Checks a timestamp given at `path`.
fn check_timestamp(path: &str, ts: Option<i64>) -> Result<(), ApiError> {
    match ts {
        Some(t) => limits::check_timestamp(t).map_err(|v| limit_error(path, v)),
        None => Ok(()),
    }
}

/// Checks a user id given at `path`.
fn check_user(path: &str, user: u64) -> Result<(), ApiError> {
    limits::check_user(user).map_err(|v| limit_error(path, v))
}

/// The feature overrides of a candidate or appended behavior (`None`: look
/// the item up), with their counts checked at `path` before any name is
/// resolved.
fn overrides(
    path: &str,
    category_id: &Option<IdOrName>,
    categories: &Option<Vec<IdOrName>>,
    tags: &Option<Vec<IdOrName>>,
) -> Result<Option<FeatureOverrides>, ApiError> {
    if category_id.is_none() && categories.is_none() && tags.is_none() {
        return Ok(None);
    }
    let ncats = categories.as_ref().map_or(0, Vec::len) + usize::from(category_id.is_some());
    let ntags = tags.as_ref().map_or(0, Vec::len);
    limits::check_features(ncats, ntags).map_err(|v| {
        let field = match v {
            LimitViolation::TooManyTags(_) => "tags",
            _ => "categories",
        };
        limit_error(&format!("{path}.{field}"), v)
    })?;
    let convert = |v: &IdOrName| v.clone().into();
    let mut cats: Vec<hindsight_engine::IdOrName> =
        categories.iter().flatten().map(convert).collect();
    cats.extend(category_id.iter().map(convert));
    Ok(Some(FeatureOverrides {
        categories: cats,
        tags: tags.iter().flatten().map(convert).collect(),
    }))
}

/// Resolves a target request, prefixing errors with `path`.
fn target(
    snap: &Snapshot,
    path: &str,
    req: &TargetRequest,
) -> Result<hindsight_core::Target, ApiError> {
    hindsight_engine::resolve_target(snap, req).map_err(|e| ApiError::from(e).at(path))
}

fn behavior_out(snap: &Snapshot, b: &Behavior, score: Option<f32>) -> BehaviorOut {
    BehaviorOut {
        seq: b.seq,
        item_id: b.item_id,
        categories: b.features.categories.clone(),
        tags: b.features.tags.clone(),
        behavior_type: snap
            .state()
            .vocabs
            .behavior_types
            .name(b.behavior_type as u64)
            .map_or_else(|| b.behavior_type.to_string(), str::to_owned),
        timestamp: b.timestamp,
        score,
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
