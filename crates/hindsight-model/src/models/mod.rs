//! The CTR models and the trait they share.
//!
//! All three models embed features the same way (see [`Batch`] and the
//! item / behavior representations below) and differ in how they turn the
//! history into a user-interest vector:
//!
//! * an **item representation** is `[item emb, mean category emb, (mean tag
//!   emb)]`, the same tables for the target and for history items;
//! * a **behavior representation** is the item representation followed by
//!   the behavior's context `[behavior type emb, time-gap bucket emb]`;
//! * [`SumPool`] averages the behavior representations;
//! * [`Din`] weights each behavior by a local activation unit fed with the
//!   target (query) and the behavior's item representation (key) and
//!   context, and sums;
//! * [`Dien`] runs a GRU over the chronological behaviors, trains it with an
//!   auxiliary next-behavior loss, and evolves the interest towards the
//!   target with an attention-gated GRU (AUGRU).
//!
//! Each model ends in an MLP over `[user interest, target item
//! representation]` that outputs one logit.

mod dien;
mod din;
mod sum_pool;

pub use dien::Dien;
pub use din::Din;
pub use sum_pool::SumPool;

use tch::{nn, Tensor};

use crate::batch::Batch;
use crate::config::{ModelConfig, ModelKind};
use crate::vocab::FeatureVocab;

/// What a forward pass returns.
#[derive(Debug)]
pub struct ModelOutput {
    /// One logit per example, `[B]`.
    pub logits: Tensor,
    /// The model's auxiliary loss (a scalar), when it has one and the batch
    /// carries what it needs (DIEN with [`Batch::sample_negatives`]).
    pub aux_loss: Option<Tensor>,
}

/// A CTR model: a batch in, one click logit per example out.
///
/// The extension point of the crate: a new model implements this trait and
/// registers its parameters under the [`nn::Path`] it is built with.
pub trait CtrModel: Send + std::fmt::Debug {
    /// Which model this is.
    fn kind(&self) -> ModelKind;

    /// The forward pass. `train` selects batch statistics in Dice and the
    /// auxiliary loss (when the batch has negatives).
    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput;

    /// Logits `[B]` of a forward pass.
    fn forward(&self, batch: &Batch, train: bool) -> Tensor {
        self.forward_t(batch, train).logits
    }
}

/// Builds the model `cfg.kind` with its parameters under `p`.
pub fn build_model(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Box<dyn CtrModel> {
    match cfg.kind {
        ModelKind::SumPool => Box::new(SumPool::new(p, cfg, vocab)),
        ModelKind::Din => Box::new(Din::new(p, cfg, vocab)),
        ModelKind::Dien => Box::new(Dien::new(p, cfg, vocab)),
    }
}
