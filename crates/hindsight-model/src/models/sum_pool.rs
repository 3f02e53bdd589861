//! The Embedding&MLP baseline (the "base model" of the DIN paper, Zhou et
//! al., KDD 2018, section 4.2): the history is pooled without regard to the
//! target.

use tch::{nn, Kind, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::layers::{FeatureEmbedding, Init, Mlp};
use crate::vocab::FeatureVocab;

/// Embedding&MLP: the mean of the (masked) behavior representations,
/// concatenated with the target's item representation, into an MLP.
#[derive(Debug)]
pub struct SumPool {
    emb: FeatureEmbedding,
    mlp: Mlp,
}

impl SumPool {
    /// Builds the model with its parameters under `p`, initialised from
    /// `cfg.seed`.
    pub fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Self {
        let mut init = Init::new(cfg.seed);
        let emb = FeatureEmbedding::new(&(p / "embedding"), &mut init, vocab, cfg);
        let input = emb.behavior_dim() + emb.item_dim();
        let mlp = Mlp::new(
            &(p / "mlp"),
            &mut init,
            input,
            &cfg.mlp_hidden,
            1,
            cfg.activation,
        );
        Self { emb, mlp }
    }
}

impl CtrModel for SumPool {
    fn kind(&self) -> ModelKind {
        ModelKind::SumPool
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput {
        let target = self.emb.target(batch);
        let behaviors = Tensor::cat(
            &[
                self.emb.history_items(batch),
                self.emb.history_context(batch),
            ],
            -1,
        );
        let mask = batch.mask.unsqueeze(-1);
        let count = batch
            .mask
            .sum_dim_intlist(1, true, Kind::Float)
            .clamp_min(1.0);
        let pooled = (behaviors * mask).sum_dim_intlist(1, false, Kind::Float) / count;
        let logits = self
            .mlp
            .forward(&Tensor::cat(&[pooled, target], -1), train)
            .squeeze_dim(-1);
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}
