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
//!   semantic spaces") with a feed-forward layer: the crate's
//!   [`TransformerStack`] (post-LN, ReLU, no dropout).
//! * **Vanilla attention by the target**: the target's item representation,
//!   projected, attends (multi-head) over the self-attended behaviors; the
//!   result and the target go into the final MLP. [`crate::transformer`]
//!   has self-attention only (queries and keys of one length), so this
//!   one-query attention is [`TargetAttention`] below.
//!
//! Departures, for the same inputs as the other models: one latent space
//! size `transformer_dim` for every type (the paper allows per-type raw
//! sizes), no dropout, and a history without any real behavior contributes
//! a zero user vector.

use tch::{nn, Kind, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::layers::{FeatureEmbedding, Init, Linear, Mlp};
use crate::transformer::{
    AttentionMask, FfnActivation, NormPosition, TransformerConfig, TransformerStack, MASKED_SCORE,
};
use crate::vocab::FeatureVocab;

/// The self-attention layers of ATRank and BST from the model config:
/// post-LN blocks of `transformer_dim` with `transformer_heads` heads, a
/// `4 dim` ReLU feed-forward layer, no dropout (so that CPU training stays
/// reproducible from the seed).
pub(crate) fn transformer_config(cfg: &ModelConfig) -> TransformerConfig {
    TransformerConfig {
        dim: cfg.transformer_dim,
        heads: cfg.transformer_heads,
        ffn_dim: 4 * cfg.transformer_dim,
        dropout: 0.0,
        norm: NormPosition::Post,
        activation: FfnActivation::Relu,
        layer_norm_eps: 1e-5,
    }
}

/// Multi-head attention of one query per row over keys and values: the
/// query (`[B, query_dim]`) and the keys (`[B, L, dim]`) are projected,
/// `softmax(q k^T / sqrt(d_h))` over the real keys weights the projected
/// values per head, the heads are concatenated and projected.
#[derive(Debug)]
pub(crate) struct TargetAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    heads: i64,
    dim: i64,
}

impl TargetAttention {
    pub(crate) fn new(
        p: &nn::Path<'_>,
        init: &mut Init,
        query_dim: i64,
        dim: i64,
        heads: i64,
    ) -> Self {
        Self {
            query: Linear::new(&(p / "query"), init, query_dim, dim),
            key: Linear::new(&(p / "key"), init, dim, dim),
            value: Linear::new(&(p / "value"), init, dim, dim),
            out: Linear::new(&(p / "out"), init, dim, dim),
            heads,
            dim,
        }
    }

    /// `[B, dim]`: the attention of `query` over `keys` whose real
    /// positions are 1 in `mask` (`[B, L]`). A row without a real key gets
    /// a finite, meaningless result (callers zero it).
    pub(crate) fn forward(&self, query: &Tensor, keys: &Tensor, mask: &Tensor) -> Tensor {
        let s = keys.size();
        let (b, l) = (s[0], s[1]);
        let dh = self.dim / self.heads;
        let q = self.query.forward(query).view([b, self.heads, 1, dh]);
        let split = |t: Tensor| t.view([b, l, self.heads, dh]).transpose(1, 2);
        let k = split(self.key.forward(keys));
        let v = split(self.value.forward(keys));
        let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt();
        let padding = mask.eq(0.0).view([b, 1, 1, l]);
        let weights = scores
            .masked_fill(&padding, MASKED_SCORE)
            .softmax(-1, Kind::Float);
        let context = weights.matmul(&v).view([b, self.dim]);
        self.out.forward(&context)
    }
}

/// ATRank.
#[derive(Debug)]
pub struct Atrank {
    emb: FeatureEmbedding,
    /// All types' projections side by side: `[types * dim, item_dim + d]`.
    projection: Linear,
    types: i64,
    dim: i64,
    blocks: TransformerStack,
    target_attention: TargetAttention,
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
        let blocks = TransformerStack::new(
            &(p / "self_attention"),
            &mut init,
            &transformer_config(cfg),
            cfg.transformer_layers as usize,
        )
        .expect("the transformer settings are validated with the model config");
        let target_attention = TargetAttention::new(
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
        let projected = self.project(batch);
        let len = projected.size()[1];
        let attention_mask = AttentionMask::new(len, Some(mask), false, mask.device())
            .expect("the batch mask is [B, N]");
        let h = self.blocks.forward(&projected, &attention_mask, train);
        let interest = self.target_attention.forward(&target, &h, mask);
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
