//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `hindsight-model`.
///
/// Messages are lowercase and say what to do about the problem.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A data split that must hold examples is empty.
    #[error("the {split} split is empty; export samples first or check the split fractions")]
    EmptySplit {
        /// Which split (`train`, `valid`).
        split: &'static str,
    },
    /// An invalid configuration value.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// A device name that is not `auto`, `cpu` or `cuda`.
    #[error("unknown device {0:?}; use auto, cpu or cuda")]
    UnknownDevice(String),
    /// CUDA was asked for on a machine where libtorch sees no GPU.
    #[error("cuda was requested but libtorch sees no cuda device; use --device cpu (or auto)")]
    CudaUnavailable,
    /// The training loss became NaN or infinite.
    #[error(
        "training loss is not finite ({loss}) at epoch {epoch}, batch {batch}; \
         lower the learning rate or check the input features"
    )]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// The offending loss value.
        loss: f64,
    },
    /// A checkpoint directory that does not exist.
    #[error("checkpoint directory {0} does not exist; train a model first or fix the path")]
    MissingCheckpoint(PathBuf),
    /// A file of a checkpoint that does not exist.
    #[error("checkpoint file {0} is missing; the checkpoint is incomplete, save it again")]
    MissingFile(PathBuf),
    /// `config.json` of a checkpoint cannot be parsed.
    #[error("checkpoint config {path} is corrupt ({source}); save the model again")]
    CorruptConfig {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// `weights.safetensors` of a checkpoint cannot be read.
    #[error("checkpoint weights {path} are corrupt ({message}); save the model again")]
    CorruptWeights {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// Weights that do not fit the model the config describes.
    #[error(
        "checkpoint weights {path} do not match its config.json ({detail}); \
         the two files come from different models, save the model again"
    )]
    WeightsMismatch {
        /// The weights file.
        path: PathBuf,
        /// The first difference found.
        detail: String,
    },
    /// The weights file does not hash to the sha256 recorded in
    /// `config.json` when the checkpoint was saved.
    #[error(
        "checkpoint weights {path} do not match the sha256 recorded in config.json \
         (recorded {expected}, the file hashes to {found}); the file was damaged or replaced \
         after saving: restore the checkpoint from a backup or save the model again"
    )]
    WeightsChecksum {
        /// The weights file.
        path: PathBuf,
        /// The sha256 recorded at save time (hex).
        expected: String,
        /// The sha256 of the file now (hex).
        found: String,
    },
    /// A weight tensor holds NaN or infinite values.
    #[error(
        "checkpoint weights {path} hold {count} non-finite values (NaN or infinite) in {tensor}; \
         the model diverged or the file is damaged: retrain it or restore the checkpoint"
    )]
    NonFiniteWeights {
        /// The weights file.
        path: PathBuf,
        /// The first tensor with non-finite values.
        tensor: String,
        /// How many of its values are not finite.
        count: i64,
    },
    /// The model's scores on the built-in probe batch are not all finite.
    #[error(
        "the model in {path} scores {count} of {total} probe examples as NaN or infinite; \
         retrain it or restore the checkpoint"
    )]
    NonFiniteScores {
        /// The checkpoint folder.
        path: PathBuf,
        /// Probe examples whose score is not finite.
        count: usize,
        /// Probe examples scored.
        total: usize,
    },
    /// A recall (SASRec) checkpoint given to the CTR loader.
    #[error(
        "{} is a recall model (SASRec); use it with `recommend --model`, rank with a CTR model via --rank-with",
        path.display()
    )]
    RecallModel {
        /// The checkpoint folder.
        path: PathBuf,
    },
    /// A checkpoint that is not a recall model given to the recall loader.
    #[error(
        "{} is not a recall model (its kind is {kind}): a CTR model ranks candidates \
         (eval, serve, --rank-with); train a recall model with `hindsight train --model sasrec`",
        path.display()
    )]
    NotARecallModel {
        /// The checkpoint folder.
        path: PathBuf,
        /// The kind its config names (`din`, ...), `unknown` when none.
        kind: String,
    },
    /// A file system error.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An error reported by libtorch.
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
