//! Online scoring: one user, many candidate items, one snapshot, one
//! batched forward pass. This is what the HTTP server calls per request,
//! built from the same retrieval and featurization as training.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hindsight_core::{AsOf, BehaviorFilter, Target};
use hindsight_index::{BehaviorIndex, Snapshot};
use hindsight_model::{Device, Example, TrainedModel};
use hindsight_retrieval::{Query, RetrievalContext, Retrieved, Retriever, StrategyKind};

use crate::{Embeddings, EngineError, Result, RetrievalSettings};

/// A trained model with the retrieval settings it was trained with, checked
/// against the index it serves.
///
/// A [`TrainedModel`] runs one forward pass at a time (libtorch modules are
/// not `Sync`), so a scorer holds one replica of the weights per thread
/// that should score in parallel; each call takes a free replica.
#[derive(Debug)]
pub struct Scorer {
    replicas: Vec<TrainedModel>,
    free: Mutex<Vec<usize>>,
    settings: RetrievalSettings,
    embeddings: Option<Arc<Embeddings>>,
}

/// What to score.
#[derive(Debug, Clone)]
pub struct ScoreInput<'a> {
    /// The user (one with no history is scored with an empty history).
    pub user_id: u64,
    /// The candidates, with the features retrieval queries by.
    pub targets: &'a [Target],
    /// Only behaviors before this point are used.
    pub as_of: AsOf,
    /// Behavior-type and time-window filter of retrieval.
    pub filter: BehaviorFilter,
    /// Retrieval strategy (default: the model's).
    pub strategy: Option<StrategyKind>,
    /// Budget N (default and maximum: the model's).
    pub n: Option<usize>,
    /// When the candidates are shown (unix seconds): time gaps of the
    /// history are measured from it.
    pub timestamp: i64,
}

/// Scores of one [`ScoreInput`], in candidate order.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Click probability of each candidate.
    pub scores: Vec<f32>,
    /// The behaviors retrieved for each candidate, most relevant first.
    pub retrieved: Vec<Vec<Retrieved>>,
    /// The user's history length in the snapshot scored from.
    pub history_len: u64,
    /// Seconds spent retrieving.
    pub retrieval_secs: f64,
    /// Seconds spent building the batch and in the forward pass.
    pub model_secs: f64,
    /// Of `model_secs`, seconds spent building the batch (featurizing).
    pub batch_secs: f64,
}

impl Scorer {
    /// Loads `replicas` (at least 1) copies of the model in `dir` onto
    /// `device` and checks that it was trained on an index of the same
    /// dataset as `index`.
    pub fn load(
        dir: impl AsRef<Path>,
        device: Device,
        index: &BehaviorIndex,
        replicas: usize,
    ) -> Result<Scorer> {
        let dir = dir.as_ref();
        let mut scorer = Scorer::new(TrainedModel::load(dir, device)?, index)?;
        for i in 1..replicas {
            scorer.replicas.push(TrainedModel::load(dir, device)?);
            scorer.free.get_mut().expect("fresh lock").push(i);
        }
        Ok(scorer)
    }

    /// Wraps a loaded model (one replica); checks it against `index`.
    pub fn new(model: TrainedModel, index: &BehaviorIndex) -> Result<Scorer> {
        let settings = RetrievalSettings::of(&model)?;
        settings.check_index(index)?;
        // The index's item embeddings: required (and checked) when the
        // model's strategy ranks by them, else loaded when attached (for
        // requests that pick an embedding strategy).
        let embeddings = if settings.strategy.needs_embeddings() {
            let e = Embeddings::open(index).map_err(hindsight_retrieval::RetrievalError::from)?;
            settings.check_embeddings(Some(&e))?;
            Some(Arc::new(e))
        } else if hindsight_embeddings::store_path(index.path()).is_file() {
            Embeddings::open(index).ok().map(Arc::new)
        } else {
            None
        };
        if settings.n != model.n() {
            return Err(EngineError::Mismatch(format!(
                "the model's retrieval settings say N={} but its batches hold N={}; retrain it",
                settings.n,
                model.n()
            )));
        }
        Ok(Scorer {
            replicas: vec![model],
            free: Mutex::new(vec![0]),
            settings,
            embeddings,
        })
    }

