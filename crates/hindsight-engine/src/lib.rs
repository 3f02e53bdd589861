//! The engine: retrieval, featurization and scoring behind one API, used
//! by the offline jobs (train, evaluate) and, later, the server alike, so
//! that what is measured offline is what is served.
//!
//! A trained model records the retrieval it was trained with
//! ([`RetrievalSettings`]: strategy, N, the index's dataset mapping);
//! evaluating or serving it against an index of another mapping, or with
//! other retrieval settings, is refused.

use std::time::Instant;

mod score;
pub use score::{ScoreInput, Scored, Scorer};
mod target;
pub use target::{
    resolve_behavior_type, resolve_ids, resolve_target, FeatureOverrides, IdOrName, TargetRequest,
    VocabKind,
};

use hindsight_core::metrics::{auc, gauc, logloss};
use hindsight_core::Behavior;
use hindsight_index::BehaviorIndex;
use hindsight_model::{train, Example, ModelConfig, TrainOptions, TrainReport, TrainedModel};
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
}

impl RetrievalSettings {
    /// The settings recorded in a trained model.
    pub fn of(model: &TrainedModel) -> Result<RetrievalSettings> {
        serde_json::from_value(model.retrieval().clone()).map_err(|e| {
            EngineError::Mismatch(format!(
                "the model's config.json has no valid retrieval settings ({e}); retrain it with `hindsight train`"
            ))
        })
    }

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
        let histories = retrieve_histories(&snap, &samples, &Retriever::new(strategy), n, threads)?;
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
            },
            retrieval_secs: t0.elapsed().as_secs_f64(),
        })
    }

    /// The model examples of one split.
    pub fn examples(&self, split: Split) -> Vec<Example> {
        self.samples
            .iter()
            .zip(&self.histories)
            .filter(|(s, _)| s.split == split)
            .map(|(s, h)| Example {
                user_id: s.user_id,
                label: s.label,
                target: s.target.clone(),
                timestamp: s.timestamp,
                history: h.clone(),
            })
            .collect()
    }

    /// History lengths (before the target) of one split, in sample order.
    pub fn history_lens(&self, split: Split) -> Vec<u32> {
        self.samples
            .iter()
            .filter(|s| s.split == split)
            .map(|s| s.history_len())
            .collect()
    }

    /// Trains a model on the train split, early-stopping on the valid split.
    pub fn train(
        &self,
        cfg: &ModelConfig,
        opts: TrainOptions,
    ) -> Result<(TrainedModel, TrainReport)> {
        let (tr, va) = (self.examples(Split::Train), self.examples(Split::Valid));
        let (mut model, report) = train(cfg, &tr, &va, opts)?;
        model.set_retrieval(serde_json::to_value(&self.settings).expect("settings serialize"));
        Ok((model, report))
    }

    /// Evaluates a model on the test split.
    pub fn evaluate(&self, model: &TrainedModel) -> Result<EvalReport> {
        let settings = RetrievalSettings::of(model)?;
        if settings.strategy != self.settings.strategy || settings.n != self.settings.n {
            return Err(EngineError::Mismatch(format!(
                "the model was trained with {} N={} but the samples were retrieved with {} N={}",
                settings.strategy, settings.n, self.settings.strategy, self.settings.n
            )));
        }
        let test = self.examples(Split::Test);
        if test.is_empty() {
            return Err(EngineError::Mismatch("the test split is empty".into()));
        }
        let lens = self.history_lens(Split::Test);
        let t0 = Instant::now();
        let probs = model.score(&test)?;
        let secs = t0.elapsed().as_secs_f64();
        let labels: Vec<u8> = test.iter().map(|e| e.label).collect();
        let users: Vec<u64> = test.iter().map(|e| e.user_id).collect();
        let slice = |keep: &dyn Fn(u32) -> bool| {
            let idx: Vec<usize> = (0..test.len()).filter(|&i| keep(lens[i])).collect();
            let p: Vec<f32> = idx.iter().map(|&i| probs[i]).collect();
            let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
            let u: Vec<u64> = idx.iter().map(|&i| users[i]).collect();
            Metrics {
                samples: idx.len(),
                auc: auc(&p, &l),
                gauc: gauc(&u, &p, &l),
                logloss: if idx.is_empty() {
                    None
                } else {
                    Some(logloss(&p, &l))
                },
            }
        };
        let long = self.settings.protocol.long_history;
        let buckets = [(20, 50), (50, 100), (100, 200), (200, 500), (500, u32::MAX)];
        Ok(EvalReport {
            model: model.config().kind.as_str().to_owned(),
            strategy: settings.strategy.as_str().to_owned(),
            n: settings.n,
            dataset: settings.mapping.clone(),
            all: slice(&|_| true),
            long_history: slice(&|l| l > long),
            long_history_threshold: long,
            by_history: buckets
                .iter()
                .map(|&(lo, hi)| (lo, hi, slice(&|l| l >= lo && l < hi)))
                .filter(|b| b.2.samples > 0)
                .map(|(lo, hi, m)| Bucket {
                    from: lo,
                    to: hi,
                    metrics: m,
                })
                .collect(),
            inference_samples_per_sec: test.len() as f64 / secs.max(1e-9),
            device: hindsight_model::device_name(model.device()),
        })
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
    /// Metrics by history-length bucket.
    pub by_history: Vec<Bucket>,
    /// Test samples scored per second (batched, no grad).
    pub inference_samples_per_sec: f64,
    /// Device used.
    pub device: String,
}

#[cfg(test)]
mod tests;
