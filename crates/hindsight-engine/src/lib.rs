//! The engine: retrieval, featurization and scoring behind one API, used
//! by the offline jobs (train, evaluate, the evaluation [`grid`]) and by
//! the HTTP server (`hindsight-server` scores through [`Scorer`]), so that
//! what is measured offline is what is served.
//!
//! A trained model records the retrieval it was trained with
//! ([`RetrievalSettings`]: strategy, N, the index's dataset mapping);
//! evaluating or serving it against an index of another mapping, or with
//! other retrieval settings, is refused.
//!
//! # Features
//!
//! `model` (default): everything that needs a CTR model, hence libtorch
//! (through `hindsight-model`): training and evaluation on [`Prepared`]
//! samples, the evaluation [`grid`], online scoring ([`Scorer`]). Without
//! it the crate builds without libtorch and offers what does not need a
//! model: [`RetrievalSettings`], [`Prepared`] samples with their retrieved
//! histories, and the report types ([`EvalReport`], [`Metrics`]).
//!
//! With `model`, [`Recommender`] answers "what should this user see":
//! recall with a SASRec model and an ANN index over the catalog, then
//! optionally ranking through [`Scorer`] (see `recommend.rs`).

use std::time::Instant;

#[cfg(feature = "model")]
pub mod grid;
#[cfg(feature = "model")]
mod recommend;
#[cfg(feature = "model")]
mod score;
#[cfg(feature = "model")]
mod train;
#[cfg(feature = "model")]
pub use recommend::{
    catalog_of, catalog_vectors, check_k, RankWith, RecallModelScorer, RecommendInput,
    Recommendation, Recommended, Recommender, DEFAULT_RANK_CANDIDATES, MAX_RECOMMEND,
};
#[cfg(feature = "model")]
pub use score::{ScoreInput, Scored, Scorer};
mod target;
pub use target::{
    resolve_behavior_type, resolve_ids, resolve_target, FeatureOverrides, IdOrName, TargetRequest,
    VocabKind,
};
#[cfg(feature = "model")]
pub use train::TrainProgress;

