//! Transformer layers on tch: multi-head self-attention with causal and
//! key-padding masks, the position-wise feed-forward network, layer
//! normalisation and dropout, a [`TransformerBlock`] and a stack of them.
//!
//! The layers follow Vaswani et al., "Attention Is All You Need" (NeurIPS
//! 2017), in the form SASRec uses them (Kang & McAuley, "Self-Attentive
//! Sequential Recommendation", ICDM 2018, section III-B/C):
//!
//! * attention `softmax(Q K^T / sqrt(d_h) + mask) V` per head, the heads
//!   concatenated and projected (`W_O`), dropout on the attention weights;
//! * feed-forward `act(x W_1 + b_1) W_2 + b_2` applied to each position
//!   (the paper's ReLU; GELU as BERT4Rec / RecBole use is an option);
//! * **pre-LN** residual blocks by default, the SASRec paper's
//!   `g(x) = x + Dropout(g(LayerNorm(x)))` (eq. 4), with a final layer norm
//!   after the last block (as pmixer/SASRec.pytorch's `last_layernorm`);
//!   **post-LN** (`LayerNorm(x + Dropout(g(x)))`, the original Transformer
//!   and RecBole's encoder) is available through [`NormPosition::Post`].
//!
//! Masks ([`AttentionMask`]): a query may not attend to a later position
//! when the mask is causal, nor to a padded key. Masked scores get a large
//! finite negative bias ([`MASKED_SCORE`]) rather than `-inf`, so a query
//! whose keys are all masked (a padded position) gives finite values, not
//! NaN; its exponentials underflow to exactly zero whenever one key is
//! visible, so padded keys contribute nothing. The outputs at padded
//! positions are set to zero after every block (SASRec's `timeline_mask`),
//! so adding padding does not change the outputs at the other positions
//! (tested below).
//!
//! Shapes: inputs are `[B, L, D]` (batch, positions, model dimension).

use tch::{nn, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::layers::{Init, Linear};

/// The bias added to a masked attention score: large enough that its
/// exponential is exactly zero next to any visible score, finite so that a
/// fully masked row stays finite.
pub const MASKED_SCORE: f64 = -1e9;

/// Where the layer norm sits in a residual block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NormPosition {
    /// `x + Dropout(f(LayerNorm(x)))`, and a layer norm after the last
    /// block (SASRec, eq. 4 of the paper).
    #[default]
    Pre,
    /// `LayerNorm(x + Dropout(f(x)))` (Vaswani et al.; RecBole's encoder).
    Post,
}

/// The feed-forward network's hidden activation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FfnActivation {
    /// ReLU, as the SASRec paper (eq. 3).
    #[default]
    Relu,
    /// GELU (tanh-free form), as BERT4Rec and RecBole's SASRec.
    Gelu,
}

/// The shape of a transformer block.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    /// Model dimension `D` (input and output of every block).
    pub dim: i64,
    /// Attention heads; must divide `dim`.
    pub heads: i64,
    /// Hidden size of the feed-forward network (SASRec: `dim`).
    pub ffn_dim: i64,
    /// Dropout rate on attention weights, sublayer outputs and the FFN's
    /// hidden layer, in `[0, 1)`.
    pub dropout: f64,
    /// Pre-LN (SASRec) or post-LN.
    pub norm: NormPosition,
    /// The FFN's activation.
    pub activation: FfnActivation,
    /// Layer-norm epsilon (SASRec.pytorch uses 1e-8).
    pub layer_norm_eps: f64,
}

impl TransformerConfig {
    /// SASRec's block: pre-LN, ReLU, `ffn_dim = dim`.
    pub fn sasrec(dim: i64, heads: i64, dropout: f64) -> Self {
        Self {
            dim,
            heads,
            ffn_dim: dim,
            dropout,
            norm: NormPosition::Pre,
            activation: FfnActivation::Relu,
            layer_norm_eps: 1e-8,
        }
    }

