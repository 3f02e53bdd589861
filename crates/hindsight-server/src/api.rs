//! The wire types of the HTTP API (JSON). Requests refuse unknown fields,
//! so a misspelt option is an error rather than silently ignored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A category, tag or behavior type: a numeric id, or a name the index's
/// vocabulary knows (e.g. a movielens genre `"Drama"`, a taobao behavior
/// type `"buy"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum IdOrName {
    /// A numeric id.
    Id(u64),
    /// A name.
    Name(String),
}

impl From<IdOrName> for hindsight_engine::IdOrName {
    fn from(v: IdOrName) -> Self {
        match v {
            IdOrName::Id(id) => hindsight_engine::IdOrName::Id(id),
            IdOrName::Name(s) => hindsight_engine::IdOrName::Name(s),
        }
    }
}

/// `POST /v1/score`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The user. One the index has never seen is scored with an empty
    /// history (cold start).
    pub user_id: u64,
    /// The items to score, 1 to `max_candidates` of them. Duplicates are
    /// allowed and scored alike.
    pub candidates: Vec<Candidate>,
    /// Only behaviors before this point are used (default: all).
    #[serde(default)]
    pub as_of: Option<AsOfParam>,
    /// When the candidates are shown, unix seconds: the history's time
    /// gaps are measured from it. Default: `as_of.timestamp` if given,
    /// else the server's clock.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Retrieval strategy: recent, sim-hard, ubr or hybrid. Default: the
    /// one the model was trained with.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Behaviors retrieved per candidate, 1 to the model's N (default).
    #[serde(default)]
    pub n: Option<usize>,
    /// Also return the behaviors retrieved for each candidate.
    #[serde(default)]
    pub explain: bool,
}

/// A candidate item. Without `category_id`, `categories` and `tags`, its
/// features are looked up in the index (from any behavior on the item);
/// an item the index has never seen is scored by its id alone
/// (out-of-vocabulary embedding).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    /// The item.
    pub item_id: u64,
    /// Its category (shorthand for a one-element `categories`).
    #[serde(default)]
    pub category_id: Option<IdOrName>,
    /// Its categories (movielens: genres).
    #[serde(default)]
    pub categories: Option<Vec<IdOrName>>,
    /// Its tags.
    #[serde(default)]
    pub tags: Option<Vec<IdOrName>>,
}

/// A point in a user's history: behaviors strictly before it are used.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AsOfParam {
    /// Only behaviors with a smaller sequence number.
    #[serde(default)]
    pub seq: Option<u32>,
    /// Only behaviors with a smaller timestamp (unix seconds).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// `POST /v1/score` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScoreResponse {
    /// The user.
    pub user_id: u64,
    /// Click probability of each candidate, in candidate order.
    pub scores: Vec<f32>,
    /// Model kind (sum_pool, din, dien, atrank, bst).
    pub model: String,
    /// Retrieval strategy used.
    pub strategy: String,
    /// N used.
    pub n: usize,
    /// The user's history length in the snapshot scored from.
    pub history_len: u64,
    /// With `explain`: the behaviors retrieved for each candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<Explanation>>,
    /// Where the time went, microseconds.
    pub timing_us: Timing,
}

/// Time spent on a score request, microseconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Timing {
    /// Retrieving the histories.
    pub retrieval: u64,
    /// Building the batch and the forward pass.
    pub model: u64,
    /// Of `model`, building the batch (featurizing the histories).
    pub batch: u64,
    /// In the worker, all included.
    pub total: u64,
}

/// `POST /v1/recommend`: recall with the server's SASRec model and its
/// ANN index, optionally re-ranked by the served CTR model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// The user. One with no behavior before the as-of point gets the
    /// index's most popular items, flagged `cold_start`.
    pub user_id: u64,
    /// How many items, 1 to `max_recommend` (default 20).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Re-rank the recalled candidates with the served CTR model.
    #[serde(default)]
    pub rank: bool,
    /// How many recalled candidates the CTR model ranks (with `rank`):
    /// k to `max_recommend`, default 200.
    #[serde(default)]
    pub candidates: Option<usize>,
    /// Leave out items the user interacted with before the as-of point
    /// (default true).
    #[serde(default = "default_true")]
    pub exclude_seen: bool,
    /// Only behaviors before this point are used (default: all).
    #[serde(default)]
    pub as_of: Option<AsOfParam>,
    /// When the items are shown, unix seconds (for the ranking model's time
    /// gaps). Default: `as_of.timestamp` if given, else the server's clock.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

fn default_k() -> usize {
    20
}

fn default_true() -> bool {
    true
}

