//! Deep Interest Network (Zhou et al., "Deep Interest Network for
//! Click-Through Rate Prediction", KDD 2018).
//!
//! A local activation unit scores each behavior against the target; the
//! user-interest vector is the weighted **sum** of the behaviors. As in the
//! paper, the weights are not normalised by a softmax (so that the strength
//! of an interest is kept); padding positions get weight 0.

use tch::{nn, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::{Activation, ModelConfig};
use crate::layers::{Act, FeatureEmbedding, Init, Linear, Mlp};
use crate::vocab::FeatureVocab;

/// The local activation unit: an MLP over `[q, k, q - k, q * k, c]` with
/// PReLU hidden layers and one linear output.
///
/// Its first layer is computed in an equivalent, cheaper form:
/// `W [q, k, q - k, q * k, c] = (W_q + W_d) q + (W_k - W_d) k + W_p (q * k) + W_c c`,
/// i.e. one matrix on the target (once per example instead of once per
/// behavior) plus one on `[k, q * k, c]`. The two parameterisations span the
/// same functions.
#[derive(Debug)]
struct ActivationUnit {
    query: Linear,
    behavior: Linear,
    act: Act,
    rest: Mlp,
}

impl ActivationUnit {
    fn new(
        p: &nn::Path<'_>,
        init: &mut Init,
        item_dim: i64,
        context_dim: i64,
        hidden: &[i64],
    ) -> Self {
        let (first, rest) = hidden
            .split_first()
            .expect("attention_hidden is validated non-empty");
        Self {
            query: Linear::without_bias(&(p / "query"), init, item_dim, *first),
            behavior: Linear::new(&(p / "behavior"), init, 2 * item_dim + context_dim, *first),
            act: Act::new(&(p / "act"), Activation::Prelu, *first),
            rest: Mlp::new(&(p / "rest"), init, *first, rest, 1, Activation::Prelu),
        }
    }

    /// Weights `[B, N]` of keys `[B, N, Di]` with contexts `[B, N, Dc]`
    /// for queries `[B, Di]`.
    /// Attention logits `[B, N]` of the behaviors `keys` (`[B, N, di]`) with
    /// contexts `[B, N, dc]` for the targets `query` (`[B, di]`).
    ///
    /// The paper's unit applies a dense layer to `[k, q*k, c]` (plus the
    /// query's own term). Since `W [k, q*k, c] = (W_k + W_qk diag(q)) k +
    /// W_c c`, the per-target matrix `W_k + W_qk diag(q)` (`[B, H, di]`) is
    /// built once and applied to all N behaviors with one batched matmul,
    /// instead of materialising `q*k` and the `[B, N, 2 di + dc]`
    /// concatenation (`reference_forward` in the tests checks they agree).
    /// The DIN criterion bench measured no speed difference between the two
    /// forms on a 2-core EPYC (docs/benchmarks.md).
    fn forward(&self, query: &Tensor, keys: &Tensor, context: &Tensor, train: bool) -> Tensor {
        let di = query.size()[1];
        let dc = context.size()[2];
        let w = &self.behavior.weight;
        let (w_k, w_qk, w_c) = (
            w.narrow(1, 0, di),
            w.narrow(1, di, di),
            w.narrow(1, 2 * di, dc),
        );
        let per_target = w_k.unsqueeze(0) + w_qk.unsqueeze(0) * query.unsqueeze(1);
        let mut bias = self.query.forward(query);
        if let Some(b) = &self.behavior.bias {
            bias += b;
        }
        let first =
            keys.bmm(&per_target.transpose(1, 2)) + context.matmul(&w_c.tr()) + bias.unsqueeze(1);
        self.rest
            .forward(&self.act.forward(&first, train), train)
            .squeeze_dim(-1)
    }

    /// The unit as the paper writes it, for checking [`Self::forward`].
    #[cfg(test)]
    fn reference_forward(&self, query: &Tensor, keys: &Tensor, context: &Tensor) -> Tensor {
        let q = query.unsqueeze(1);
        let input = Tensor::cat(&[keys, &(&q * keys), context], -1);
        let first = self.behavior.forward(&input) + self.query.forward(query).unsqueeze(1);
        self.rest
            .forward(&self.act.forward(&first, false), false)
            .squeeze_dim(-1)
    }
}

/// DIN.
///
/// * query `q`: the target's item representation;
/// * key `k_t`: behavior `t`'s item representation; context `c_t`: its
///   behavior-type and time-gap embeddings;
/// * weight `w_t = a([q, k_t, q - k_t, q * k_t, c_t]) * mask_t`, `a` the
///   local activation unit (PReLU hidden layers `attention_hidden`, linear
///   output, no softmax);
/// * interest `sum_t w_t [k_t, c_t]`;
/// * logit `mlp([interest, q])`, hidden layers `mlp_hidden` with the
///   configured activation (Dice by default).
#[derive(Debug)]
pub struct Din {
    emb: FeatureEmbedding,
    attention: ActivationUnit,
    mlp: Mlp,
}

impl Din {
    /// Builds the model with its parameters under `p`, initialised from
    /// `cfg.seed`.
    pub fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Self {
        let mut init = Init::new(cfg.seed);
        let emb = FeatureEmbedding::new(&(p / "embedding"), &mut init, vocab, cfg);
        let di = emb.item_dim();
        let attention = ActivationUnit::new(
            &(p / "attention"),
            &mut init,
            di,
            emb.context_dim(),
            &cfg.attention_hidden,
        );
        let mlp = Mlp::new(
            &(p / "mlp"),
            &mut init,
            emb.behavior_dim() + di,
            &cfg.mlp_hidden,
            1,
            cfg.activation,
        );
        Self {
            emb,
            attention,
            mlp,
        }
    }
}

impl CtrModel for Din {
    fn kind(&self) -> ModelKind {
        ModelKind::Din
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput {
        let target = self.emb.target(batch);
        let keys = self.emb.history_items(batch);
        let context = self.emb.history_context(batch);
        let weights = self.attention.forward(&target, &keys, &context, train) * &batch.mask;
        // sum_t w_t [k_t, c_t] as [B, 1, N] x [B, N, D] products, without
        // materialising the concatenated behaviors.
        let w = weights.unsqueeze(1);
        let interest = Tensor::cat(&[w.bmm(&keys), w.bmm(&context)], -1).squeeze_dim(1);
        let logits = self
            .mlp
            .forward(&Tensor::cat(&[interest, target], -1), train)
            .squeeze_dim(-1);
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factored_activation_unit_equals_the_papers_form() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut init = Init::new(7);
        let (di, dc) = (54, 36);
        let unit = ActivationUnit::new(&vs.root(), &mut init, di, dc, &[36, 16]);
        tch::manual_seed(3);
        let q = Tensor::randn([5, di], (tch::Kind::Float, tch::Device::Cpu));
        let k = Tensor::randn([5, 7, di], (tch::Kind::Float, tch::Device::Cpu));
        let c = Tensor::randn([5, 7, dc], (tch::Kind::Float, tch::Device::Cpu));
        let fast = unit.forward(&q, &k, &c, false);
        let slow = unit.reference_forward(&q, &k, &c);
        assert_eq!(fast.size(), vec![5, 7]);
        let diff = f64::try_from((fast - &slow).abs().max()).unwrap();
        let scale = f64::try_from(slow.abs().max()).unwrap();
        assert!(diff <= 1e-4 * scale.max(1.0), "max difference {diff}");
    }
}