use hindsight_core::Behavior;
pub use hindsight_embeddings::Embeddings;
use hindsight_index::BehaviorIndex;
use hindsight_retrieval::{Retriever, StrategyKind};
use hindsight_samples::{build_samples, retrieve_histories, Protocol, Sample, SampleCounts, Split};
use serde::{Deserialize, Serialize};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] hindsight_index::IndexError),
    /// Sampling or retrieval failed.
    #[error(transparent)]
    Samples(#[from] hindsight_samples::SampleError),
    /// The model failed.
    #[cfg(feature = "model")]
    #[error(transparent)]
    Model(#[from] hindsight_model::ModelError),
    /// Model and index (or settings) do not belong together.
    #[error("{0}")]
    Mismatch(String),
    /// A scoring input the model cannot take (e.g. N above the model's).
    #[error("{0}")]
    InvalidInput(String),
    /// A request names a category, tag or behavior type the index does not
    /// know.
    #[error("{0}")]
    UnknownName(String),
    /// Retrieval failed.
    #[error(transparent)]
    Retrieval(#[from] hindsight_retrieval::RetrievalError),
    /// Recall (the split, its evaluation, the ANN index) failed.
    #[error(transparent)]
    Recall(#[from] hindsight_recall::RecallError),
    /// An evaluation grid was given no strategies or no models.
    #[error("the evaluation grid has no {0}; give at least one")]
    EmptyGrid(&'static str),
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The retrieval a model was trained with, stored in its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalSettings {
    /// The strategy.
    pub strategy: StrategyKind,
    /// Budget N.
    pub n: usize,
    /// Dataset mapping name of the index trained on.
    pub mapping: String,
    /// The sampling protocol.
    pub protocol: Protocol,
    /// Behaviors in the index at training time (informative).
    pub index_behaviors: u64,
    /// The item embeddings an embedding strategy (`sim-soft`, `eta`,
    /// `sdim`) retrieved with: absent for the other strategies and in
    /// checkpoints trained before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingsUsed>,
}

/// Which item embeddings a model's retrieval used (recorded in its
/// checkpoint; serving and evaluation refuse other embeddings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingsUsed {
    /// sha256 of the weights of the checkpoint the vectors came from.
    pub weights_sha256: String,
    /// Where that checkpoint was (informative).
    pub model_path: String,
    /// How the codes were computed (bits, rounds, seed).
    pub hash: hindsight_embeddings::HashSettings,
}

impl EmbeddingsUsed {
    /// What `emb` is.
    pub fn of(emb: &Embeddings) -> EmbeddingsUsed {
        let m = emb.store().meta();
        EmbeddingsUsed {
            weights_sha256: m.model.weights_sha256.clone(),
            model_path: m.model.path.clone(),
            hash: m.hash,
        }
    }
}

impl std::fmt::Display for EmbeddingsUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.hash;
        write!(
            f,
            "the item embeddings of {} (weights sha256 {}, {}-bit ETA codes, SDIM {}x{} bits, seed {})",
            self.model_path,
            &self.weights_sha256[..self.weights_sha256.len().min(12)],
            h.eta_bits,
            h.sdim_rounds,
            h.sdim_bits,
            h.seed
        )
    }
}

impl RetrievalSettings {
    /// Fails unless `index` was built with the same dataset mapping.
    pub fn check_index(&self, index: &BehaviorIndex) -> Result<()> {
        let found = &index.manifest().mapping_name;
        if *found != self.mapping {
            return Err(EngineError::Mismatch(format!(
                "the model was trained on a {:?} index but {} is a {:?} index; evaluate it on an index of the same dataset",
                self.mapping,
                index.path().display(),
                found
            )));
        }
        Ok(())
    }

    /// Fails unless `found` (the embeddings attached to the index now) are
    /// the ones this model's retrieval used; nothing to check for a
    /// strategy that does not rank by embeddings.
    pub fn check_embeddings(&self, found: Option<&Embeddings>) -> Result<()> {
        if !self.strategy.needs_embeddings() {
            return Ok(());
        }
        let Some(used) = &self.embeddings else {
            return Err(EngineError::Mismatch(format!(
                "the model's {} retrieval records no item embeddings; retrain it with `hindsight train --strategy {} --retrieval-model MODEL`",
                self.strategy, self.strategy
            )));
        };
        let Some(found) = found else {
            return Err(EngineError::Mismatch(format!(
                "the model retrieves with {} over {used}, and the index has no item embeddings; attach them with `hindsight embeddings attach --index INDEX --model {}`",
                self.strategy, used.model_path
            )));
        };
        let found = EmbeddingsUsed::of(found);
        if found.weights_sha256 != used.weights_sha256 || found.hash != used.hash {
            return Err(EngineError::Mismatch(format!(
                "the model was trained on {} retrieval over {used}, but the index's attached embeddings are {found}; attach the model's retrieval checkpoint again (`hindsight embeddings attach --model {}` with the same --bits, --sdim-rounds, --sdim-bits, --seed) or retrain",
                self.strategy, used.model_path
            )));
        }
        Ok(())
    }
}

/// Samples of the protocol with their retrieved histories, for one
/// (strategy, N): computed once, shared by every model trained on them.
pub struct Prepared {
    /// The samples.
    pub samples: Vec<Sample>,
    /// `histories[i]` is the retrieved history of `samples[i]`.
    pub histories: Vec<Vec<Behavior>>,
    /// Counts.
    pub counts: SampleCounts,
    /// The retrieval settings.
    pub settings: RetrievalSettings,
    /// Seconds spent retrieving.
    pub retrieval_secs: f64,
}

impl Prepared {
    /// Builds the samples of `index` and retrieves their histories.
    pub fn new(
        index: &BehaviorIndex,
        strategy: StrategyKind,
        n: usize,
        protocol: Protocol,
        threads: usize,
    ) -> Result<Prepared> {
        let snap = index.snapshot();
        let (samples, counts) = build_samples(&snap, &protocol)?;
        let t0 = Instant::now();
        let retriever = Retriever::for_index(strategy, index)?;
        let histories = retrieve_histories(&snap, &samples, &retriever, n, threads)?;
        Ok(Prepared {
            samples,
            histories,
            counts,
            settings: RetrievalSettings {
                strategy,
                n,
                mapping: index.manifest().mapping_name.clone(),
                protocol,
                index_behaviors: snap.num_behaviors(),
                embeddings: retriever.embeddings().map(|e| EmbeddingsUsed::of(e)),
            },
            retrieval_secs: t0.elapsed().as_secs_f64(),
        })
    }

    /// Fails unless the embeddings these samples were retrieved with come
    /// from the checkpoint whose weights hash to `weights_sha256` (what
    /// `hindsight train --retrieval-model` asks).
    pub fn check_retrieval_model(&self, weights_sha256: &str, model: &str) -> Result<()> {
        match &self.settings.embeddings {
            None => Err(EngineError::Mismatch(format!(
                "--retrieval-model {model} is for the embedding strategies (sim-soft, eta, sdim); {} does not use item embeddings",
                self.settings.strategy
            ))),
            Some(used) if used.weights_sha256 != weights_sha256 => Err(EngineError::Mismatch(format!(
                "the index's attached item embeddings are {used}, not those of {model}; attach them first: `hindsight embeddings attach --index INDEX --model {model}`"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// History lengths (before the target) of one split, in sample order.
    pub fn history_lens(&self, split: Split) -> Vec<u32> {
        self.samples
            .iter()
            .filter(|s| s.split == split)
            .map(|s| s.history_len())
            .collect()
    }
}

/// AUC, gAUC and logloss of a set of samples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    /// Samples in the set.
    pub samples: usize,
    /// AUC (`None` if one class is absent).
    pub auc: Option<f64>,
    /// Group AUC by user.
    pub gauc: Option<f64>,
    /// Logloss.
    pub logloss: Option<f64>,
}

/// Metrics of a history-length bucket `[from, to)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    /// Shortest history in the bucket.
    pub from: u32,
    /// One past the longest.
    pub to: u32,
    /// Metrics.
    pub metrics: Metrics,
}

/// The evaluation of one model on the test split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Model kind.
    pub model: String,
    /// Retrieval strategy.
    pub strategy: String,
    /// Budget N.
    pub n: usize,
    /// Dataset mapping name.
    pub dataset: String,
    /// All test samples.
    pub all: Metrics,
    /// Samples whose history is longer than `long_history_threshold`.
    pub long_history: Metrics,
    /// The threshold of the long-history slice.
    pub long_history_threshold: u32,
    /// The new-item slice: pairs whose positive item is not in the user's
    /// history before the target, with their negatives. `None` only in
    /// reports written before the slice existed.
    #[serde(default)]
    pub new_item: Option<Metrics>,
    /// Metrics by history-length bucket.
    pub by_history: Vec<Bucket>,
    /// Test samples scored per second (batched, no grad).
    pub inference_samples_per_sec: f64,
    /// Device used.
    pub device: String,
}

#[cfg(all(test, feature = "model"))]
mod tests;
