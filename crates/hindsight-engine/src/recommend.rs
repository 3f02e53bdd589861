//! Recall then rank: "what should this user see", as the SmartNews Ads
//! design serves it.
//!
//! 1. **Recall.** A SASRec model (Kang & McAuley, ICDM 2018;
//!    `hindsight_model::TrainedRecall`) turns the user's most recent
//!    behaviors (as of a point in time) into a user vector; an HNSW index
//!    over the catalog's item vectors (`hindsight_recall::ann`) returns the
//!    items of largest inner product with it. Items the user already
//!    interacted with before the as-of point are dropped unless asked
//!    for.
//! 2. **Rank** (optional). The top recalled candidates (default 200) go
//!    through a CTR model with retrieved histories (the existing
//!    [`Scorer`]) in the same call, and come back re-ordered by its click
//!    probability, with both scores.
//!
//! A user with no eligible behavior gets the most popular items of the
//! index (by behavior count), flagged as a cold start.
//!
//! Without an ANN index beside the model the recommender searches the
//! catalog exactly (a brute-force inner product over every item): correct,
//! and fast enough for catalogs of a few hundred thousand items.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use hindsight_core::{AsOf, Behavior, ItemFeatures, ItemId, Target, UserId};
use hindsight_index::{BehaviorIndex, Snapshot};
use hindsight_model::{Device, TrainedRecall};
use hindsight_recall::ann::{AnnIndex, ExactIndex};
pub use hindsight_recall::catalog_of;
use hindsight_recall::CatalogScorer;

use crate::{EngineError, Result, ScoreInput, Scorer};

/// The most items one call may return, and the most candidates it may
/// rank.
pub const MAX_RECOMMEND: usize = 1000;

/// How many recalled candidates go through the ranking model by default.
pub const DEFAULT_RANK_CANDIDATES: usize = 200;

/// How many popular items are kept for cold-start answers.
const POPULAR_KEPT: usize = MAX_RECOMMEND;

/// The catalog search a recommender uses.
enum Search {
    /// The HNSW index saved beside the model.
    Ann(AnnIndex),
    /// Brute force over every catalog item (no ANN index was found).
    Exact(ExactIndex),
}

impl Search {
    fn search(&self, query: &[f32], k: usize) -> Result<Vec<(ItemId, f32)>> {
        Ok(match self {
            Search::Ann(a) => a.search(query, k)?,
            Search::Exact(e) => e.search(query, k)?,
        })
    }

    fn len(&self) -> usize {
        match self {
            Search::Ann(a) => a.len(),
            Search::Exact(e) => e.len(),
        }
    }
}

/// A recall model, the search over its item vectors, and the index's most
/// popular items (the cold-start answer).
pub struct Recommender {
    replicas: Vec<Mutex<TrainedRecall>>,
    search: Search,
    popular: Vec<(ItemId, f32)>,
    model_path: PathBuf,
    ann_path: Option<PathBuf>,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("model_path", &self.model_path)
            .field("ann_path", &self.ann_path)
            .field("catalog", &self.search.len())
            .finish()
    }
}

/// What to recommend.
#[derive(Debug, Clone)]
pub struct RecommendInput<'a> {
    /// The user.
    pub user_id: UserId,
    /// How many items to return (1 to [`MAX_RECOMMEND`]).
    pub k: usize,
    /// Only behaviors before this point are used (and excluded as seen).
    pub as_of: AsOf,
    /// Drop items the user interacted with before the as-of point.
    pub exclude_seen: bool,
    /// Re-rank the recalled candidates with a CTR model.
    pub rank: Option<RankWith<'a>>,
    /// When the items are shown (unix seconds), for the ranking model's
    /// time gaps.
    pub timestamp: i64,
}

/// The ranking step of a recommendation.
#[derive(Debug, Clone, Copy)]
pub struct RankWith<'a> {
    /// The CTR model (with its retrieval settings).
    pub scorer: &'a Scorer,
    /// How many recalled candidates it scores (at least `k`, at most
    /// [`MAX_RECOMMEND`]).
    pub candidates: usize,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The item.
    pub item_id: ItemId,
    /// Its recall score: the inner product of the user and item vectors
    /// (for a cold start, the item's behavior count in the index).
    pub recall_score: f32,
    /// Its click probability from the ranking model, when ranked.
    pub rank_score: Option<f32>,
}

/// The answer to a [`RecommendInput`].
#[derive(Debug, Clone)]
pub struct Recommended {
    /// The items, best first (by rank score when ranked, else by recall
    /// score).
    pub items: Vec<Recommendation>,
    /// The user had no eligible behavior: the items are the most popular.
    pub cold_start: bool,
    /// The user's eligible history length.
    pub history_len: u64,
    /// Behaviors the user vector was computed from.
    pub used_behaviors: usize,
    /// Seconds spent in recall (user vector, search, filtering).
    pub recall_secs: f64,
    /// Seconds spent ranking (retrieval and the CTR forward pass).
    pub rank_secs: f64,
}

