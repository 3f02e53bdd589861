//! Deep Interest Evolution Network (Zhou et al., "Deep Interest Evolution
//! Network for Click-Through Rate Prediction", AAAI 2019).
//!
//! * **Interest extractor**: a GRU over the behaviors in chronological
//!   order. Its hidden state `h_t` is supervised by the **auxiliary loss**:
//!   a small MLP must tell the next behavior's item `e_{t+1}` (label 1)
//!   from a sampled negative item (label 0) given `h_t`; binary cross
//!   entropy averaged over the valid `(t, t+1)` pairs.
//! * **Interest evolving**: attention `a_t = softmax_t(h_t W e_target)`
//!   over the real behaviors, then an AUGRU (a GRU whose update gate is
//!   scaled by `a_t`) over the `h_t`; its final state is the user interest.
//!
//! * **Output**: an MLP over `[final AUGRU state, target]`, plus, with
//!   `dien_sum_pooling` (the default), the sum of the history's item
//!   representations `s` and `target ⊙ s`, as in the authors' released
//!   code (github.com/mouna99/dien, `item_his_eb_sum`), which the paper's
//!   figure 2 leaves out.
//!
//! Both GRUs are written with explicit cells and a loop over the steps; a
//! padded step leaves the state unchanged exactly (its update gate is 0),
//! so padding does not change a result, and the loop stops at the longest
//! history of the batch.

use tch::{nn, Kind, Reduction, Tensor};

use super::{CtrModel, ModelKind, ModelOutput};
use crate::batch::Batch;
use crate::config::{Activation, ModelConfig};
use crate::layers::{FeatureEmbedding, Init, Linear, Mlp};
use crate::vocab::FeatureVocab;

/// A GRU cell, optionally attention-gated (AUGRU).
///
/// `r = σ(W_r x + U_r h + b_r)`, `u = σ(W_u x + U_u h + b_u)`,
/// `h~ = tanh(W_h x + b_h + r ⊙ (U_h h + b'_h))`,
/// `h' = (1 - u') ⊙ h + u' ⊙ h~` with `u' = a ⊙ m ⊙ u` (`a` the attention
/// score, 1 for a plain GRU; `m` the mask).
#[derive(Debug)]
pub(crate) struct GruCell {
    pub(crate) input: Linear,
    pub(crate) hidden: Linear,
    size: i64,
}

impl GruCell {
    fn new(p: &nn::Path<'_>, init: &mut Init, input: i64, hidden: i64) -> Self {
        Self {
            input: Linear::new(&(p / "input"), init, input, 3 * hidden),
            hidden: Linear::new(&(p / "hidden"), init, hidden, 3 * hidden),
            size: hidden,
        }
    }

    /// Runs over `xs` `[B, L, in]`; `gate` `[B, L]` is the mask, times the
    /// attention for an AUGRU. Returns every state, `[B, L, H]`.
    fn run(&self, xs: &Tensor, gate: &Tensor) -> Tensor {
        let size = xs.size();
        let (b, steps) = (size[0], size[1]);
        // Input projections of all steps at once.
        let projected = self.input.forward(xs);
        let mut h = Tensor::zeros([b, self.size], (xs.kind(), xs.device()));
        let mut states = Vec::with_capacity(steps as usize);
        for t in 0..steps {
            let gi = projected.select(1, t).chunk(3, -1);
            let gh = self.hidden.forward(&h).chunk(3, -1);
            let r = (&gi[0] + &gh[0]).sigmoid();
            let u = (&gi[1] + &gh[1]).sigmoid() * gate.select(1, t).unsqueeze(-1);
            let candidate = (&gi[2] + &r * &gh[2]).tanh();
            h = (1.0 - &u) * &h + &u * candidate;
            states.push(h.shallow_clone());
        }
        Tensor::stack(&states, 1)
    }
}

/// DIEN.
///
/// The GRU input is the behavior representation (item representation and
/// context); both GRUs have hidden size `behavior_dim`. The attention
/// query is the target's item representation. Negatives of the auxiliary
/// loss are drawn by [`Batch::sample_negatives`] (other behaviors of the
/// batch, so they carry their real categories); without them, or at
/// inference, no auxiliary loss is computed.
#[derive(Debug)]
pub struct Dien {
    emb: FeatureEmbedding,
    pub(crate) extractor: GruCell,
    aux: Mlp,
    attention: Linear,
    evolution: GruCell,
    mlp: Mlp,
    sum_pooling: bool,
}

