//! Behavior Sequence Transformer (Chen et al., "Behavior Sequence
//! Transformer for E-commerce Recommendation in Alibaba", DLP-KDD 2019).
//!
//! * **Sequence**: the retrieved behaviors and the target item as one
//!   sequence of tokens. A behavior's token is its item representation,
//!   its behavior-type embedding and its **position** embedding, which BST
//!   defines as the time between the behavior and the target
//!   (`pos(v_i) = t(v_t) - t(v_i)`): here the log2 time-gap bucket. The
//!   target's token is its item representation and a learnt "target"
//!   context (its gap is 0 by definition). Tokens are projected to
//!   `transformer_dim`.
//! * **Transformer layer**: multi-head self-attention with residual and
//!   layer normalisation, then a feed-forward layer with the same: the
//!   crate's [`crate::transformer::TransformerStack`], post-LN as in the
//!   paper, `transformer_layers` blocks (the paper found one best).
//! * **Output**: an MLP over the target token's output, the mean of the
//!   behavior tokens' outputs and the target's item representation.
//!
//! Departure: the paper concatenates the outputs of its fixed-length
//! sequence (20 behaviors); histories here have any length up to N, so the
//! behavior tokens are mean-pooled over the real ones (and the target
//! token, which attends over all of them, is kept apart). The
//! feed-forward activation is ReLU, not the paper's LeakyReLU (the shared
//! layers offer ReLU and GELU). No dropout.

use tch::{nn, Kind, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::ModelConfig;
use super::atrank::transformer_config;
use crate::layers::{FeatureEmbedding, Init, Linear, Mlp};
use crate::transformer::{AttentionMask, TransformerStack};
use crate::vocab::FeatureVocab;

/// BST.
#[derive(Debug)]
pub struct Bst {
    emb: FeatureEmbedding,
    /// The target token's context in place of (type, position).
    target_context: Tensor,
    input: Linear,
    blocks: TransformerStack,
    mlp: Mlp,
}

impl Bst {
    /// Builds the model with its parameters under `p`, initialised from
    /// `cfg.seed`.
    pub fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Self {
        let mut init = Init::new(cfg.seed);
        let emb = FeatureEmbedding::new(&(p / "embedding"), &mut init, vocab, cfg);
        let (di, dim) = (emb.item_dim(), cfg.transformer_dim);
        let target_context = p.var_copy(
            "target_context",
            &init.uniform(&[emb.context_dim()], 0.05),
        );
        let input = Linear::new(&(p / "input"), &mut init, emb.behavior_dim(), dim);
        let blocks = TransformerStack::new(
            &(p / "transformer"),
            &mut init,
            &transformer_config(cfg),
            cfg.transformer_layers as usize,
        )
        .expect("the transformer settings are validated with the model config");
        let mlp = Mlp::new(
            &(p / "mlp"),
            &mut init,
            2 * dim + di,
            &cfg.mlp_hidden,
            1,
            cfg.activation,
        );
        Self {
            emb,
            target_context,
            input,
            blocks,
            mlp,
        }
    }
}

impl CtrModel for Bst {
    fn kind(&self) -> ModelKind {
        ModelKind::Bst
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput {
        let target = self.emb.target(batch);
        let b = target.size()[0];
        let behaviors = Tensor::cat(
            &[
                self.emb.history_items(batch),
                self.emb.history_context(batch),
            ],
            -1,
        );
        let target_token = Tensor::cat(
            &[
                target.shallow_clone(),
                self.target_context.unsqueeze(0).expand([b, -1], false),
            ],
            -1,
        )
        .unsqueeze(1);
        // The target first, then the behaviors (attention has no order
        // of its own: position is the time-gap embedding).
        let tokens = self.input.forward(&Tensor::cat(&[target_token, behaviors], 1));
        let mask = Tensor::cat(&[batch.mask.ones_like().narrow(1, 0, 1), batch.mask.shallow_clone()], 1);
        let n = tokens.size()[1];
        let attention_mask = AttentionMask::new(n, Some(&mask), false, mask.device())
            .expect("the mask is [B, N + 1]");
        let h = self.blocks.forward(&tokens, &attention_mask, train);
        let target_out = h.select(1, 0);
        let count = batch
            .mask
            .sum_dim_intlist(1, true, Kind::Float)
            .clamp_min(1.0);
        let pooled = (h.narrow(1, 1, n - 1) * batch.mask.unsqueeze(-1))
            .sum_dim_intlist(1, false, Kind::Float)
            / count;
        let logits = self
            .mlp
            .forward(&Tensor::cat(&[target_out, pooled, target], -1), train)
            .squeeze_dim(-1);
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}
