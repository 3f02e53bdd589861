//! Behavior log readers: readers that turn a log file (CSV, TSV, Parquet) plus
//! a [`DatasetMapping`] into a stream of [`ParsedBehavior`]s.
//!
//! A source never holds the whole log in memory; item tables it joins
//! (movielens `movies.csv`, `tags.csv`) are small and are loaded once.
//! Malformed rows come back as [`Row::Bad`] with their line number, so
//! the ingest job can count, report and skip them (or stop under
//! `--strict`); only problems that make the whole input unreadable (a
//! missing file, a mapping naming an absent column) are errors.

use hindsight_core::ItemFeatures;

mod csv_source;
mod error;
mod mapping;
mod parquet_source;
mod parse;
mod record;
mod source;
mod table;
mod vocab;

#[cfg(test)]
mod tests;

pub use error::{LogError, Result};
pub use mapping::*;
pub use source::open_source;
pub use vocab::{Vocab, Vocabularies};

/// One well-formed row of a log, with its features resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBehavior {
    /// 1-based line number in the input file (row number + 1 for Parquet),
    /// the header counted as a line. Used for error messages and as the
    /// tie-breaker of the `(timestamp, row)` order.
    pub line: u64,
    /// The user.
    pub user_id: u64,
    /// The item.
    pub item_id: u64,
    /// Behavior type id in `Vocabularies::behavior_types`.
    pub behavior_type: u8,
    /// Unix seconds.
    pub timestamp: i64,
    /// Item features (sorted, deduplicated).
    pub features: ItemFeatures,
}

/// A row the source could not turn into a behavior.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line (or row) number.
    pub line: u64,
    /// What is wrong, e.g. `"user_id \"abc\" is not a non-negative integer"`.
    pub message: String,
}

/// One row of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A well-formed behavior.
    Ok(ParsedBehavior),
    /// A malformed row, to be counted and skipped (or to stop a strict run).
    Bad(RowError),
}

/// A stream of rows from one input.
pub trait BehaviorSource: Send {
    /// The next row, `None` at the end of the input. String-valued features
    /// are interned into `vocabs` (ids are stable for the index's life).
    /// An `Err` means the input cannot be read any further.
    fn next_row(&mut self, vocabs: &mut Vocabularies) -> Result<Option<Row>>;
    /// Bytes of the input consumed so far (for progress).
    fn bytes_read(&self) -> u64;
    /// Total bytes of the input (for progress), 0 when unknown.
    fn total_bytes(&self) -> u64;
}