    /// The item embeddings attached to the index, when loaded (call
    /// [`Embeddings::warm`] with each new snapshot).
    pub fn embeddings(&self) -> Option<&Arc<Embeddings>> {
        self.embeddings.as_ref()
    }

    /// The model (its first replica).
    pub fn model(&self) -> &TrainedModel {
        &self.replicas[0]
    }

    /// Number of replicas of the weights.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Scores a batch on a free replica (or, when all are busy, waits on
    /// one of them).
    fn forward(&self, examples: &[Example]) -> Result<(Vec<f32>, f64)> {
        let taken = self.free.lock().expect("replica list").pop();
        let i = taken.unwrap_or(0);
        let result = batch_and_score(&self.replicas[i], examples);
        if taken.is_some() {
            self.free.lock().expect("replica list").push(i);
        }
        result
    }

    /// The retrieval settings the model was trained with.
    pub fn settings(&self) -> &RetrievalSettings {
        &self.settings
    }

    /// Retrieves a history for every target from `snapshot` and scores all
    /// targets in one forward pass.
    pub fn score(&self, snapshot: &Snapshot, input: &ScoreInput<'_>) -> Result<Scored> {
        let n = input.n.unwrap_or(self.settings.n);
        if n == 0 || n > self.settings.n {
            return Err(EngineError::InvalidInput(format!(
                "n must be between 1 and {} (the N the model was trained with), got {n}",
                self.settings.n
            )));
        }
        if input.targets.is_empty() {
            return Err(EngineError::InvalidInput(
                "there is nothing to score: give at least one candidate".into(),
            ));
        }
        let strategy = input.strategy.unwrap_or(self.settings.strategy);
        let t0 = Instant::now();
        let queries: Vec<Query<'_>> = input
            .targets
            .iter()
            .map(|t| {
                Query::new(t, n)
                    .as_of(input.as_of)
                    .filter(input.filter.clone())
            })
            .collect();
        // One history (the user's runs in this snapshot) serves every
        // candidate's retrieval and the reported length.
        let history = snapshot.history(input.user_id);
        let history_len = history.len();
        if let Some(e) = &self.embeddings {
            // Codes of segments appended since the last request (a read
            // lock when there are none), and sim-soft's quantised vectors
            // when it is the strategy.
            if strategy == StrategyKind::SimSoft {
                e.warm_soft(snapshot);
            } else {
                e.warm(snapshot);
            }
        }
        let ctx = RetrievalContext {
            embeddings: self.embeddings.clone(),
        };
        // The batch path: what candidates share (postings of a category,
        // the pass over the history of the embedding strategies) is done
        // once; each candidate's result equals its single query's.
        let retrieved = Retriever::for_kind(strategy, &ctx)?
            .retrieve_batch_in(&history, &queries)?
            .to_vecs();
        let t1 = Instant::now();
        let examples: Vec<Example> = input
            .targets
            .iter()
            .zip(&retrieved)
            .map(|(t, r)| Example {
                user_id: input.user_id,
                label: 0,
                target: t.clone(),
                timestamp: input.timestamp,
                history: r.iter().map(|r| r.behavior.clone()).collect(),
            })
            .collect();
        let (scores, batch_secs) = self.forward(&examples)?;
        Ok(Scored {
            scores,
            retrieved,
            history_len,
            retrieval_secs: (t1 - t0).as_secs_f64(),
            model_secs: t1.elapsed().as_secs_f64(),
            batch_secs,
        })
    }
}

/// Scores on one replica; returns the scores and the seconds spent building
/// the batch.
fn batch_and_score(model: &TrainedModel, examples: &[Example]) -> Result<(Vec<f32>, f64)> {
    let t0 = Instant::now();
    let batch = model.batch(examples)?;
    let batch_secs = t0.elapsed().as_secs_f64();
    Ok((model.score_batch(&batch)?, batch_secs))
}
