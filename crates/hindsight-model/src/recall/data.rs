//! From behaviors to SASRec's tensors: the item id vocabulary, the catalog
//! feature table, left-padded windows and negative sampling.

use hindsight_core::{Behavior, ItemFeatures, ItemId, Target};
use hindsight_recall::RecallSplit;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::SasRecConfig;
use crate::example::Example;
use crate::vocab::{time_gap_bucket, FeatureVocab, OOV, PAD, TIME_GAP_BUCKETS};

/// Rows of the time-gap table: the buckets of [`time_gap_bucket`] and one
/// more for "no previous behavior".
pub(crate) const GAP_ROWS: i64 = TIME_GAP_BUCKETS + 1;
/// The time-gap id of a user's first behavior.
pub(crate) const GAP_FIRST: i64 = TIME_GAP_BUCKETS;

/// The vocabulary of a split's training parts: items, categories and tags
/// of the behaviors SASRec trains on (anything else maps to OOV).
pub(crate) fn build_vocab(split: &RecallSplit, cfg: &SasRecConfig) -> FeatureVocab {
    let examples: Vec<Example> = split
        .users
        .iter()
        .filter(|u| !u.train().is_empty())
        .map(|u| {
            let first = &u.train()[0];
            Example {
                user_id: u.user,
                label: 1,
                target: Target {
                    item_id: first.item_id,
                    features: first.features.clone(),
                },
                timestamp: first.timestamp,
                history: u.train().to_vec(),
            }
        })
        .collect();
    FeatureVocab::builder()
        .max_categories(cfg.max_categories)
        .max_tags(cfg.max_tags)
        .build(&examples)
}

/// Dense ids of an item's categories and tags, padded with [`PAD`] to
/// `width` (at most the vocabulary's maxima are used).
fn feature_ids(
    vocab: &FeatureVocab,
    f: &ItemFeatures,
    cats: usize,
    tags: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut c: Vec<i64> = f
        .categories
        .iter()
        .take(vocab.max_categories.min(cats))
        .map(|&x| vocab.category(x))
        .collect();
    c.resize(cats, PAD);
    let mut t: Vec<i64> = f
        .tags
        .iter()
        .take(vocab.max_tags.min(tags))
        .map(|&x| vocab.tag(x))
        .collect();
    t.resize(tags, PAD);
    (c, t)
}

/// Columns needed for the categories and tags of `features` (at least 1).
fn widths<'a>(
    vocab: &FeatureVocab,
    features: impl Iterator<Item = &'a ItemFeatures>,
) -> (usize, usize) {
    let (mut c, mut t) = (1usize, 1usize);
    for f in features {
        c = c.max(f.categories.len().min(vocab.max_categories));
        t = t.max(f.tags.len().min(vocab.max_tags));
    }
    (c, t)
}

/// Item ids and side features as tensors: `ids [n]`, `categories [n, C]`,
/// `tags [n, T]`.
#[derive(Debug)]
pub(crate) struct ItemInput {
    pub(crate) ids: Tensor,
    pub(crate) categories: Tensor,
    pub(crate) tags: Tensor,
}

impl ItemInput {
    /// Items given with their features (ids outside the vocabulary map to
    /// OOV).
    pub(crate) fn of(
        vocab: &FeatureVocab,
        items: &[(ItemId, ItemFeatures)],
        device: tch::Device,
    ) -> Self {
        let (cw, tw) = widths(vocab, items.iter().map(|(_, f)| f));
        let mut ids = Vec::with_capacity(items.len());
        let mut cats = Vec::with_capacity(items.len() * cw);
        let mut tags = Vec::with_capacity(items.len() * tw);
        for (id, f) in items {
            ids.push(vocab.item(*id));
            let (c, t) = feature_ids(vocab, f, cw, tw);
            cats.extend(c);
            tags.extend(t);
        }
        let n = items.len() as i64;
        Self {
            ids: Tensor::from_slice(&ids).to_device(device),
            categories: Tensor::from_slice(&cats)
                .view([n, cw as i64])
                .to_device(device),
            tags: Tensor::from_slice(&tags)
                .view([n, tw as i64])
                .to_device(device),
        }
    }
}

/// The side features of every item of the vocabulary, by dense id, taken
/// from the catalog (rows 0 and 1, padding and OOV, have none): what the
/// item tower of a target or a negative reads.
#[derive(Debug)]
pub(crate) struct CatalogTable {
    /// `[items, C]`.
    pub(crate) categories: Tensor,
    /// `[items, T]`.
    pub(crate) tags: Tensor,
    /// Number of rows (the item table size).
    pub(crate) rows: i64,
}

