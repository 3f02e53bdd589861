//! Behavior log readers: readers that turn a log file (CSV, TSV, Parquet) plus
//! a [`DatasetMapping`] into a stream of [`ParsedBehavior`]s.
//!
//! A source never holds the whole log in memory; item tables it joins
//! (movielens `movies.csv`, `tags.csv`) are small and are loaded once.
//! Malformed rows come back as [`Row::Bad`] with their line number, so
//! the ingest job can count, report and skip them (or stop under
//! `--strict`); only problems that make the whole input unreadable (a
//! missing file, a mapping naming an absent column) are errors.
//!
//! Sources check a row's format, not the index's limits: a consumer that
//! stores behaviors passes each row through [`Row::checked`], which turns a
//! behavior outside `hindsight_core::limits` (user id, timestamp range,
//! feature counts) into a [`Row::Bad`] with the same message the HTTP
//! routes give.
//!
//! [`check_source`] reads the first rows of a log and summarizes what each
//! mapped column becomes and why rows are rejected (`hindsight mapping
//! check`); [`guess_mapping`] writes a starting mapping from a file's first
//! lines (`hindsight mapping init`); [`mapping_schema`] is the JSON schema of
//! [`DatasetMapping`]. The mapping format is documented in `docs/mapping.md`.

use hindsight_core::ItemFeatures;
use serde::Serialize;

mod check;
mod csv_source;
mod error;
mod mapping;
mod parquet_source;
mod parse;
mod record;
mod source;
mod table;
mod time;
mod vocab;

#[cfg(test)]
mod docs;
#[cfg(test)]
mod tests;

pub use check::{check_source, guess_mapping, Guess, MappedColumn, ReasonCount, SourceCheck};
pub use error::{LogError, Result};
pub use mapping::*;
pub use source::open_source;
pub use time::{format_rfc3339, parse_rfc3339};
pub use vocab::{Vocab, Vocabularies};

/// The JSON schema of [`DatasetMapping`] (draft 2020-12), generated from the
/// types; `docs/mapping.schema.json` is this, pretty-printed.
pub fn mapping_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(DatasetMapping))
        .expect("a schema serializes to JSON")
}

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

impl ParsedBehavior {
    /// Checks the behavior against the index's limits
    /// (`hindsight_core::limits::check_behavior`); a violation is a
    /// [`RowError`] at this row's line with the limit's message.
    pub fn check_limits(&self) -> Result<(), RowError> {
        hindsight_core::limits::check_behavior(
            self.user_id,
            self.timestamp,
            self.features.categories.len(),
            self.features.tags.len(),
        )
        .map_err(|v| RowError {
            line: self.line,
            reason: RejectReason::Limit(v.code()),
            message: v.to_string(),
        })
    }
}

/// A row the source could not turn into a behavior.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line (or row) number.
    pub line: u64,
    /// Which part of the row is wrong (for counting rejects by reason).
    pub reason: RejectReason,
    /// What is wrong, e.g. `"user_id \"abc\" is not a non-negative integer"`.
    pub message: String,
}

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The row has the wrong number of fields (often: a wrong delimiter).
    Columns,
    /// The user id does not parse.
    User,
    /// The item id does not parse.
    Item,
    /// The timestamp does not parse in the mapping's unit.
    Timestamp,
    /// The behavior type is not one of the mapping's.
    BehaviorType,
    /// The inline category does not parse.
    Category,
    /// The behavior breaks a limit of the index; the code is
    /// `hindsight_core::limits::LimitViolation::code` (`invalid_user_id`,
    /// `invalid_timestamp`, `too_many_categories`, `too_many_tags`).
    Limit(&'static str),
}

impl Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl RejectReason {
    /// A short stable name: `columns`, `user`, `item`, `timestamp`,
    /// `behavior_type`, `category`, or the limit's code.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::Columns => "columns",
            RejectReason::User => "user",
            RejectReason::Item => "item",
            RejectReason::Timestamp => "timestamp",
            RejectReason::BehaviorType => "behavior_type",
            RejectReason::Category => "category",
            RejectReason::Limit(code) => code,
        }
    }
}

/// One row of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A well-formed behavior.
    Ok(ParsedBehavior),
    /// A malformed row, to be counted and skipped (or to stop a strict run).
    Bad(RowError),
}

impl Row {
    /// The row, or a [`Row::Bad`] when its behavior breaks a limit of the
    /// index (see [`ParsedBehavior::check_limits`]).
    pub fn checked(self) -> Row {
        match self {
            Row::Ok(b) => match b.check_limits() {
                Ok(()) => Row::Ok(b),
                Err(e) => Row::Bad(e),
            },
            bad => bad,
        }
    }
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
    /// What looked suspicious when the source was opened (e.g. an item
    /// table whose values are about as many as its items: a wrong
    /// delimiter taking titles for genres). Empty by default.
    fn warnings(&self) -> &[String] {
        &[]
    }
    /// Which column of the input each mapped role reads. Empty by default.
    fn mapped_columns(&self) -> &[MappedColumn] {
        &[]
    }
}
