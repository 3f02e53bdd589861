use std::path::PathBuf;

/// Errors of the index crate. Messages are lowercase and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The log could not be read.
    #[error(transparent)]
    Logs(#[from] hindsight_logs::LogError),
    /// A row could not be parsed and `--strict` was given.
    #[error("line {line}: {message} (run without --strict to skip and count malformed rows)")]
    StrictRow {
        /// 1-based line (or row) number in the input.
        line: u64,
        /// What is wrong with the row.
        message: String,
    },
    /// The index on disk was written with another schema version.
    #[error("index at {path} has schema version {found}, this build reads version {expected}; re-ingest the logs into a new index (hindsight ingest --index NEW_PATH)")]
    SchemaVersion {
        /// The index folder.
        path: PathBuf,
        /// The version on disk.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The folder holds no hindsight index.
    #[error("no hindsight index at {0}; build one with `hindsight ingest --index {0} ...`")]
    NotAnIndex(PathBuf),
    /// The index was created for another dataset mapping than the one given.
    #[error("index at {path} was built with another mapping than the one given: {differences}; ingest into a new index, or give the mapping it was built with (`hindsight index info` shows it)")]
    MappingMismatch {
        /// The index folder.
        path: PathBuf,
        /// Mapping name stored in the index.
        found: String,
        /// Mapping name given now.
        given: String,
        /// The fields that differ, e.g. `"delimiter": "," in the index, "::" given`.
        differences: String,
    },
    /// `create` was asked for a folder that already holds an index.
    #[error("an index already exists at {0}; open it (ingest extends it), or choose another --index folder")]
    AlreadyExists(PathBuf),
    /// Another writer (another process, or another writer of this one)
    /// holds the index's writer lock.
    #[error("another process is writing to {0} (it holds the writer lock); stop it, or open the index read-only")]
    Locked(PathBuf),
    /// The index violates a layout invariant (e.g. a user's documents are not
    /// contiguous within a segment) or a file of it cannot be parsed.
    #[error("index layout is corrupt: {0}; rebuild the index from the logs")]
    Corrupt(String),
    /// A file of the index is damaged: its checksum does not match its
    /// contents, or the segment list in `meta.json` disagrees with the
    /// segment files, or tantivy failed while reading it.
    #[error("index file {path} is damaged ({detail}); restore the index folder from a backup or rebuild it from the logs (hindsight ingest --index NEW_PATH ...)")]
    Damaged {
        /// The damaged file (or the index folder when no one file is to blame).
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A write was attempted on an index opened with
    /// [`BehaviorIndex::open_read_only`](crate::BehaviorIndex::open_read_only).
    #[error("index at {0} is open read-only; behaviors can only be added through a writable open of an index on a writable file system")]
    ReadOnly(PathBuf),
    /// The file system holding the index ran out of space while writing.
    /// Nothing since the last commit was kept; once space is freed, the
    /// writer works again (a live writer after
    /// [`LiveWriter::rollback`](crate::LiveWriter::rollback)).
    #[error("the disk holding {path} is full ({detail}); free space on it (for an ingest's spill files, or pass --tmp-dir on another disk), then retry: nothing since the last commit was written")]
    DiskFull {
        /// The index folder, or the folder of an ingest's spill files.
        path: PathBuf,
        /// The underlying error.
        detail: String,
    },
    /// The caller gave something the index cannot hold (e.g. a user id
    /// out of range).
    #[error("{0}")]
    InvalidInput(String),
    /// An error from tantivy.
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// A JSON (de)serialization error of the manifest or commit payload.
    #[error("manifest: {0}")]
    Json(#[from] serde_json::Error),
    /// Any other I/O error.
    #[error("i/o: {0}")]
    OtherIo(#[from] std::io::Error),
}

/// Result alias of the index crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