    /// Checks the values, with a message that says which one is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidConfig(m));
        if self.dim < 1 || self.ffn_dim < 1 {
            return bad(format!(
                "transformer dimensions must be >= 1 (dim {}, ffn_dim {})",
                self.dim, self.ffn_dim
            ));
        }
        if self.heads < 1 || self.dim % self.heads != 0 {
            return bad(format!(
                "the number of attention heads ({}) must be >= 1 and divide the dimension ({})",
                self.heads, self.dim
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return bad(format!(
                "layer_norm_eps must be positive, got {}",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// Which (query, key) pairs attention may use, for a batch of sequences.
#[derive(Debug)]
pub struct AttentionMask {
    /// Additive score bias, `[B or 1, 1, L, L]`: 0 where allowed,
    /// [`MASKED_SCORE`] where masked.
    bias: Tensor,
    /// `[B, L, 1]` float, 1 at real positions and 0 at padding, when a
    /// key-padding mask was given.
    valid: Option<Tensor>,
}

impl AttentionMask {
    /// A mask over `len` positions: causal (a query sees itself and earlier
    /// positions only) when `causal`, and hiding the keys where
    /// `key_valid` (`[B, len]`, bool or 0/1) is false.
    pub fn new(
        len: i64,
        key_valid: Option<&Tensor>,
        causal: bool,
        device: tch::Device,
    ) -> Result<Self> {
        let mut allowed = Tensor::ones([1, 1, len, len], (Kind::Bool, device));
        if causal {
            allowed = allowed.tril(0);
        }
        let valid = match key_valid {
            Some(v) => {
                let size = v.size();
                if size.len() != 2 || size[1] != len {
                    return Err(ModelError::InvalidConfig(format!(
                        "a key-padding mask must be [batch, {len}], got {size:?}"
                    )));
                }
                let v = v.to_device(device).to_kind(Kind::Bool);
                allowed = allowed.logical_and(&v.unsqueeze(1).unsqueeze(1));
                Some(v.to_kind(Kind::Float).unsqueeze(-1))
            }
            None => None,
        };
        let bias = Tensor::zeros(allowed.size(), (Kind::Float, device))
            .masked_fill(&allowed.logical_not(), MASKED_SCORE);
        Ok(Self { bias, valid })
    }

    /// Zeroes the rows of `xs` (`[B, L, D]`) at padded positions.
    pub fn zero_padding(&self, xs: &Tensor) -> Tensor {
        match &self.valid {
            Some(v) => xs * v,
            None => xs.shallow_clone(),
        }
    }
}

/// Layer normalisation over the last axis with a learned gain and bias.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// Gain 1, bias 0.
    pub fn new(p: &nn::Path<'_>, dim: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[dim], nn::Init::Const(1.0)),
            bias: p.var("bias", &[dim], nn::Init::Const(0.0)),
            dim,
            eps,
        }
    }

    /// Normalises `xs` (`[.., dim]`).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )
    }
}

/// Multi-head scaled dot-product self-attention.
#[derive(Debug)]
pub struct MultiHeadSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    heads: i64,
    dim: i64,
    dropout: f64,
}

impl MultiHeadSelfAttention {
    /// Projections `W_Q, W_K, W_V, W_O` (`dim x dim`, with bias) under `p`.
    pub fn new(p: &nn::Path<'_>, init: &mut Init, cfg: &TransformerConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.dim;
        Ok(Self {
            query: Linear::new(&(p / "query"), init, d, d),
            key: Linear::new(&(p / "key"), init, d, d),
            value: Linear::new(&(p / "value"), init, d, d),
            out: Linear::new(&(p / "out"), init, d, d),
            heads: cfg.heads,
            dim: d,
            dropout: cfg.dropout,
        })
    }

    /// Attention of `xs` (`[B, L, D]`) over itself under `mask`; dropout on
    /// the attention weights when `train`.
    pub fn forward(&self, xs: &Tensor, mask: &AttentionMask, train: bool) -> Tensor {
        self.attend(xs, xs, mask, train)
    }

    /// Attention with queries from `queries` and keys / values from
    /// `keys` (both `[B, L, D]`): SASRec.pytorch normalises the queries
    /// only; [`TransformerBlock`] passes the same tensor for both.
    pub fn attend(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        mask: &AttentionMask,
        train: bool,
    ) -> Tensor {
        let (b, l) = (queries.size()[0], queries.size()[1]);
        let dh = self.dim / self.heads;
        let split = |t: Tensor| t.view([b, l, self.heads, dh]).transpose(1, 2);
        let q = split(self.query.forward(queries));
        let k = split(self.key.forward(keys));
        let v = split(self.value.forward(keys));
        let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt() + &mask.bias;
        let weights = scores.softmax(-1, Kind::Float).dropout(self.dropout, train);
        let context = weights
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .view([b, l, self.dim]);
        self.out.forward(&context)
    }
}

/// The position-wise feed-forward network `act(x W_1 + b_1) W_2 + b_2`,
/// dropout on the hidden layer when training.
#[derive(Debug)]
pub struct FeedForward {
    inner: Linear,
    outer: Linear,
    activation: FfnActivation,
    dropout: f64,
}

impl FeedForward {
    /// `dim -> ffn_dim -> dim` under `p`.
    pub fn new(p: &nn::Path<'_>, init: &mut Init, cfg: &TransformerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            inner: Linear::new(&(p / "inner"), init, cfg.dim, cfg.ffn_dim),
            outer: Linear::new(&(p / "outer"), init, cfg.ffn_dim, cfg.dim),
            activation: cfg.activation,
            dropout: cfg.dropout,
        })
    }