impl Recommender {
    /// Loads `replicas` (at least 1) copies of the recall model in
    /// `model_dir`, and the ANN index in `ann_dir` (default
    /// `model_dir/ann`; refused if it was built from another checkpoint).
    /// Without an ANN index there, the catalog of `index` is embedded now
    /// and searched exactly.
    pub fn load(
        model_dir: impl AsRef<Path>,
        ann_dir: Option<&Path>,
        device: Device,
        index: &BehaviorIndex,
        replicas: usize,
    ) -> Result<Recommender> {
        let model_dir = model_dir.as_ref();
        let device = device.resolve()?;
        let model = TrainedRecall::load(model_dir, device)?;
        let default_ann = model_dir.join("ann");
        let ann_dir = ann_dir.map(Path::to_path_buf).or_else(|| {
            default_ann
                .join(hindsight_recall::ann::MANIFEST)
                .exists()
                .then_some(default_ann)
        });
        let snapshot = index.snapshot();
        let search = match &ann_dir {
            Some(dir) => Search::Ann(AnnIndex::load(dir, model.weights_sha256())?),
            None => {
                let catalog = catalog_of(&snapshot);
                Search::Exact(exact_index(&model, &catalog)?)
            }
        };
        let mut replica_models = vec![Mutex::new(model)];
        for _ in 1..replicas {
            replica_models.push(Mutex::new(TrainedRecall::load(model_dir, device)?));
        }
        Ok(Recommender {
            replicas: replica_models,
            search,
            popular: popular_items(&snapshot, POPULAR_KEPT),
            model_path: model_dir.to_path_buf(),
            ann_path: ann_dir,
        })
    }

    /// The recall model's folder.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The ANN index's folder, or `None` when the catalog is searched
    /// exactly.
    pub fn ann_path(&self) -> Option<&Path> {
        self.ann_path.as_deref()
    }

    /// Items the search covers.
    pub fn catalog_len(&self) -> usize {
        self.search.len()
    }

    /// The SHA-256 of the recall model's weights.
    pub fn weights_sha256(&self) -> String {
        self.with_model(|m| m.weights_sha256().to_owned())
    }

    /// Runs `f` on a free replica (or waits on the first).
    fn with_model<T>(&self, f: impl FnOnce(&TrainedRecall) -> T) -> T {
        for r in &self.replicas {
            if let Ok(m) = r.try_lock() {
                return f(&m);
            }
        }
        f(&self.replicas[0].lock().expect("recall model lock"))
    }

    /// Recommends `input.k` items to a user from `snapshot`.
    pub fn recommend(
        &self,
        snapshot: &Snapshot,
        input: &RecommendInput<'_>,
    ) -> Result<Recommended> {
        check_k(input.k)?;
        if let Some(rank) = &input.rank {
            if rank.candidates < input.k || rank.candidates > MAX_RECOMMEND {
                return Err(EngineError::InvalidInput(format!(
                    "the number of candidates to rank must be between k ({}) and {MAX_RECOMMEND}, got {}",
                    input.k, rank.candidates
                )));
            }
        }
        let t0 = Instant::now();
        let history = snapshot.history(input.user_id);
        let max_len = self.with_model(|m| m.config().max_len);
        let mut recent = history.newest(&input.as_of, max_len);
        recent.reverse();
        let mut seen = HashSet::new();
        let mut history_len = 0u64;
        history.for_each_newest_first(&input.as_of, |i, doc| {
            history_len += 1;
            if input.exclude_seen {
                seen.insert(history.runs()[i].seg.item(doc));
            }
            true
        });
        let wanted = input.rank.map_or(input.k, |r| r.candidates);
        let cold_start = recent.is_empty();
        let recalled = if cold_start {
            self.popular.iter().take(wanted).copied().collect()
        } else {
            let user = self.with_model(|m| m.user_vectors(&[recent.as_slice()]))?;
            self.search_unseen(&user, wanted, &seen)?
        };
        let t1 = Instant::now();
        let mut items: Vec<Recommendation> = recalled
            .iter()
            .map(|&(item_id, recall_score)| Recommendation {
                item_id,
                recall_score,
                rank_score: None,
            })
            .collect();
        if let Some(rank) = &input.rank {
            rank_items(snapshot, input, rank.scorer, &mut items)?;
        }
        items.truncate(input.k);
        Ok(Recommended {
            items,
            cold_start,
            history_len,
            used_behaviors: recent.len(),
            recall_secs: (t1 - t0).as_secs_f64(),
            rank_secs: t1.elapsed().as_secs_f64(),
        })
    }