/// One recommended item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendedItem {
    /// The item.
    pub item_id: u64,
    /// Inner product of the user and item vectors (cold start: the item's
    /// behavior count).
    pub recall_score: f32,
    /// Click probability from the CTR model (with `rank`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// `POST /v1/recommend` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendResponse {
    /// The user.
    pub user_id: u64,
    /// The items, best first (by `score` when ranked, else `recall_score`).
    pub items: Vec<RecommendedItem>,
    /// The user had no behavior before the as-of point: popular items.
    pub cold_start: bool,
    /// The user's history length before the as-of point.
    pub history_len: u64,
    /// `ann` or `exact` (no ANN index beside the recall model).
    pub search: String,
    /// The CTR model kind that ranked the items (with `rank`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranked_by: Option<String>,
    /// Where the time went, microseconds.
    pub timing_us: RecommendTiming,
}

/// Time spent on a recommend request, microseconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecommendTiming {
    /// The user vector, the search and the filtering of seen items.
    pub recall: u64,
    /// Retrieval and the CTR forward pass (with `rank`).
    pub rank: u64,
    /// In the worker, all included.
    pub total: u64,
}

/// The retrieved behaviors of one candidate.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The candidate.
    pub item_id: u64,
    /// The candidate's categories as used.
    pub categories: Vec<u64>,
    /// The candidate's tags as used.
    pub tags: Vec<u64>,
    /// Retrieved behaviors, most relevant first.
    pub behaviors: Vec<BehaviorOut>,
}

/// A behavior of a user's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BehaviorOut {
    /// Position in the user's history (0 = first).
    pub seq: u32,
    /// The item.
    pub item_id: u64,
    /// Its categories.
    pub categories: Vec<u64>,
    /// Its tags.
    pub tags: Vec<u64>,
    /// Behavior type name (its id when the index has no name for it).
    pub behavior_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    /// Retrieval score (explain only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// `POST /v1/behaviors`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// 1 to `max_append_behaviors` behaviors, any users, any order.
    pub behaviors: Vec<BehaviorIn>,
}

/// A behavior to append. A behavior equal to one already in the index
/// (same user, item, type and timestamp, counting repeats within the
/// request) is skipped, so retrying a request is safe.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BehaviorIn {
    /// The user (at most `hindsight_core::limits::MAX_USER_ID`, 2^40 - 1).
    pub user_id: u64,
    /// The item.
    pub item_id: u64,
    /// Its category (shorthand for a one-element `categories`).
    #[serde(default)]
    pub category_id: Option<IdOrName>,
    /// Its categories. Without categories and tags, the item's features
    /// are looked up in the index.
    #[serde(default)]
    pub categories: Option<Vec<IdOrName>>,
    /// Its tags.
    #[serde(default)]
    pub tags: Option<Vec<IdOrName>>,
    /// Behavior type, by name or id (default: the index's first type,
    /// e.g. `pv` for taobao).
    #[serde(default)]
    pub behavior_type: Option<IdOrName>,
    /// Unix seconds, 0 to `hindsight_core::limits::MAX_TIMESTAMP` (default:
    /// the server's clock).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// `POST /v1/behaviors` response: sent only once the behaviors are
/// committed (fsynced) and visible to retrieval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppendResponse {
    /// Behaviors added.
    pub added: u64,
    /// Behaviors skipped as already present.
    pub duplicates: u64,
    /// Behaviors in the index after the commit.
    pub index_behaviors: u64,
}

/// `GET /v1/users/{id}/behaviors` query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most behaviors to return, newest first (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only behaviors with a smaller sequence number.
    #[serde(default)]
    pub as_of_seq: Option<u32>,
    /// Only behaviors with a smaller timestamp.
    #[serde(default)]
    pub as_of_timestamp: Option<i64>,
}

/// `GET /v1/users/{id}/behaviors` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserBehaviors {
    /// The user.
    pub user_id: u64,
    /// Behaviors the user has in the index.
    pub history_len: u64,
    /// The newest behaviors before the as-of point, newest first.
    pub behaviors: Vec<BehaviorOut>,
}

/// `GET /healthz` and `GET /readyz` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, `draining`, or `not_ready`.
    pub status: String,
    /// The serving pair (readyz only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingInfo>,
    /// Why the server is not ready (`not_ready` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The model and index being served.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServingInfo {
    /// Increases by one with every successful reload.
    pub generation: u64,
    /// Model folder (absent in a server built without the `model`
    /// feature, which serves appends and reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_kind: Option<String>,
    /// Recall model folder, when `POST /v1/recommend` is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_model: Option<String>,
    /// The recall model's ANN folder (absent: exact search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ann: Option<String>,
    /// Strategy the model was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// N the model was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Index folder.
    pub index: String,
    /// Dataset mapping of the index.
    pub dataset: String,
    /// Behaviors in the index.
    pub index_behaviors: u64,
}

/// `POST /v1/admin/reload`: what to load (default: the current paths,
/// re-read from disk).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadRequest {
    /// A model folder.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub model: Option<PathBuf>,
    /// An index folder.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub index: Option<PathBuf>,
    /// A recall (SASRec) model folder; its ANN index is read from
    /// `RECALL_MODEL/ann` unless the server's `ann` setting names one.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub recall_model: Option<PathBuf>,
}