    /// Applies the network to every position of `xs` (`[.., dim]`).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.inner.forward(xs);
        let h = match self.activation {
            FfnActivation::Relu => h.relu(),
            FfnActivation::Gelu => h.gelu("none"),
        };
        self.outer.forward(&h.dropout(self.dropout, train))
    }
}

/// One transformer block: self-attention then feed-forward, each in a
/// residual connection with dropout and layer norm (pre- or post-LN).
#[derive(Debug)]
pub struct TransformerBlock {
    attention: MultiHeadSelfAttention,
    attention_norm: LayerNorm,
    ffn: FeedForward,
    ffn_norm: LayerNorm,
    norm: NormPosition,
    dropout: f64,
}

impl TransformerBlock {
    /// A block under `p` (`p/attention`, `p/attention_norm`, `p/ffn`,
    /// `p/ffn_norm`).
    pub fn new(p: &nn::Path<'_>, init: &mut Init, cfg: &TransformerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            attention: MultiHeadSelfAttention::new(&(p / "attention"), init, cfg)?,
            attention_norm: LayerNorm::new(&(p / "attention_norm"), cfg.dim, cfg.layer_norm_eps),
            ffn: FeedForward::new(&(p / "ffn"), init, cfg)?,
            ffn_norm: LayerNorm::new(&(p / "ffn_norm"), cfg.dim, cfg.layer_norm_eps),
            norm: cfg.norm,
            dropout: cfg.dropout,
        })
    }

    /// `[B, L, D] -> [B, L, D]`; padded positions come out as zeros.
    pub fn forward(&self, xs: &Tensor, mask: &AttentionMask, train: bool) -> Tensor {
        let drop = |t: Tensor| t.dropout(self.dropout, train);
        let out = match self.norm {
            NormPosition::Pre => {
                let h = self.attention_norm.forward(xs);
                let xs = xs + drop(self.attention.forward(&h, mask, train));
                let h = self.ffn_norm.forward(&xs);
                &xs + drop(self.ffn.forward(&h, train))
            }
            NormPosition::Post => {
                let xs = self
                    .attention_norm
                    .forward(&(xs + drop(self.attention.forward(xs, mask, train))));
                self.ffn_norm
                    .forward(&(&xs + drop(self.ffn.forward(&xs, train))))
            }
        };
        mask.zero_padding(&out)
    }
}

/// A stack of [`TransformerBlock`]s; with pre-LN, a final layer norm.
#[derive(Debug)]
pub struct TransformerStack {
    blocks: Vec<TransformerBlock>,
    final_norm: Option<LayerNorm>,
}

