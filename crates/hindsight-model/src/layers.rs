//! Building blocks shared by the models: seeded initialisation, linear
//! layers, activations (PReLU, Dice), MLPs and the feature embeddings.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn, Kind, Tensor};

use crate::batch::Batch;
use crate::config::{Activation, ModelConfig};
use crate::vocab::{FeatureVocab, TIME_GAP_BUCKETS};

/// Seeded parameter initialisation, independent of libtorch's global
/// generator, so that two models built with the same seed are identical
/// whatever else runs in the process and on whichever device.
///
/// Public so that the reusable layers of [`crate::transformer`] can be
/// built from outside the crate's own models.
#[derive(Debug)]
pub struct Init {
    rng: ChaCha8Rng,
}

impl Init {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A CPU tensor with values uniform in `[-bound, bound)`.
    pub fn uniform(&mut self, shape: &[i64], bound: f32) -> Tensor {
        let numel: i64 = shape.iter().product();
        let data: Vec<f32> = (0..numel)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        Tensor::from_slice(&data).view(shape)
    }
}

/// A fully connected layer `y = x W^T + b`, PyTorch's default
/// initialisation (uniform with bound `1/sqrt(fan_in)`).
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(p: &nn::Path<'_>, init: &mut Init, input: i64, output: i64) -> Self {
        let bound = 1.0 / (input as f32).sqrt();
        Self {
            weight: p.var_copy("weight", &init.uniform(&[output, input], bound)),
            bias: Some(p.var_copy("bias", &init.uniform(&[output], bound))),
        }
    }

    /// A layer without bias, `y = x W^T`.
    pub(crate) fn without_bias(p: &nn::Path<'_>, init: &mut Init, input: i64, output: i64) -> Self {
        let bound = 1.0 / (input as f32).sqrt();
        Self {
            weight: p.var_copy("weight", &init.uniform(&[output, input], bound)),
            bias: None,
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }
}

/// A hidden-layer activation.
#[derive(Debug)]
pub(crate) enum Act {
    Relu,
    /// `max(0, x) + alpha * min(0, x)`, one alpha per unit.
    Prelu {
        alpha: Tensor,
    },
    /// Dice (DIN paper, eq. 2): `p(x) * x + (1 - p(x)) * alpha * x` with
    /// `p(x) = sigmoid(batchnorm(x))`; batch statistics while training,
    /// running averages (saved with the weights) at inference.
    Dice {
        alpha: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
    },
}

impl Act {
    pub(crate) fn new(p: &nn::Path<'_>, kind: Activation, units: i64) -> Self {
        match kind {
            Activation::Relu => Act::Relu,
            Activation::Prelu => Act::Prelu {
                alpha: p.var("alpha", &[units], nn::Init::Const(0.25)),
            },
            Activation::Dice => Act::Dice {
                alpha: p.var("alpha", &[units], nn::Init::Const(0.0)),
                running_mean: p.zeros_no_train("running_mean", &[units]),
                running_var: p.ones_no_train("running_var", &[units]),
            },
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Act::Relu => xs.relu(),
            Act::Prelu { alpha } => {
                // libtorch's prelu takes channels on axis 1: flatten to 2-D.
                let units = *xs.size().last().expect("prelu input has a last dimension");
                xs.reshape([-1, units]).prelu(alpha).view_as(xs)
            }
            Act::Dice {
                alpha,
                running_mean,
                running_var,
            } => {
                let units = *xs.size().last().expect("dice input has a last dimension");
                let flat = xs.reshape([-1, units]);
                // Batch statistics need two rows; a single row uses the
                // running averages, as at inference.
                let train = train && flat.size()[0] > 1;
                let normed = flat
                    .batch_norm(
                        None::<&Tensor>,
                        None::<&Tensor>,
                        Some(running_mean),
                        Some(running_var),
                        train,
                        0.1,
                        1e-8,
                        false,
                    )
                    .view_as(xs);
                let p = normed.sigmoid();
                &p * xs + (1.0 - &p) * alpha * xs
            }
        }
    }
}

/// A multi-layer perceptron: hidden layers with an activation, then a
/// linear output layer.
#[derive(Debug)]
pub(crate) struct Mlp {
    hidden: Vec<(Linear, Act)>,
    out: Linear,
}

impl Mlp {
    pub(crate) fn new(
        p: &nn::Path<'_>,
        init: &mut Init,
        input: i64,
        hidden: &[i64],
        output: i64,
        act: Activation,
    ) -> Self {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut prev = input;
        for (i, &h) in hidden.iter().enumerate() {
            let lp = p / format!("layer{i}");
            layers.push((
                Linear::new(&lp, init, prev, h),
                Act::new(&(&lp / "act"), act, h),
            ));
            prev = h;
        }
        Self {
            hidden: layers,
            out: Linear::new(&(p / "out"), init, prev, output),
        }
    }

    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut h = xs.shallow_clone();
        for (lin, act) in &self.hidden {
            h = act.forward(&lin.forward(&h), train);
        }
        self.out.forward(&h)
    }
}

/// Embedding tables of every id field and the item / behavior
/// representations built from them.
///
/// * item representation (`item_dim`): `[item emb, mean of category embs,
///   (mean of tag embs)]`, the same for the target and for a behavior's
///   item;
/// * behavior context (`2 * embedding_dim`): `[behavior type emb, time-gap
///   bucket emb]`;
/// * behavior representation (`behavior_dim`): item representation then
///   context.
#[derive(Debug)]
pub(crate) struct FeatureEmbedding {
    item: Tensor,
    category: Tensor,
    tag: Option<Tensor>,
    behavior_type: Tensor,
    time_gap: Tensor,
    dim: i64,
}

