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
//! Both GRUs keep the parameter layout of an explicit cell (gates `r`, `u`,
//! candidate) and run fast:
//!
//! * the **extractor** runs libtorch's fused multi-step `gru` (its CPU path
//!   projects the inputs of all steps with one matmul and loops in C++);
//!   the cell's update gate `u` is PyTorch's `1 - z`, so the update rows
//!   of the weights are negated on the way in (four small ops a batch);
//! * the **AUGRU** projects its inputs once and loops over the steps with
//!   one matmul and a handful of element-wise ops each, computing
//!   `h' = h + a ⊙ u ⊙ (h~ - h)`; only its final state is kept.
//!
//! Histories are left-aligned and the batch is only as wide as its longest
//! history. The extractor runs over the padded tail of shorter rows, but
//! those states are masked everywhere they are read (auxiliary pairs,
//! attention) and the AUGRU's gate is 0 there, so its state stays that of
//! the last real step exactly: padding does not change a result.
//! `GruCell::reference_run` (tests only) is the explicit per-step cell the
//! fast paths are checked against.
//!
//! Speed (`cargo test -p hindsight-model --release -- --ignored
//! --nocapture train_step_throughput`, batch 256, N = 50, one thread):
//! the explicit loop this replaced spent most of its time in the backward
//! pass of `select` on the `[B, L, 3H]` input projections (each step's
//! gradient is scattered into a zero tensor of the full size, O(L²)
//! memory traffic); see docs/eval/dien.md for the figures.

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
/// `h' = (1 - u') ⊙ h + u' ⊙ h~` with `u' = a ⊙ u` (`a` the attention
/// score of the step, for an AUGRU).
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

    /// PyTorch's gate order is `(r, z, n)` with `h' = (1 - z) n + z h`, so
    /// `z = 1 - u`: the update rows of a weight or bias, negated.
    fn as_torch(&self, t: &Tensor) -> Tensor {
        let h = self.size;
        let rows = t.size()[0];
        debug_assert_eq!(rows, 3 * h);
        let sign = Tensor::ones([rows], (t.kind(), t.device()))
            .index_fill(0, &Tensor::arange_start(h, 2 * h, (Kind::Int64, t.device())), -1.0);
        if t.dim() == 2 {
            t * sign.unsqueeze(1)
        } else {
            t * sign
        }
    }

    /// Every state `[B, L, H]` of the plain GRU over `xs` `[B, L, in]`,
    /// from a zero state, with libtorch's fused `gru`.
    fn run_all(&self, xs: &Tensor) -> Tensor {
        let b = xs.size()[0];
        let h0 = Tensor::zeros([1, b, self.size], (xs.kind(), xs.device()));
        let bias = |l: &Linear| match &l.bias {
            Some(x) => self.as_torch(x),
            None => Tensor::zeros([3 * self.size], (xs.kind(), xs.device())),
        };
        let params = [
            self.as_torch(&self.input.weight),
            self.as_torch(&self.hidden.weight),
            bias(&self.input),
            bias(&self.hidden),
        ];
        let (out, _) = xs.gru(&h0, &params, true, 1, 0.0, false, false, true);
        out
    }

    /// The final state `[B, H]` of the AUGRU over `xs` `[B, L, in]` with
    /// attention `gate` `[B, L]` (0 on padding: the state is kept).
    fn run_final(&self, xs: &Tensor, gate: &Tensor) -> Tensor {
        let size = xs.size();
        let (b, h) = (size[0], self.size);
        let projected = self.input.forward(xs);
        let gi_ru = projected.narrow(2, 0, 2 * h).unbind(1);
        let gi_n = projected.narrow(2, 2 * h, h).unbind(1);
        let gates = gate.unsqueeze(-1).unbind(1);
        let mut state = Tensor::zeros([b, h], (xs.kind(), xs.device()));
        for ((ru_in, n_in), a) in gi_ru.iter().zip(&gi_n).zip(&gates) {
            let gh = self.hidden.forward(&state);
            let ru = (ru_in + gh.narrow(1, 0, 2 * h)).sigmoid();
            let r = ru.narrow(1, 0, h);
            let u = ru.narrow(1, h, h) * a;
            let candidate = (n_in + r * gh.narrow(1, 2 * h, h)).tanh();
            state = &state + u * (candidate - &state);
        }
        state
    }

    /// The cell written out step by step (what the model ran before the
    /// fast paths): every state `[B, L, H]`; `gate` `[B, L]` scales the
    /// update gate (the mask, times the attention for an AUGRU).
    #[cfg(test)]
    pub(crate) fn reference_run(&self, xs: &Tensor, gate: &Tensor) -> Tensor {
        let size = xs.size();
        let (b, steps) = (size[0], size[1]);
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
        // Positives and negatives through the auxiliary MLP in one call.
        let logits = self
            .aux
            .forward(
                &Tensor::cat(&[Tensor::cat(&[&h, &pos], -1), Tensor::cat(&[&h, &neg], -1)], 0),
                train,
            )
            .squeeze_dim(-1);
        let labels = Tensor::cat(&[pairs.ones_like(), pairs.zeros_like()], 0);
        let loss = logits.binary_cross_entropy_with_logits(
            &labels,
            None::<&Tensor>,
            None::<&Tensor>,
            Reduction::None,
        ) * Tensor::cat(&[&pairs, &pairs], 0);
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

        let states = self.extractor.run_all(&behaviors);
        let aux_loss = self.aux_loss(batch, &states, &all_items, &mask, train);

        let query = self.attention.forward(&target).unsqueeze(-1);
        let scores = states.bmm(&query).squeeze_dim(-1);
        let scores = scores.masked_fill(&mask.eq(0.0), -1e9);
        let attention = scores.softmax(-1, Kind::Float) * &mask;
        let interest = self.evolution.run_final(&states, &attention);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        let diff = f64::try_from((a - b).abs().max()).unwrap();
        let scale = f64::try_from(b.abs().max()).unwrap().max(1.0);
        diff / scale
    }

    /// The fused extractor and the AUGRU loop compute what the explicit
    /// cell computes, padding included.
    #[test]
    fn fast_grus_equal_the_explicit_cell() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut init = Init::new(5);
        let cell = GruCell::new(&vs.root(), &mut init, 12, 10);
        tch::manual_seed(4);
        let opts = (Kind::Float, tch::Device::Cpu);
        let xs = Tensor::randn([4, 7, 12], opts);
        let plain = cell.reference_run(&xs, &Tensor::ones([4, 7], opts));
        assert!(close(&cell.run_all(&xs), &plain) < 1e-5);

        // Attention gates with padding at the end of two rows.
        let gate = Tensor::rand([4, 7], opts);
        let _ = gate.narrow(1, 5, 2).narrow(0, 0, 2).fill_(0.0);
        let reference = cell.reference_run(&xs, &gate);
        let last = reference.select(1, 6);
        assert!(close(&cell.run_final(&xs, &gate), &last) < 1e-5);
        // A row with gates 0 after step 4 ends in its step-4 state.
        assert!(close(&last.get(0), &reference.get(0).get(4)) < 1e-6);
    }
}
