//! SASRec's parameters, forward pass and losses.

use tch::{nn, Kind, Tensor};

use super::data::{CatalogTable, ItemInput, SeqBatch, GAP_ROWS};
use super::SasRecConfig;
use crate::error::Result;
use crate::layers::Init;
use crate::transformer::{AttentionMask, TransformerStack, MASKED_SCORE};
use crate::vocab::FeatureVocab;

/// Embedding tables and transformer blocks of SASRec.
#[derive(Debug)]
pub(crate) struct SasRecNet {
    item: Tensor,
    category: Tensor,
    tag: Tensor,
    position: Tensor,
    behavior_type: Option<Tensor>,
    time_gap: Option<Tensor>,
    stack: TransformerStack,
    dim: i64,
    max_len: i64,
    dropout: f64,
}

fn lookup(table: &Tensor, ids: &Tensor) -> Tensor {
    Tensor::embedding(table, ids, 0, false, false)
}

/// Mean of the non-padding rows of `table` at `ids` (`[.., C]` ->
/// `[.., d]`), zeros when all are padding.
fn pooled(table: &Tensor, ids: &Tensor) -> Tensor {
    let present = ids.ne(0).to_kind(Kind::Float).unsqueeze(-1);
    let sum = (lookup(table, ids) * &present).sum_dim_intlist(-2, false, Kind::Float);
    sum / present
        .sum_dim_intlist(-2, false, Kind::Float)
        .clamp_min(1.0)
}

impl SasRecNet {
    pub(crate) fn new(p: &nn::Path<'_>, cfg: &SasRecConfig, vocab: &FeatureVocab) -> Result<Self> {
        cfg.validate()?;
        let mut init = Init::new(cfg.seed);
        let d = cfg.dim;
        let mut table = |name: &str, rows: i64| {
            let t = init.uniform(&[rows, d], 0.05);
            let t = t.index_fill(0, &Tensor::from_slice(&[0i64]), 0.0);
            p.var_copy(name, &t)
        };
        let item = table("item", vocab.item_table_size());
        let category = table("category", vocab.category_table_size());
        let tag = table("tag", vocab.tag_table_size());
        let position = table("position", cfg.max_len as i64 + 1);
        let behavior_type = cfg
            .use_behavior_type
            .then(|| table("behavior_type", vocab.behavior_type_table_size()));
        let time_gap = cfg.use_time_gap.then(|| table("time_gap", GAP_ROWS));
        let stack =
            TransformerStack::new(&(p / "encoder"), &mut init, &cfg.transformer(), cfg.blocks)?;
        Ok(Self {
            item,
            category,
            tag,
            position,
            behavior_type,
            time_gap,
            stack,
            dim: d,
            max_len: cfg.max_len as i64,
            dropout: cfg.dropout,
        })
    }

    pub(crate) fn dim(&self) -> i64 {
        self.dim
    }

    /// The item tower: id embedding plus pooled category and tag
    /// embeddings, `[.., dim]`.
    pub(crate) fn item_tower(&self, items: &ItemInput) -> Tensor {
        lookup(&self.item, &items.ids)
            + pooled(&self.category, &items.categories)
            + pooled(&self.tag, &items.tags)
    }

    /// The transformer's output at every position, `[B, L, dim]` (zeros at
    /// padding).
    pub(crate) fn encode(&self, batch: &SeqBatch, train: bool) -> Result<Tensor> {
        let size = batch.items.ids.size();
        let (b, l) = (size[0], size[1]);
        let device = batch.items.ids.device();
        let mut x = self.item_tower(&batch.items) * (self.dim as f64).sqrt();
        // Slots 1..=L (0 is padding): the last slot always holds the most
        // recent behavior.
        let positions = Tensor::arange_start(1, l + 1, (Kind::Int64, device))
            .unsqueeze(0)
            .expand([b, l], false)
            * batch.valid.to_kind(Kind::Int64);
        x += lookup(&self.position, &positions);
        if let Some(t) = &self.behavior_type {
            x += lookup(t, &batch.types);
        }
        if let Some(t) = &self.time_gap {
            x += lookup(t, &batch.gaps);
        }
        debug_assert!(l <= self.max_len);
        let x = x.dropout(self.dropout, train);
        let mask = AttentionMask::new(l, Some(&batch.valid), true, device)?;
        Ok(self.stack.forward(&x, &mask, train))
    }