impl FeatureEmbedding {
    pub(crate) fn new(
        p: &nn::Path<'_>,
        init: &mut Init,
        vocab: &FeatureVocab,
        cfg: &ModelConfig,
    ) -> Self {
        let d = cfg.embedding_dim;
        let mut table = |name: &str, rows: i64| {
            let t = init.uniform(&[rows, d], 0.05);
            // Row 0 (padding) starts at zero.
            let t = t.index_fill(0, &Tensor::from_slice(&[0i64]), 0.0);
            p.var_copy(name, &t)
        };
        let item = table("item", vocab.item_table_size());
        let category = table("category", vocab.category_table_size());
        let tag = cfg.use_tags.then(|| table("tag", vocab.tag_table_size()));
        let behavior_type = table("behavior_type", vocab.behavior_type_table_size());
        let time_gap = table("time_gap", TIME_GAP_BUCKETS);
        Self {
            item,
            category,
            tag,
            behavior_type,
            time_gap,
            dim: d,
        }
    }

    /// Size of an item representation.
    pub(crate) fn item_dim(&self) -> i64 {
        self.dim * if self.tag.is_some() { 3 } else { 2 }
    }

    /// Size of the behavior context (type and time gap).
    pub(crate) fn context_dim(&self) -> i64 {
        2 * self.dim
    }

    /// Size of a behavior representation.
    pub(crate) fn behavior_dim(&self) -> i64 {
        self.item_dim() + self.context_dim()
    }

    fn lookup(table: &Tensor, ids: &Tensor) -> Tensor {
        Tensor::embedding(table, ids, -1, false, false)
    }

    /// Mean of the embeddings of the non-padding ids along the last axis
    /// of `ids` (`[.., C]` -> `[.., d]`); zeros when all are padding.
    ///
    /// Written as a sum over the (few) columns of `ids`: a reduction over a
    /// short inner axis is several times slower on the CPU.
    fn pooled(table: &Tensor, ids: &Tensor) -> Tensor {
        let width = *ids.size().last().expect("ids have a last dimension");
        let present = ids.ne(0).to_kind(Kind::Float);
        let mut sum: Option<Tensor> = None;
        for c in 0..width {
            let term =
                Self::lookup(table, &ids.select(-1, c)) * present.select(-1, c).unsqueeze(-1);
            sum = Some(match sum {
                None => term,
                Some(acc) => acc + term,
            });
        }
        let sum = sum.expect("at least one column");
        if width == 1 {
            return sum;
        }
        let count = present
            .sum_dim_intlist(-1, true, Kind::Float)
            .clamp_min(1.0);
        sum / count
    }

    fn item_repr(&self, items: &Tensor, categories: &Tensor, tags: &Tensor) -> Tensor {
        let mut parts = vec![
            Self::lookup(&self.item, items),
            Self::pooled(&self.category, categories),
        ];
        if let Some(tag) = &self.tag {
            parts.push(Self::pooled(tag, tags));
        }
        Tensor::cat(&parts, -1)
    }

    /// The item representation of `batch`'s targets computed from the
    /// tables of a var store (`embedding.item`, `embedding.category`,
    /// `embedding.tag` when present): what [`Self::target`] gives, for
    /// any model whose embeddings sit under `embedding`. `None` when the
    /// store lacks the item or category table.
    pub(crate) fn target_from_vars(
        vars: &std::collections::HashMap<String, Tensor>,
        batch: &Batch,
    ) -> Option<Tensor> {
        let item = vars.get("embedding.item")?;
        let category = vars.get("embedding.category")?;
        let mut parts = vec![
            Self::lookup(item, &batch.target_item),
            Self::pooled(category, &batch.target_categories),
        ];
        if let Some(tag) = vars.get("embedding.tag") {
            parts.push(Self::pooled(tag, &batch.target_tags));
        }
        Some(Tensor::cat(&parts, -1))
    }

    /// The target's item representation, `[B, item_dim]`.
    pub(crate) fn target(&self, batch: &Batch) -> Tensor {
        self.item_repr(
            &batch.target_item,
            &batch.target_categories,
            &batch.target_tags,
        )
    }

    /// The history's item representations, `[B, N, item_dim]`.
    pub(crate) fn history_items(&self, batch: &Batch) -> Tensor {
        self.item_repr(
            &batch.history_items,
            &batch.history_categories,
            &batch.history_tags,
        )
    }

    /// Size of one id embedding.
    pub(crate) fn dim(&self) -> i64 {
        self.dim
    }

    /// The history's time-gap embeddings, `[B, N, dim]`.
    pub(crate) fn history_time_gaps(&self, batch: &Batch) -> Tensor {
        Self::lookup(&self.time_gap, &batch.time_gaps)
    }

    /// The history's contexts, `[B, N, context_dim]`.
    pub(crate) fn history_context(&self, batch: &Batch) -> Tensor {
        Tensor::cat(
            &[
                Self::lookup(&self.behavior_type, &batch.behavior_types),
                Self::lookup(&self.time_gap, &batch.time_gaps),
            ],
            -1,
        )
    }
}