impl TransformerStack {
    /// `blocks` blocks under `p/block{i}` (and `p/final_norm` for pre-LN).
    pub fn new(
        p: &nn::Path<'_>,
        init: &mut Init,
        cfg: &TransformerConfig,
        blocks: usize,
    ) -> Result<Self> {
        cfg.validate()?;
        let list = (0..blocks)
            .map(|i| TransformerBlock::new(&(p / format!("block{i}")), init, cfg))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = (cfg.norm == NormPosition::Pre)
            .then(|| LayerNorm::new(&(p / "final_norm"), cfg.dim, cfg.layer_norm_eps));
        Ok(Self {
            blocks: list,
            final_norm,
        })
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the stack has no block (it then only normalises).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// `[B, L, D] -> [B, L, D]`; padded positions come out as zeros.
    pub fn forward(&self, xs: &Tensor, mask: &AttentionMask, train: bool) -> Tensor {
        let mut h = mask.zero_padding(xs);
        for block in &self.blocks {
            h = block.forward(&h, mask, train);
        }
        match &self.final_norm {
            Some(norm) => mask.zero_padding(&norm.forward(&h)),
            None => h,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(t: &Tensor, values: &Tensor) {
        tch::no_grad(|| {
            t.shallow_clone().copy_(values);
        });
    }

    fn vec_of(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// One head, `D = 2`, identity projections, zero biases: the outputs
    /// are the softmax-weighted inputs, computable by hand.
    #[test]
    fn attention_matches_a_hand_computed_case() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = TransformerConfig::sasrec(2, 1, 0.0);
        let attn = MultiHeadSelfAttention::new(&vs.root(), &mut Init::new(1), &cfg).unwrap();
        for lin in [&attn.query, &attn.key, &attn.value, &attn.out] {
            set(
                &lin.weight,
                &Tensor::eye(2, (Kind::Float, tch::Device::Cpu)),
            );
            set(
                lin.bias.as_ref().unwrap(),
                &Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)),
            );
        }
        let xs = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([1, 2, 2]);
        // Scores are x_i . x_j / sqrt(2): 1/sqrt(2) on the diagonal, 0 off.
        let s = 1.0f64 / 2f64.sqrt();
        let hi = (s.exp() / (s.exp() + 1.0)) as f32; // 0.66975
        let lo = 1.0 - hi;
        let causal = AttentionMask::new(2, None, true, tch::Device::Cpu).unwrap();
        let out = vec_of(&attn.forward(&xs, &causal, false));
        // Position 0 sees itself only; position 1 both.
        assert!(close(&out, &[1.0, 0.0, lo, hi], 1e-6), "{out:?}");
        let full = AttentionMask::new(2, None, false, tch::Device::Cpu).unwrap();
        let out = vec_of(&attn.forward(&xs, &full, false));
        assert!(close(&out, &[hi, lo, lo, hi], 1e-6), "{out:?}");
        // A padded key is invisible: position 1 with key 0 hidden sees itself.
        let valid = Tensor::from_slice(&[false, true]).view([1, 2]);
        let padded = AttentionMask::new(2, Some(&valid), false, tch::Device::Cpu).unwrap();
        let out = vec_of(&attn.forward(&xs, &padded, false));
        assert!(close(&out[2..], &[0.0, 1.0], 1e-6), "{out:?}");
        assert!(out.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn layer_norm_matches_a_hand_computed_case() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let ln = LayerNorm::new(&vs.root(), 2, 1e-8);
        // mean 2, variance 1 -> (-1, 1); [5, 5] -> (0, 0).
        let out = vec_of(&ln.forward(&Tensor::from_slice(&[1.0f32, 3.0, 5.0, 5.0]).view([2, 2])));
        assert!(close(&out, &[-1.0, 1.0, 0.0, 0.0], 1e-5), "{out:?}");
    }

    fn stack(norm: NormPosition) -> (nn::VarStore, TransformerStack) {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = TransformerConfig {
            norm,
            ffn_dim: 12,
            ..TransformerConfig::sasrec(8, 2, 0.2)
        };
        let s = TransformerStack::new(&vs.root(), &mut Init::new(3), &cfg, 2).unwrap();
        (vs, s)
    }

    fn random(shape: &[i64], seed: u64) -> Tensor {
        Init::new(seed).uniform(shape, 1.0)
    }

    #[test]
    fn causal_mask_hides_later_positions() {
        for norm in [NormPosition::Pre, NormPosition::Post] {
            let (_vs, s) = stack(norm);
            let xs = random(&[2, 5, 8], 11);
            let mask = AttentionMask::new(5, None, true, tch::Device::Cpu).unwrap();
            let before = s.forward(&xs, &mask, false);
            // Change positions 3 and 4.
            let changed = xs.copy();
            let _ = changed.narrow(1, 3, 2).copy_(&random(&[2, 2, 8], 12));
            let after = s.forward(&changed, &mask, false);
            let early = |t: &Tensor| vec_of(&t.narrow(1, 0, 3));
            assert!(close(&early(&before), &early(&after), 1e-6), "{norm:?}");
            let late = |t: &Tensor| vec_of(&t.narrow(1, 3, 2));
            assert!(!close(&late(&before), &late(&after), 1e-3), "{norm:?}");
        }
    }

    #[test]
    fn padding_does_not_change_the_real_positions() {
        for norm in [NormPosition::Pre, NormPosition::Post] {
            for causal in [true, false] {
                let (_vs, s) = stack(norm);
                let xs = random(&[1, 3, 8], 21);
                let plain = AttentionMask::new(3, None, causal, tch::Device::Cpu).unwrap();
                let out = vec_of(&s.forward(&xs, &plain, false));
                // Two padded positions on the left (SASRec's layout) holding
                // garbage, then the same three.
                let padded = Tensor::cat(&[random(&[1, 2, 8], 22), xs.shallow_clone()], 1);
                let valid = Tensor::from_slice(&[false, false, true, true, true]).view([1, 5]);
                let mask = AttentionMask::new(5, Some(&valid), causal, tch::Device::Cpu).unwrap();
                let out_padded = s.forward(&padded, &mask, false);
                let real = vec_of(&out_padded.narrow(1, 2, 3));
                assert!(close(&out, &real, 1e-5), "{norm:?} causal {causal}");
                let pad = vec_of(&out_padded.narrow(1, 0, 2));
                assert!(pad.iter().all(|v| *v == 0.0), "{pad:?}");
            }
        }
    }

    #[test]
    fn dropout_only_in_training_and_gradients_flow() {
        let (vs, s) = stack(NormPosition::Pre);
        let xs = random(&[2, 4, 8], 31);
        let mask = AttentionMask::new(4, None, true, tch::Device::Cpu).unwrap();
        let a = s.forward(&xs, &mask, false);
        let b = s.forward(&xs, &mask, false);
        assert!(close(&vec_of(&a), &vec_of(&b), 0.0));
        tch::manual_seed(5);
        let t = s.forward(&xs, &mask, true);
        assert!(!close(&vec_of(&a), &vec_of(&t), 1e-4));
        // A weighted sum: a plain sum of a layer norm's output has zero
        // gradient with respect to its input.
        (&t * random(&[2, 4, 8], 32)).sum(Kind::Float).backward();
        let grads = vs
            .trainable_variables()
            .iter()
            .filter(|v| {
                v.grad().defined() && v.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0
            })
            .count();
        assert_eq!(grads, vs.trainable_variables().len());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = TransformerConfig::sasrec(6, 4, 0.1);
        let err = TransformerBlock::new(&vs.root(), &mut Init::new(1), &cfg).unwrap_err();
        assert!(err.to_string().contains("divide"), "{err}");
        let cfg = TransformerConfig::sasrec(8, 2, 1.0);
        assert!(cfg.validate().unwrap_err().to_string().contains("dropout"));
        let valid = Tensor::ones([2, 3], (Kind::Bool, tch::Device::Cpu));
        let err = AttentionMask::new(4, Some(&valid), true, tch::Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("[batch, 4]"), "{err}");
    }
}
