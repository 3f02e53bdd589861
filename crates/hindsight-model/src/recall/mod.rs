//! Recall: SASRec (Kang & McAuley, "Self-Attentive Sequential
//! Recommendation", ICDM 2018) trained as the SmartNews Ads design does,
//! producing a user vector and item vectors whose inner product ranks the
//! whole catalog.
//!
//! # Model
//!
//! * **Item tower** (shared by the input and the output, as in the paper's
//!   shared item embedding): `e(i) = E_item[i] + mean(E_cat[categories of
//!   i]) + mean(E_tag[tags of i])`. An item the model never trained on maps
//!   to the out-of-vocabulary id row ([`crate::OOV`]) and still gets a
//!   vector from its side features (cold start).
//! * **Input** at position `t` (behavior `b_t`): `sqrt(d) e(item of b_t) +
//!   P[t] + E_type[behavior type] + E_gap[time-gap bucket]`, dropout, then
//!   [`crate::transformer::TransformerStack`] blocks (pre-LN, the paper's
//!   eq. 4, and a final layer norm, as pmixer/SASRec.pytorch) under a
//!   **causal** and key-padding mask. `P` are learned positions over the
//!   `max_len` slots of a left-padded window, so the most recent behavior
//!   always sits in the last slot. The time gap is the log2 bucket
//!   ([`crate::time_gap_bucket`]) of the time since the user's previous
//!   behavior (the first behavior of a user has its own bucket), which is
//!   known at serving time without the next behavior's timestamp.
//! * **Score** of item `i` after position `t`: `F_t . e(i)`; the **user
//!   vector** is `F` at the last position of a history.
//!
//! # Training
//!
//! One window per user: the most recent `max_len + 1` behaviors of the
//! user's training part ([`hindsight_recall::UserSequence::train`]; the
//! older ones are not used, as in SASRec.pytorch and RecBole); positions
//! `0..n-1` are the input and every position predicts the next behavior's
//! item in one forward pass. The loss is chosen by [`RecallLoss`]:
//!
//! * **sampled softmax** (default, `K = 128`): a `K + 1`-way cross-entropy
//!   of each position's positive against `K` negatives. The `K` negatives
//!   are drawn once per batch and shared by every position of it (as
//!   TensorFlow's `sampled_softmax_loss`), uniformly over the training
//!   vocabulary's items or by popularity ([`NegativeSampling`]; with
//!   popularity the logits are corrected by `-log Q(i)`, Jean et al., ACL
//!   2015, so the loss still estimates the full softmax). A negative equal
//!   to a position's positive is **masked** out of that position's softmax.
//! * **full softmax**: cross-entropy over every item of the vocabulary.
//! * **BCE**: one negative per position, drawn uniformly and re-drawn when
//!   equal to the positive, binary cross-entropy of both (the paper's loss).
//!
//! Adam (`betas = (0.9, 0.98)`, SASRec.pytorch), batches of users shuffled
//! from the seed. After every epoch the validation target of every user
//! (up to `valid_users`) is ranked against the **whole catalog** by inner
//! product (seen items are not excluded; rank = number of items scoring
//! strictly higher) and early stopping keeps the weights of the best
//! epoch by NDCG@10 or HR@10 ([`RecallStopMetric`]).
//!
//! Throughput is counted in training **positions** (predicted next items)
//! per second, the unit RecBole's per-interaction samples correspond to.

mod checkpoint;
mod data;
mod net;
mod train;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

pub use checkpoint::{TrainedRecall, RECALL_FORMAT, SASREC_KIND};
pub use net::sampled_softmax_loss;
pub use train::{RecallEpoch, RecallProgress, RecallTrainReport};

/// Whether a `config.json`'s bytes describe a recall checkpoint (its
/// top-level `kind` is [`SASREC_KIND`]).
pub(crate) fn is_recall_config(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("kind")
                .and_then(|k| k.as_str())
                .map(|k| k == SASREC_KIND)
        })
        .unwrap_or(false)
}

/// The training loss of SASRec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecallLoss {
    /// `K + 1` cross-entropy: the positive against `negatives` sampled
    /// items (shared by the positions of a batch).
    SampledSoftmax {
        /// `K`, at least 1 and fewer than the training items.
        negatives: usize,
    },
    /// Cross-entropy over every item of the vocabulary.
    FullSoftmax,
    /// Binary cross-entropy with one uniform negative per position.
    Bce,
}

impl Default for RecallLoss {
    fn default() -> Self {
        RecallLoss::SampledSoftmax {
            negatives: Self::default_negatives(),
        }
    }
}

impl RecallLoss {
    /// The default `K` of the sampled softmax: 128.
    pub const fn default_negatives() -> usize {
        128
    }

    /// The CLI names: `sampled-softmax`, `full-softmax`, `bce`.
    pub const NAMES: &'static str = "sampled-softmax, full-softmax, bce";

    /// Parses a CLI name; `negatives` is `K` of the sampled softmax.
    pub fn parse(name: &str, negatives: usize) -> Result<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "sampled-softmax" | "sampled" => Ok(RecallLoss::SampledSoftmax { negatives }),
            "full-softmax" | "full" | "softmax" => Ok(RecallLoss::FullSoftmax),
            "bce" => Ok(RecallLoss::Bce),
            _ => Err(ModelError::InvalidConfig(format!(
                "unknown recall loss {name:?}; use one of {}",
                Self::NAMES
            ))),
        }
    }

    /// The CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            RecallLoss::SampledSoftmax { .. } => "sampled-softmax",
            RecallLoss::FullSoftmax => "full-softmax",
            RecallLoss::Bce => "bce",
        }
    }
}

