//! CTR models for hindsight on libtorch (via [`tch`]): a sum-pooling
//! baseline, DIN, DIEN, ATRank and BST; their training, checkpoints and batched scoring.
//!
//! * [`SumPool`]: the Embedding&MLP base model (Zhou et al., KDD 2018).
//! * [`Din`]: Deep Interest Network (Zhou et al., "Deep Interest Network
//!   for Click-Through Rate Prediction", KDD 2018): a local activation unit
//!   weights each retrieved behavior by its relevance to the target.
//! * [`transformer`]: multi-head self-attention (causal and key-padding
//!   masks), feed-forward, layer norm and pre-/post-LN transformer blocks,
//!   reusable by the sequence models.
//! * [`recall`]: SASRec (Kang & McAuley, ICDM 2018), a recall model of user
//!   and item vectors trained with a K+1 sampled softmax ([`TrainedRecall`]).
//! * [`Dien`]: Deep Interest Evolution Network (Zhou et al., "Deep Interest
//!   Evolution Network for Click-Through Rate Prediction", AAAI 2019): a GRU
//!   interest extractor with an auxiliary loss and an attention-gated GRU
//!   (AUGRU) for interest evolution.
//! * [`Atrank`]: ATRank (Zhou et al., AAAI 2018): behavior-type-specific
//!   projections, time-interval encoding, self-attention, then attention
//!   by the target.
//! * [`Bst`]: Behavior Sequence Transformer (Chen et al., DLP-KDD 2019): a
//!   Transformer over the behaviors and the target.
//!
//! Each sample is an [`Example`]: a target item and the subsequence of at
//! most N behaviors that retrieval picked for it. A [`FeatureVocab`] maps
//! raw ids to embedding rows (0 padding, 1 out-of-vocabulary) and the time
//! between a behavior and the target to a log2 bucket (as ATRank, Zhou et
//! al., AAAI 2018, embeds time). A [`Batch`] holds the tensors of a slice of
//! examples.
//!
//! ```no_run
//! use hindsight_model::{train, Device, Example, ModelConfig, ModelKind, TrainOptions};
//!
//! # fn run(train_set: &[Example], valid_set: &[Example], test_set: &[Example]) -> hindsight_model::Result<()> {
//! let cfg = ModelConfig::new(ModelKind::Din);
//! let opts = TrainOptions { device: "auto".parse::<Device>()?, n: 50, ..Default::default() };
//! let (mut model, report) = train(&cfg, train_set, valid_set, opts)?;
//! println!("best valid auc {:?} at epoch {}", report.best_valid_auc, report.best_epoch);
//! model.set_retrieval(serde_json::json!({ "strategy": "sim-hard", "n": 50 }));
//! model.save("models/din-sim-hard")?;
//! let model = hindsight_model::TrainedModel::load("models/din-sim-hard", Device::Cpu)?;
//! let probabilities = model.score(test_set)?;
//! # let _ = probabilities;
//! # Ok(())
//! # }
//! ```
//!
//! Determinism: weights are initialised and batches shuffled from the
//! config's seed with a generator of this crate, not libtorch's global one,
//! so CPU training is reproducible for a given seed, data and thread count.

mod batch;
mod config;
mod device;
mod error;
mod example;
mod layers;
pub mod models;
pub mod recall;
mod train;
mod trained;
pub mod transformer;
mod vocab;

#[cfg(test)]
mod tests;

pub use batch::Batch;
pub use config::{Activation, ModelConfig, StopMetric};
pub use device::{device_name, set_cpu_threads, Device};
pub use error::{ModelError, Result};
pub use example::Example;
pub use layers::Init;
pub use models::{build_model, Atrank, Bst, CtrModel, Dien, Din, ModelKind, ModelOutput, SumPool};
pub use recall::{
    NegativeSampling, RecallEpoch, RecallLoss, RecallProgress, RecallStopMetric, RecallTrainReport,
    SasRecConfig, TrainedRecall,
};
pub use train::{train, EpochReport, ProgressFn, TrainEvent, TrainOptions, TrainReport};
pub use trained::{ItemFeatureTables, TrainedModel, CONFIG_FILE, WEIGHTS_FILE};
pub use vocab::{time_gap_bucket, FeatureVocab, VocabBuilder, OOV, PAD, TIME_GAP_BUCKETS};