    /// The `wanted` nearest items not in `seen`: asks the search for more
    /// until enough are left or the catalog is exhausted.
    fn search_unseen(
        &self,
        user: &[f32],
        wanted: usize,
        seen: &HashSet<ItemId>,
    ) -> Result<Vec<(ItemId, f32)>> {
        let catalog = self.search.len();
        let mut ask = (wanted + seen.len().min(wanted))
            .min(catalog)
            .min(hindsight_recall::ann::MAX_K);
        loop {
            let found = self.search.search(user, ask)?;
            let exhausted =
                ask >= catalog || ask >= hindsight_recall::ann::MAX_K || found.len() < ask;
            let kept: Vec<(ItemId, f32)> = found
                .into_iter()
                .filter(|(i, _)| !seen.contains(i))
                .collect();
            if kept.len() >= wanted || exhausted {
                return Ok(kept.into_iter().take(wanted).collect());
            }
            ask = (ask * 2).min(catalog).min(hindsight_recall::ann::MAX_K);
        }
    }
}

/// Scores `items` with the CTR model and orders them by its score.
fn rank_items(
    snapshot: &Snapshot,
    input: &RecommendInput<'_>,
    scorer: &Scorer,
    items: &mut [Recommendation],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let targets = items
        .iter()
        .map(|r| {
            Ok(Target {
                item_id: r.item_id,
                features: snapshot.item_features(r.item_id)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<Target>>>()?;
    let scored = scorer.score(
        snapshot,
        &ScoreInput {
            user_id: input.user_id,
            targets: &targets,
            as_of: input.as_of,
            filter: Default::default(),
            strategy: None,
            n: None,
            timestamp: input.timestamp,
        },
    )?;
    for (r, s) in items.iter_mut().zip(scored.scores) {
        r.rank_score = Some(s);
    }
    // Stable: equal click probabilities keep their recall order.
    items.sort_by(|a, b| {
        b.rank_score
            .partial_cmp(&a.rank_score)
            .expect("finite scores")
    });
    Ok(())
}

/// `k` must be between 1 and [`MAX_RECOMMEND`].
pub fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_RECOMMEND {
        return Err(EngineError::InvalidInput(format!(
            "k must be between 1 and {MAX_RECOMMEND}, got {k}"
        )));
    }
    Ok(())
}

/// The `keep` items with the most behaviors in the snapshot, with their
/// counts (ties by smaller id).
fn popular_items(snapshot: &Snapshot, keep: usize) -> Vec<(ItemId, f32)> {
    let mut counts: std::collections::HashMap<ItemId, u64> = std::collections::HashMap::new();
    snapshot.for_each_item(|item, _| *counts.entry(item).or_default() += 1);
    let mut items: Vec<(ItemId, u64)> = counts.into_iter().collect();
    items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    items.truncate(keep);
    items.into_iter().map(|(i, c)| (i, c as f32)).collect()
}

/// Item vectors of the whole catalog, in catalog order, computed in chunks.
pub fn catalog_vectors(
    model: &TrainedRecall,
    catalog: &[(ItemId, ItemFeatures)],
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(catalog.len() * model.dim());
    for chunk in catalog.chunks(8192) {
        out.extend(model.item_vectors(chunk)?);
    }
    Ok(out)
}

/// Brute-force search over the catalog's item vectors.
fn exact_index(model: &TrainedRecall, catalog: &[(ItemId, ItemFeatures)]) -> Result<ExactIndex> {
    let vectors = catalog_vectors(model, catalog)?;
    let ids: Vec<ItemId> = catalog.iter().map(|(i, _)| *i).collect();
    Ok(ExactIndex::build(&ids, &vectors, model.dim())?)
}

/// A recall model scoring the whole catalog of a split, for
/// `hindsight_recall::eval` (full ranking, no sampled metrics).
pub struct RecallModelScorer {
    model: Mutex<TrainedRecall>,
    items: Vec<f32>,
    dim: usize,
    max_len: usize,
    name: String,
}

impl RecallModelScorer {
    /// Embeds `catalog` (the split's, in its order) with `model`.
    pub fn new(
        model: TrainedRecall,
        catalog: &[(ItemId, ItemFeatures)],
        name: impl Into<String>,
    ) -> Result<RecallModelScorer> {
        let items = catalog_vectors(&model, catalog)?;
        Ok(RecallModelScorer {
            dim: model.dim(),
            max_len: model.config().max_len,
            model: Mutex::new(model),
            items,
            name: name.into(),
        })
    }
}

impl CatalogScorer for RecallModelScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn score_catalog(&self, _user: UserId, history: &[Behavior], out: &mut [f32]) {
        let recent = &history[history.len().saturating_sub(self.max_len)..];
        let user = self
            .model
            .lock()
            .expect("recall model lock")
            .user_vectors(&[recent])
            .expect("a loaded recall model embeds any history");
        for (o, item) in out.iter_mut().zip(self.items.chunks_exact(self.dim)) {
            *o = item.iter().zip(&user).map(|(a, b)| a * b).sum();
        }
    }
}