impl fmt::Display for RecallLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecallLoss::SampledSoftmax { negatives } => {
                write!(f, "sampled-softmax (K={negatives})")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// How the sampled softmax draws its negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NegativeSampling {
    /// Uniformly over the items of the training vocabulary.
    #[default]
    Uniform,
    /// In proportion to each item's count among the training targets,
    /// with the `-log Q` logit correction.
    Popularity,
}

impl FromStr for NegativeSampling {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Ok(NegativeSampling::Uniform),
            "popularity" | "pop" => Ok(NegativeSampling::Popularity),
            _ => Err(ModelError::InvalidConfig(format!(
                "unknown negative sampling {s:?}; use uniform or popularity"
            ))),
        }
    }
}

/// What early stopping maximises on the validation targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecallStopMetric {
    /// Full-ranking NDCG@10.
    #[default]
    Ndcg10,
    /// Full-ranking HR@10.
    Hr10,
}

impl FromStr for RecallStopMetric {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['@', '-', '_'], "")
            .as_str()
        {
            "ndcg10" | "ndcg" => Ok(RecallStopMetric::Ndcg10),
            "hr10" | "hr" => Ok(RecallStopMetric::Hr10),
            _ => Err(ModelError::InvalidConfig(format!(
                "unknown stop metric {s:?}; use ndcg@10 or hr@10"
            ))),
        }
    }
}

/// Hyper-parameters of SASRec and its training; saved in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SasRecConfig {
    /// Dimension of item, position and context embeddings and of the
    /// transformer (user and item vectors have this size).
    pub dim: i64,
    /// Transformer blocks.
    pub blocks: usize,
    /// Attention heads (must divide `dim`).
    pub heads: i64,
    /// Dropout on the input embeddings and inside the blocks.
    pub dropout: f64,
    /// Window: at most this many most recent behaviors are the input.
    pub max_len: usize,
    /// Train on every position of a user's training part, cut into
    /// consecutive windows of `max_len` predicted positions (the newest
    /// window first), instead of only the most recent window (what
    /// pmixer/SASRec.pytorch does). Default true: with one window, a user
    /// with 500 training behaviors contributes 50 positions and the rest of
    /// the log is never seen.
    pub all_windows: bool,
    /// The training loss.
    pub loss: RecallLoss,
    /// How the sampled softmax draws negatives.
    pub sampling: NegativeSampling,
    /// Adam learning rate.
    pub lr: f64,
    /// Users (windows) per batch.
    pub batch_size: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation metric.
    pub patience: usize,
    /// What early stopping maximises.
    pub stop_metric: RecallStopMetric,
    /// At most this many validation users are ranked after each epoch (the
    /// first ones by user id); 0 means all.
    pub valid_users: usize,
    /// Seed of initialisation, dropout, batch order and negatives.
    pub seed: u64,
    /// Whether the behavior type is an input embedding.
    pub use_behavior_type: bool,
    /// Whether the time-gap bucket is an input embedding.
    pub use_time_gap: bool,
    /// At most this many categories of an item are pooled.
    pub max_categories: usize,
    /// At most this many tags of an item are pooled.
    pub max_tags: usize,
    /// Users per batch when computing vectors for evaluation.
    pub eval_batch_size: usize,
}

impl Default for SasRecConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            blocks: 2,
            heads: 1,
            dropout: 0.2,
            max_len: 50,
            all_windows: true,
            loss: RecallLoss::default(),
            sampling: NegativeSampling::Uniform,
            lr: 1e-3,
            batch_size: 128,
            epochs: 200,
            patience: 10,
            stop_metric: RecallStopMetric::Ndcg10,
            valid_users: 0,
            seed: 42,
            use_behavior_type: true,
            use_time_gap: true,
            max_categories: 8,
            max_tags: 8,
            eval_batch_size: 256,
        }
    }
}

impl SasRecConfig {
    /// Checks every value, with a message naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        if self.dim < 1 {
            return bad(format!("--dim must be >= 1, got {}", self.dim));
        }
        if self.heads < 1 || self.dim % self.heads != 0 {
            return bad(format!(
                "--heads ({}) must be >= 1 and divide --dim ({})",
                self.heads, self.dim
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.max_len < 1 {
            return bad("--max-len must be >= 1".to_owned());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be positive, got {}", self.lr));
        }
        if self.batch_size < 1 || self.eval_batch_size < 1 {
            return bad("--batch-size must be >= 1".to_owned());
        }
        if self.epochs < 1 {
            return bad("--epochs must be >= 1".to_owned());
        }
        if let RecallLoss::SampledSoftmax { negatives: 0 } = self.loss {
            return bad("--negatives must be >= 1 for the sampled softmax".to_owned());
        }
        Ok(())
    }

    /// The transformer blocks' configuration.
    pub(crate) fn transformer(&self) -> crate::transformer::TransformerConfig {
        crate::transformer::TransformerConfig::sasrec(self.dim, self.heads, self.dropout)
    }
}