impl CatalogTable {
    pub(crate) fn new(
        vocab: &FeatureVocab,
        catalog: &[(ItemId, ItemFeatures)],
        device: tch::Device,
    ) -> Self {
        let rows = vocab.item_table_size();
        let (cw, tw) = widths(vocab, catalog.iter().map(|(_, f)| f));
        let mut cats = vec![PAD; rows as usize * cw];
        let mut tags = vec![PAD; rows as usize * tw];
        for (id, f) in catalog {
            let dense = vocab.item(*id);
            if dense == OOV {
                continue;
            }
            let (c, t) = feature_ids(vocab, f, cw, tw);
            let r = dense as usize;
            cats[r * cw..(r + 1) * cw].copy_from_slice(&c);
            tags[r * tw..(r + 1) * tw].copy_from_slice(&t);
        }
        Self {
            categories: Tensor::from_slice(&cats)
                .view([rows, cw as i64])
                .to_device(device),
            tags: Tensor::from_slice(&tags)
                .view([rows, tw as i64])
                .to_device(device),
            rows,
        }
    }

    /// The item input of dense ids `ids` (any shape `[..]`).
    pub(crate) fn lookup(&self, ids: &Tensor) -> ItemInput {
        let shape = ids.size();
        let flat = ids.flatten(0, -1);
        let mut cshape = shape.clone();
        cshape.push(self.categories.size()[1]);
        let mut tshape = shape;
        tshape.push(self.tags.size()[1]);
        ItemInput {
            ids: ids.shallow_clone(),
            categories: self
                .categories
                .index_select(0, &flat)
                .view(cshape.as_slice()),
            tags: self.tags.index_select(0, &flat).view(tshape.as_slice()),
        }
    }
}

/// A batch of left-padded windows, `[B, L]` (`L = max_len`).
#[derive(Debug)]
pub(crate) struct SeqBatch {
    /// The input behaviors' items and features.
    pub(crate) items: ItemInput,
    /// Behavior type ids.
    pub(crate) types: Tensor,
    /// Time-gap ids.
    pub(crate) gaps: Tensor,
    /// Real positions (bool).
    pub(crate) valid: Tensor,
    /// Dense id of the next behavior's item at each position; [`PAD`]
    /// where there is none. Only training batches have targets.
    pub(crate) targets: Option<Tensor>,
}

/// A window to encode: `inputs = seq[end - len .. end]` (the behaviors
/// before `end - len` give the first one its time gap), and with
/// `targets`, the next item of each input position (`seq[end - len + 1 ..
/// end + 1]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<'a> {
    pub(crate) seq: &'a [Behavior],
    pub(crate) end: usize,
    pub(crate) len: usize,
}

impl<'a> Window<'a> {
    /// The most recent `max_len` behaviors of `history` as input.
    pub(crate) fn last(history: &'a [Behavior], max_len: usize) -> Self {
        Self {
            seq: history,
            end: history.len(),
            len: history.len().min(max_len),
        }
    }

    /// Training window: the most recent `max_len` behaviors of `train`
    /// before its last one as input, each predicting the next.
    pub(crate) fn training(train: &'a [Behavior], max_len: usize) -> Option<Self> {
        if train.len() < 2 {
            return None;
        }
        let end = train.len() - 1;
        Some(Self {
            seq: train,
            end,
            len: end.min(max_len),
        })
    }

    /// Every training position of `train` in consecutive windows of at
    /// most `max_len` predicted positions, the newest window first (the
    /// first is [`training`](Self::training)'s); each position is predicted
    /// by exactly one window, from the at most `max_len` behaviors before
    /// it within that window.
    pub(crate) fn training_all(train: &'a [Behavior], max_len: usize) -> Vec<Self> {
        let mut out = Vec::new();
        let Some(mut w) = Self::training(train, max_len) else {
            return out;
        };
        loop {
            out.push(w);
            let end = w.end - w.len;
            if end == 0 {
                return out;
            }
            w = Self {
                seq: train,
                end,
                len: end.min(max_len),
            };
        }
    }

    /// Number of predicted positions of a training window.
    pub(crate) fn positions(&self) -> usize {
        self.len
    }
}