    /// The output at the last slot of each window, `[B, dim]`.
    pub(crate) fn user_vectors(&self, batch: &SeqBatch) -> Result<Tensor> {
        let out = self.encode(batch, false)?;
        let l = out.size()[1];
        Ok(out.select(1, l - 1))
    }

    /// The training loss of a batch (mean over its target positions).
    pub(crate) fn loss(
        &self,
        batch: &SeqBatch,
        table: &CatalogTable,
        plan: &LossPlan,
    ) -> Result<Tensor> {
        let out = self.encode(batch, true)?;
        let targets = batch
            .targets
            .as_ref()
            .expect("a training batch has targets");
        let mask = targets.ne(0);
        let index = mask.flatten(0, -1).nonzero().squeeze_dim(-1);
        let h = out.view([-1, self.dim]).index_select(0, &index);
        let pos_ids = targets.flatten(0, -1).index_select(0, &index);
        let pos = self.item_tower(&table.lookup(&pos_ids));
        Ok(match plan {
            LossPlan::Sampled { negatives, log_q } => {
                let neg = self.item_tower(&table.lookup(negatives));
                sampled_softmax_loss(&h, &pos, &neg, &pos_ids, negatives, log_q.as_ref())
            }
            LossPlan::Full => {
                let all = Tensor::arange_start(2, table.rows, (Kind::Int64, h.device()));
                let logits = h.matmul(&self.item_tower(&table.lookup(&all)).transpose(0, 1));
                logits.cross_entropy_for_logits(&(pos_ids - 2))
            }
            LossPlan::Bce { negatives } => {
                let neg_ids = negatives.flatten(0, -1).index_select(0, &index);
                let neg = self.item_tower(&table.lookup(&neg_ids));
                let pos_logit = (&h * &pos).sum_dim_intlist(-1, false, Kind::Float);
                let neg_logit = (&h * &neg).sum_dim_intlist(-1, false, Kind::Float);
                ((-pos_logit).softplus() + neg_logit.softplus()).mean(Kind::Float)
            }
        })
    }
}

/// What a training batch's loss needs besides the batch.
#[derive(Debug)]
pub(crate) enum LossPlan {
    /// `K` shared negatives `[K]` and, with popularity sampling, `ln Q` of
    /// every dense id.
    Sampled {
        negatives: Tensor,
        log_q: Option<Tensor>,
    },
    /// Every item of the vocabulary.
    Full,
    /// One negative per position, `[B, L]`.
    Bce { negatives: Tensor },
}

/// The `K + 1` cross-entropy of the sampled softmax, averaged over the
/// `P` positions.
///
/// * `h`: `[P, d]` outputs; `pos`: `[P, d]` their positives' vectors;
/// * `neg`: `[K, d]` negatives' vectors, shared by all positions;
/// * `pos_ids [P]`, `neg_ids [K]`: item ids; a negative with the same id
///   as a position's positive is masked out of that position's softmax;
/// * `log_q`: `ln Q(i)` by id (popularity sampling), subtracted from every
///   logit (positive and negatives), so the sampled softmax estimates the
///   full one; `None` for uniform sampling (the correction is a constant).
///
/// Per position: `-log(exp(s+) / (exp(s+) + sum_k exp(s_k)))`, with `s+
/// = h . pos`, `s_k = h . neg_k`.
pub fn sampled_softmax_loss(
    h: &Tensor,
    pos: &Tensor,
    neg: &Tensor,
    pos_ids: &Tensor,
    neg_ids: &Tensor,
    log_q: Option<&Tensor>,
) -> Tensor {
    let mut pos_logit = (h * pos).sum_dim_intlist(-1, true, Kind::Float);
    let mut neg_logits = h.matmul(&neg.transpose(0, 1));
    if let Some(q) = log_q {
        pos_logit -= q.index_select(0, pos_ids).unsqueeze(-1);
        neg_logits -= q.index_select(0, neg_ids).unsqueeze(0);
    }
    let same = pos_ids.unsqueeze(-1).eq_tensor(&neg_ids.unsqueeze(0));
    let neg_logits = neg_logits.masked_fill(&same, MASKED_SCORE);
    let logits = Tensor::cat(&[pos_logit, neg_logits], 1);
    (logits.logsumexp([1], false) - logits.select(1, 0)).mean(Kind::Float)
}
