//! ATRank (Zhou et al., "ATRank: An Attention-Based User Behavior Modeling
//! Framework for Recommendation", AAAI 2018).
//!
//! * **Raw feature spaces**: a behavior is its item representation and its
//!   time-interval encoding (the time gap to the target, bucketed on a log2
//!   scale and embedded, as the paper does).
//! * **Behavior-type-specific projection**: each behavior type `k` (pv,
//!   cart, fav, buy on Taobao; the rating bucket on movielens) has its own
//!   projection `F_k` into the common latent space, so the same item viewed
//!   or bought lands in different places. All types' projections are
//!   computed with one matrix product and the behavior's own is gathered.
//! * **Self-attention** over the projected behaviors: multi-head ("latent
//!   semantic spaces") with a feed-forward layer, in
//!   [`TransformerBlock`]s.
//! * **Vanilla attention by the target**: the target's item representation,
//!   projected, attends (multi-head) over the self-attended behaviors; the
//!   result and the target go into the final MLP.
//!
//! Departures, for the same inputs as the other models: one latent space
//! size `transformer_dim` for every type (the paper allows per-type raw
//! sizes), no dropout, and a history without any real behavior contributes
//! a zero user vector.

use tch::{nn, Kind, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::layers::{FeatureEmbedding, Init, Linear, Mlp, MultiHeadAttention, TransformerBlock};
use crate::vocab::FeatureVocab;

/// ATRank.
#[derive(Debug)]
pub struct Atrank {
    emb: FeatureEmbedding,
    /// All types' projections side by side: `[types * dim, item_dim + d]`.
    projection: Linear,
    types: i64,
    dim: i64,
    blocks: Vec<TransformerBlock>,
    target_attention: MultiHeadAttention,
    mlp: Mlp,
}

impl Atrank {
    /// Builds the model with its parameters under `p`, initialised from
    /// `cfg.seed`.
    pub fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Self {
        let mut init = Init::new(cfg.seed);
        let emb = FeatureEmbedding::new(&(p / "embedding"), &mut init, vocab, cfg);
        let (di, d, dim) = (emb.item_dim(), emb.dim(), cfg.transformer_dim);
        let types = vocab.behavior_type_table_size();
        let projection = Linear::new(&(p / "type_projection"), &mut init, di + d, types * dim);
        let blocks = (0..cfg.transformer_layers)
            .map(|i| {
                TransformerBlock::new(
                    &(p / format!("block{i}")),
                    &mut init,
                    dim,
                    cfg.transformer_heads,
                )
            })
            .collect();
        let target_attention = MultiHeadAttention::new(
            &(p / "target_attention"),
            &mut init,
            di,
            dim,
            cfg.transformer_heads,
        );
        let mlp = Mlp::new(
            &(p / "mlp"),
            &mut init,
            dim + di,
            &cfg.mlp_hidden,
            1,
            cfg.activation,
        );
        Self {
            emb,
            projection,
            types,
            dim,
            blocks,
            target_attention,
            mlp,
        }
    }

    /// The behaviors projected into their own type's space, `[B, N, dim]`.
    fn project(&self, batch: &Batch) -> Tensor {
        let raw = Tensor::cat(
            &[
                self.emb.history_items(batch),
                self.emb.history_time_gaps(batch),
            ],
            -1,
        );
        let s = raw.size();
        let (b, n) = (s[0], s[1]);
        let all = self
            .projection
            .forward(&raw)
            .view([b, n, self.types, self.dim]);
        let index = batch
            .behavior_types
            .view([b, n, 1, 1])
            .expand([b, n, 1, self.dim], false);
        all.gather(2, &index, false).squeeze_dim(2)
    }
}

impl CtrModel for Atrank {
    fn kind(&self) -> ModelKind {
        ModelKind::Atrank
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput {
        let target = self.emb.target(batch);
        let mask = &batch.mask;
        let mut h = self.project(batch);
        for block in &self.blocks {
            h = block.forward(&h, mask);
        }
        let interest = self
            .target_attention
            .forward(&target.unsqueeze(1), &h, mask)
            .squeeze_dim(1);
        // A history without a real behavior: no user vector.
        let any = mask
            .sum_dim_intlist(1, true, Kind::Float)
            .clamp_max(1.0);
        let logits = self
            .mlp
            .forward(&Tensor::cat(&[interest * any, target], -1), train)
            .squeeze_dim(-1);
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}