impl SeqBatch {
    /// Encodes `windows` left-padded to `max_len`; with `with_targets`,
    /// the next item of every input position (the window must then have
    /// one behavior after `end`... i.e. `end < seq.len()`).
    pub(crate) fn new(
        vocab: &FeatureVocab,
        windows: &[Window<'_>],
        max_len: usize,
        with_targets: bool,
        device: tch::Device,
    ) -> Self {
        let b = windows.len();
        let l = max_len;
        let (cw, tw) = widths(
            vocab,
            windows
                .iter()
                .flat_map(|w| w.seq[w.end - w.len..w.end].iter().map(|x| &x.features)),
        );
        let mut items = vec![PAD; b * l];
        let mut cats = vec![PAD; b * l * cw];
        let mut tags = vec![PAD; b * l * tw];
        let mut types = vec![PAD; b * l];
        let mut gaps = vec![PAD; b * l];
        let mut valid = vec![false; b * l];
        let mut targets = vec![PAD; b * l];
        for (r, w) in windows.iter().enumerate() {
            let start = w.end - w.len;
            let offset = l - w.len;
            for (k, i) in (start..w.end).enumerate() {
                let x = &w.seq[i];
                let slot = r * l + offset + k;
                items[slot] = vocab.item(x.item_id);
                let (c, t) = feature_ids(vocab, &x.features, cw, tw);
                cats[slot * cw..(slot + 1) * cw].copy_from_slice(&c);
                tags[slot * tw..(slot + 1) * tw].copy_from_slice(&t);
                types[slot] = vocab.behavior_type(x.behavior_type);
                gaps[slot] = if i == 0 {
                    GAP_FIRST
                } else {
                    time_gap_bucket(x.timestamp, w.seq[i - 1].timestamp)
                };
                valid[slot] = true;
                if with_targets {
                    targets[slot] = vocab.item(w.seq[i + 1].item_id);
                }
            }
        }
        let (bi, li) = (b as i64, l as i64);
        let t = |v: &[i64]| Tensor::from_slice(v).view([bi, li]).to_device(device);
        SeqBatch {
            items: ItemInput {
                ids: t(&items),
                categories: Tensor::from_slice(&cats)
                    .view([bi, li, cw as i64])
                    .to_device(device),
                tags: Tensor::from_slice(&tags)
                    .view([bi, li, tw as i64])
                    .to_device(device),
            },
            types: t(&types),
            gaps: t(&gaps),
            valid: Tensor::from_slice(&valid).view([bi, li]).to_device(device),
            targets: with_targets.then(|| t(&targets)),
        }
    }
}

/// Draws negative item ids (dense, `2..rows`) uniformly or from the
/// training targets' popularity.
#[derive(Debug)]
pub(crate) struct Sampler {
    rows: i64,
    /// Cumulative target counts of dense ids `2..rows`, when by popularity.
    cumulative: Option<Vec<u64>>,
    /// `ln Q(i)` of every dense id (`[rows]`, float), when by popularity.
    pub(crate) log_q: Option<Tensor>,
}

impl Sampler {
    pub(crate) fn uniform(rows: i64) -> Self {
        Self {
            rows,
            cumulative: None,
            log_q: None,
        }
    }

    /// By popularity: `counts[dense id]` over `0..rows` (add-one smoothed
    /// so that every item can be drawn).
    pub(crate) fn popularity(counts: &[u64], device: tch::Device) -> Self {
        let rows = counts.len() as i64;
        let mut cumulative = Vec::with_capacity(counts.len().saturating_sub(2));
        let mut total = 0u64;
        for &c in &counts[2..] {
            total += c + 1;
            cumulative.push(total);
        }
        let mut log_q = vec![0f32; counts.len()];
        for (i, &c) in counts.iter().enumerate().skip(2) {
            log_q[i] = (((c + 1) as f64) / total as f64).ln() as f32;
        }
        Self {
            rows,
            cumulative: Some(cumulative),
            log_q: Some(Tensor::from_slice(&log_q).to_device(device)),
        }
    }

    /// Items the sampler draws from.
    pub(crate) fn items(&self) -> i64 {
        self.rows - 2
    }

    /// One dense id.
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng) -> i64 {
        match &self.cumulative {
            None => rng.random_range(2..self.rows),
            Some(cum) => {
                let total = *cum.last().expect("the vocabulary has items");
                let x = rng.random_range(0..total);
                2 + cum.partition_point(|&c| c <= x) as i64
            }
        }
    }

    /// `k` dense ids, with replacement.
    pub(crate) fn draw_many(&self, k: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
        (0..k).map(|_| self.draw(rng)).collect()
    }
}

/// Per-position negatives of the BCE loss: one uniform id per target
/// position, re-drawn while equal to the positive (`targets`: dense ids,
/// PAD where no target).
pub(crate) fn bce_negatives(targets: &[i64], sampler: &Sampler, rng: &mut ChaCha8Rng) -> Vec<i64> {
    targets
        .iter()
        .map(|&t| {
            if t == PAD {
                return PAD;
            }
            // With a single item in the vocabulary there is nothing else.
            if sampler.items() < 2 {
                return sampler.draw(rng);
            }
            loop {
                let n = sampler.draw(rng);
                if n != t {
                    return n;
                }
            }
        })
        .collect()
}
