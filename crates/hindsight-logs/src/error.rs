//! The error type of the logs crate and its `Result` alias.

use std::path::PathBuf;

/// Errors of reading logs. Messages are lowercase and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An input file or folder could not be opened or read.
    #[error("cannot read {path}: {source}; check that the path exists and is readable")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The dataset mapping is inconsistent with the input (e.g. names a
    /// column the file does not have) or with itself.
    #[error("bad dataset mapping: {0}")]
    Mapping(String),
    /// A row of a joined item table (e.g. movielens `movies.csv`) is
    /// malformed. Tables are small and loaded whole, so a bad row there
    /// stops the open instead of silently dropping an item's features.
    #[error("bad row in item table {path} line {line}: {message}; fix the table or remove it from the mapping")]
    Table {
        /// The table file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The Parquet reader failed.
    #[error("cannot read parquet {path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
}

/// Result alias of the logs crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
