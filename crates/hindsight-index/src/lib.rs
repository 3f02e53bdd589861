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
//!   server's write path);
//! * a [`History`] is a user's [`Run`]s; a run reads its behaviors from the
//!   columns ([`SegmentView`]) and the postings of the user's feature keys
//!   ([`KeyPostings`], newest first in windows with [`NewestMatches`]):
//!   what retrieval strategies are written with;
//! * [`baseline::naive_boolean`] is the plain tantivy query the benchmarks
//!   compare the strategies with.
//!
//! tantivy stays inside this crate: retrieval and the rest of the
//! workspace read the index through these types (only
//! [`IndexError::Tantivy`] carries a tantivy error), so no other crate
//! depends on tantivy.

pub mod baseline;
mod error;
mod index;
mod ingest;
mod key_docs;
pub mod manifest;
mod postings;
pub mod schema;
mod snapshot;
mod writer;

pub use error::{IndexError, Result};
pub use index::{BehaviorIndex, VerifyReport};
pub use ingest::{
    default_indexing_threads, ingest, IngestOptions, IngestProgress, IngestReport, Phase,
    RejectedRow,
};
pub use manifest::{IndexState, IngestRecord, Manifest};
pub use postings::{KeyPostings, NewestMatches, PostingDocs};
pub use snapshot::{
    DocId, History, Run, SegmentView, Snapshot, SnapshotStats, PREFETCH_STRETCH, ROW_BYTES,
};
pub use writer::{AppendReport, LiveWriter, NewBehavior};

#[cfg(test)]
mod tests;
