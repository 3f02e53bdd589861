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
//!
//! The SASRec model that learns user and item vectors lives in
//! `hindsight-model` (libtorch).

pub mod split;

pub use split::{RecallSplit, UserSequence};

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
}

/// Result alias of the recall crate.
pub type Result<T, E = RecallError> = std::result::Result<T, E>;
