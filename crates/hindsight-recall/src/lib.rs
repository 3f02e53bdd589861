//! Recall: proposing the candidates a ranking model then scores.
//!
//! The CTR side of hindsight answers "how good is this item for this
//! user"; recall answers "which items should this user see", over the whole
//! catalog. This crate holds what recall needs that does not need libtorch:
//!
//! * [`split`]: the recall protocol's chronological **leave-last-out**
//!   split (per user: test = the last behavior, valid = the one before,
//!   training on the rest), the form SASRec (Kang & McAuley, ICDM 2018)
//!   and RecBole evaluate with;
//! * [`metrics`]: full-ranking HR@K, NDCG@K and Recall@K over the whole
//!   catalog, with a documented tie rule;
//! * [`baselines`]: popularity, item-to-item CF and repeat, as
//!   [`CatalogScorer`]s;
//! * [`eval`]: [`evaluate`] a scorer on the valid or test targets of a
//!   split (threads over users), masking seen items or not;
//! * [`ann`]: an HNSW index over item vectors for inner-product search
//!   ([`AnnIndex`], after Malkov & Yashunin, TPAMI 2020) and the exact
//!   brute-force baseline ([`ExactIndex`]), saved beside the checkpoint
//!   they came from.
//!
//! The protocol is written down in `docs/recall.md`.
//!
//! The SASRec model that learns user and item vectors lives in
//! `hindsight-model` (libtorch).

pub mod ann;
pub mod baselines;
pub mod eval;
pub mod metrics;
pub mod split;

pub use ann::{AnnIndex, AnnParams, ExactIndex};
pub use baselines::{ItemCf, ItemCfParams, Popularity, Repeat};
pub use eval::{evaluate, evaluate_parallel, EvalOptions, EvalProgress, RecallReport, Target};
pub use metrics::{MetricsAtK, TieRule};
pub use split::{catalog_of, RecallSplit, UserSequence};

use hindsight_core::{Behavior, UserId};

/// A recall model or baseline that scores the whole catalog for a user.
pub trait CatalogScorer {
    /// The name reports use (`popularity`, `sasrec`, ...).
    fn name(&self) -> &str;

    /// `out[i]` = score of `split.catalog[i]` for a user with this history
    /// (oldest first), as of just after it. Higher is better; `out` has
    /// one slot per catalog item.
    fn score_catalog(&self, user: UserId, history: &[Behavior], out: &mut [f32]);
}

/// Errors of the recall crate.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    /// The index could not be read.
    #[error(transparent)]
    Index(#[from] hindsight_index::IndexError),
    /// No user has enough behaviors for the split.
    #[error(
        "no user has at least {min} behaviors, so the leave-last-out split is empty; \
         lower --min-behaviors or ingest a longer log"
    )]
    EmptySplit {
        /// The minimum asked for.
        min: usize,
    },
    /// A setting is out of its range.
    #[error("{0}")]
    InvalidParameter(String),
    /// The split has no catalog to rank.
    #[error("the catalog is empty: the index holds no item; ingest a log first")]
    EmptyCatalog,
    /// Reading or writing an ANN index failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file or folder.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An ANN folder's files do not form a valid index.
    #[error(
        "the ANN index in {path} is damaged ({reason}); rebuild it with `hindsight ann build`"
    )]
    CorruptAnn {
        /// The folder.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An ANN index was built from another checkpoint than the one given.
    #[error(
        "the ANN index in {path} was built from the checkpoint with weights sha256 {found}, \
         not this one ({expected}); rebuild it with `hindsight ann build`"
    )]
    AnnSourceMismatch {
        /// The folder.
        path: std::path::PathBuf,
        /// The sha the caller expects (the loaded model's).
        expected: String,
        /// The sha recorded in the index.
        found: String,
    },
}

/// Result alias of the recall crate.
pub type Result<T, E = RecallError> = std::result::Result<T, E>;
