use std::path::PathBuf;

/// Errors of the embeddings crate. Messages are lowercase and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// No embeddings file where one was expected.
    #[error("no item embeddings at {0}; attach them with `hindsight embeddings attach --index INDEX --model MODEL`")]
    Missing(PathBuf),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a readable embeddings store (truncated, bit flips,
    /// not this format).
    #[error("item embeddings file {path} is damaged ({detail}); attach them again with `hindsight embeddings attach`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file was written by a build with another format version.
    #[error("item embeddings file {path} has format version {found}, this build reads version {expected}; attach them again with `hindsight embeddings attach`")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The store was attached to another index than the one it sits in.
    #[error("item embeddings at {path} belong to another index ({found}), not this one ({expected}); attach them to this index with `hindsight embeddings attach`")]
    WrongIndex {
        /// The file.
        path: PathBuf,
        /// The identity of the index it sits in.
        expected: String,
        /// The identity recorded in the file.
        found: String,
    },
    /// A vector of the wrong length.
    #[error("{what} has dimension {found}, the item embeddings have dimension {expected}")]
    Dimension {
        /// What the vector is.
        what: String,
        /// The store's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },
    /// Settings or inputs that cannot make a store.
    #[error("{0}")]
    InvalidInput(String),
}

/// Result alias of the embeddings crate.
pub type Result<T, E = EmbeddingError> = std::result::Result<T, E>;