impl Dien {
    /// Builds the model with its parameters under `p`, initialised from
    /// `cfg.seed`.
    pub fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Self {
        let mut init = Init::new(cfg.seed);
        let emb = FeatureEmbedding::new(&(p / "embedding"), &mut init, vocab, cfg);
        let (di, h) = (emb.item_dim(), emb.behavior_dim());
        let extractor = GruCell::new(&(p / "extractor"), &mut init, h, h);
        let aux = Mlp::new(
            &(p / "aux"),
            &mut init,
            h + di,
            &cfg.aux_hidden,
            1,
            Activation::Prelu,
        );
        let attention = Linear::new(&(p / "attention"), &mut init, di, h);
        let evolution = GruCell::new(&(p / "evolution"), &mut init, h, h);
        let pooled = if cfg.dien_sum_pooling { 2 * di } else { 0 };
        let mlp = Mlp::new(
            &(p / "mlp"),
            &mut init,
            h + di + pooled,
            &cfg.mlp_hidden,
            1,
            cfg.activation,
        );
        Self {
            emb,
            extractor,
            aux,
            attention,
            evolution,
            mlp,
            sum_pooling: cfg.dien_sum_pooling,
        }
    }

    /// The auxiliary loss of the extractor states `[B, L, H]` given the
    /// mask `[B, L]`.
    /// `all_items` `[B, N, Di]` are the item representations of all the
    /// batch's slots, from which negatives are gathered.
    fn aux_loss(
        &self,
        batch: &Batch,
        states: &Tensor,
        all_items: &Tensor,
        mask: &Tensor,
        train: bool,
    ) -> Option<Tensor> {
        let negatives = batch.negatives.as_ref()?;
        let size = states.size();
        let (b, steps) = (size[0], size[1]);
        if steps < 2 {
            return Some(Tensor::zeros([], (Kind::Float, states.device())));
        }
        let di = all_items.size()[2];
        let items = all_items.narrow(1, 0, steps);
        let all_items = all_items.reshape([-1, di]);
        let neg_index = negatives.narrow(1, 1, steps - 1).reshape([-1]);
        let neg = all_items
            .index_select(0, &neg_index)
            .view([b, steps - 1, di]);
        let pos = items.narrow(1, 1, steps - 1);
        let h = states.narrow(1, 0, steps - 1);
        let pairs = mask.narrow(1, 0, steps - 1) * mask.narrow(1, 1, steps - 1);
        let pos_logit = self
            .aux
            .forward(&Tensor::cat(&[&h, &pos], -1), train)
            .squeeze_dim(-1);
        let neg_logit = self
            .aux
            .forward(&Tensor::cat(&[&h, &neg], -1), train)
            .squeeze_dim(-1);
        let bce = |logit: &Tensor, label: f64| {
            logit.binary_cross_entropy_with_logits(
                &logit.full_like(label),
                None::<&Tensor>,
                None::<&Tensor>,
                Reduction::None,
            )
        };
        let loss = (bce(&pos_logit, 1.0) + bce(&neg_logit, 0.0)) * &pairs;
        Some(loss.sum(Kind::Float) / pairs.sum(Kind::Float).clamp_min(1.0))
    }
}

impl CtrModel for Dien {
    fn kind(&self) -> ModelKind {
        ModelKind::Dien
    }

    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput {
        let target = self.emb.target(batch);
        // Histories are left-aligned: steps past the longest are padding.
        let longest = batch.lengths.max().int64_value(&[]).max(1);
        let steps = longest.min(batch.n() as i64);
        let all_items = self.emb.history_items(batch);
        let items = all_items.narrow(1, 0, steps);
        let context = self.emb.history_context(batch).narrow(1, 0, steps);
        let mask = batch.mask.narrow(1, 0, steps);
        let behaviors = Tensor::cat(&[&items, &context], -1);

        let states = self.extractor.run(&behaviors, &mask);
        let aux_loss = self.aux_loss(batch, &states, &all_items, &mask, train);

        let query = self.attention.forward(&target).unsqueeze(1);
        let scores = (&states * query).sum_dim_intlist(-1, false, Kind::Float);
        let scores = scores.masked_fill(&mask.eq(0.0), -1e9);
        let attention = scores.softmax(-1, Kind::Float) * &mask;
        let evolved = self.evolution.run(&states, &attention);
        let interest = evolved.select(1, steps - 1);

        let mut features = vec![interest];
        if self.sum_pooling {
            let pooled = (&items * mask.unsqueeze(-1)).sum_dim_intlist(1, false, Kind::Float);
            features.push(&target * &pooled);
            features.push(pooled);
        }
        features.push(target);
        let logits = self
            .mlp
            .forward(&Tensor::cat(&features, -1), train)
            .squeeze_dim(-1);
        ModelOutput { logits, aux_loss }
    }
}
