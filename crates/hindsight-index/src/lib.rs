//! The lifelong behavior index of hindsight.
//!
//! Behavior logs are indexed in tantivy with **feature-based inverted
//! indexes**: each behavior is a document whose terms are keyed by
//! (user, feature) (UBR4CTR, Qin et al. SIGIR 2020; SIM, Pi et al. CIKM
//! 2020), and the index is sorted by (user, seq) so that each user's
//! history is a contiguous, chronological run of doc ids in every segment.
//! See [`schema`] for the layout and [`manifest`] for what is stored beside
//! it.
//!
//! * [`BehaviorIndex`] opens or creates an index and hands out
//!   [`Snapshot`]s for retrieval;
//! * [`ingest()`] builds or extends an index from a log, in bounded memory;
//! * [`BehaviorIndex::append`] adds a batch of behaviors durably (the
//!   server's write path).

mod error;
mod index;
mod ingest;
pub mod manifest;
pub mod schema;
mod snapshot;
mod writer;

pub use error::{IndexError, Result};
pub use index::BehaviorIndex;
pub use ingest::{ingest, IngestOptions, IngestProgress, IngestReport, Phase, RejectedRow};
pub use manifest::{IndexState, IngestRecord, Manifest};
pub use snapshot::{History, Run, SegmentView, Snapshot, SnapshotStats};
/// The tantivy version the index is built with.
pub use tantivy;
pub use writer::{AppendReport, LiveWriter, NewBehavior};

#[cfg(test)]
mod tests;
