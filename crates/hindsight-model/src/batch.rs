//! Tensors of a batch of examples.

use rand::Rng;
use tch::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::example::Example;
use crate::vocab::{time_gap_bucket, FeatureVocab, PAD};

/// A batch of examples as tensors, ready for a forward pass.
///
/// Histories are sorted by `seq` ascending and left-aligned: position `t`
/// of row `b` holds the `t`-th oldest retrieved behavior, and positions
/// `len..N` are padding (id 0, mask 0). Multi-valued features (categories,
/// tags) are padded with 0 to the largest count in the batch (at most the
/// vocabulary's `max_categories` / `max_tags`) and mean-pooled over their
/// non-padding values by the models.
///
/// Build it once and run any number of forward passes on it (what a
/// benchmark needs). All index tensors are `Int64`, the rest `Float`.
#[derive(Debug)]
pub struct Batch {
    /// Target item ids, `[B]`.
    pub target_item: Tensor,
    /// Target category ids, `[B, C]`.
    pub target_categories: Tensor,
    /// Target tag ids, `[B, T]`.
    pub target_tags: Tensor,
    /// History item ids, `[B, N]`.
    pub history_items: Tensor,
    /// History category ids, `[B, N, C]`.
    pub history_categories: Tensor,
    /// History tag ids, `[B, N, T]`.
    pub history_tags: Tensor,
    /// Behavior type ids, `[B, N]`.
    pub behavior_types: Tensor,
    /// Time-gap buckets relative to the target, `[B, N]`.
    pub time_gaps: Tensor,
    /// 1.0 for a real behavior, 0.0 for padding, `[B, N]`.
    pub mask: Tensor,
    /// Number of real behaviors per row, `[B]`.
    pub lengths: Tensor,
    /// Labels as 0.0 / 1.0, `[B]`.
    pub labels: Tensor,
    /// For DIEN's auxiliary loss: for each position, the flat index
    /// (`b * N + t`) of another behavior of the batch used as its negative,
    /// `[B, N]`; `None` until [`Batch::sample_negatives`] is called.
    pub negatives: Option<Tensor>,
    size: usize,
    n: usize,
    /// Dense item id of every history slot (row-major), to avoid drawing a
    /// negative equal to the positive.
    slot_items: Vec<i64>,
    device: Device,
}

fn padded(ids: impl Iterator<Item = i64>, width: usize, out: &mut Vec<i64>) {
    let start = out.len();
    out.extend(ids.take(width));
    out.resize(start + width, PAD);
}

impl Batch {
    /// Builds the tensors of `examples` with histories of at most `n`
    /// behaviors (the `n` largest `seq` when a history is longer), on
    /// `device`. The history axis is padded to the longest history of the
    /// batch (at least 1, at most `n`), not to `n`: every model masks
    /// padding, so scores do not change (see the padding test), and a batch
    /// of short histories is smaller (a cold-start score request of 100
    /// candidates went from about 5.0 to 1.6 ms of model time with N = 50).
    pub fn new(
        examples: &[Example],
        vocab: &FeatureVocab,
        n: usize,
        device: Device,
    ) -> Result<Self> {
        let refs: Vec<&Example> = examples.iter().collect();
        Self::from_refs(&refs, vocab, n, device)
    }

    /// [`Batch::new`] over borrowed examples (e.g. a shuffled selection).
    pub fn from_refs(
        examples: &[&Example],
        vocab: &FeatureVocab,
        n: usize,
        device: Device,
    ) -> Result<Self> {
        if examples.is_empty() {
            return Err(ModelError::InvalidConfig(
                "cannot build a batch of no examples".to_owned(),
            ));
        }
        if n == 0 {
            return Err(ModelError::InvalidConfig(
                "the history length n must be >= 1".to_owned(),
            ));
        }
        let b = examples.len();
        let mut histories: Vec<Vec<&hindsight_core::Behavior>> = Vec::with_capacity(b);
        let mut c = 1usize;
        let mut t = 1usize;
        for ex in examples {
            let mut h: Vec<_> = ex.history.iter().collect();
            h.sort_by_key(|x| (x.seq, x.timestamp));
            if h.len() > n {
                h.drain(..h.len() - n);
            }
            c = c.max(ex.target.features.categories.len());
            t = t.max(ex.target.features.tags.len());
            for x in &h {
                c = c.max(x.features.categories.len());
                t = t.max(x.features.tags.len());
            }
            histories.push(h);
        }
        let c = c.min(vocab.max_categories.max(1));
        let t = t.min(vocab.max_tags.max(1));
        let n = histories
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .clamp(1, n);

        let mut target_item = Vec::with_capacity(b);
        let mut target_cats = Vec::with_capacity(b * c);
        let mut target_tags = Vec::with_capacity(b * t);
        let mut items = Vec::with_capacity(b * n);
        let mut cats = Vec::with_capacity(b * n * c);
        let mut tags = Vec::with_capacity(b * n * t);
        let mut types = Vec::with_capacity(b * n);
        let mut gaps = Vec::with_capacity(b * n);
        let mut mask = Vec::with_capacity(b * n);
        let mut lengths = Vec::with_capacity(b);
        let mut labels = Vec::with_capacity(b);
        for (ex, h) in examples.iter().zip(&histories) {
            let f = &ex.target.features;
            target_item.push(vocab.item(ex.target.item_id));
            padded(
                f.categories.iter().map(|&x| vocab.category(x)),
                c,
                &mut target_cats,
            );
            padded(f.tags.iter().map(|&x| vocab.tag(x)), t, &mut target_tags);
            for x in h {
                items.push(vocab.item(x.item_id));
                padded(
                    x.features.categories.iter().map(|&v| vocab.category(v)),
                    c,
                    &mut cats,
                );
                padded(x.features.tags.iter().map(|&v| vocab.tag(v)), t, &mut tags);
                types.push(vocab.behavior_type(x.behavior_type));
                gaps.push(time_gap_bucket(ex.timestamp, x.timestamp));
                mask.push(1f32);
            }
            let pad = n - h.len();
            items.extend(std::iter::repeat_n(PAD, pad));
            cats.extend(std::iter::repeat_n(PAD, pad * c));
            tags.extend(std::iter::repeat_n(PAD, pad * t));
            types.extend(std::iter::repeat_n(PAD, pad));
            gaps.extend(std::iter::repeat_n(PAD, pad));
            mask.extend(std::iter::repeat_n(0f32, pad));
            lengths.push(h.len() as i64);
            labels.push(if ex.label > 0 { 1f32 } else { 0f32 });
        }
        let (bi, ni, ci, ti) = (b as i64, n as i64, c as i64, t as i64);
        let put = |v: &[i64], shape: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
        Ok(Self {
            target_item: put(&target_item, &[bi]),
            target_categories: put(&target_cats, &[bi, ci]),
            target_tags: put(&target_tags, &[bi, ti]),
            history_items: put(&items, &[bi, ni]),
            history_categories: put(&cats, &[bi, ni, ci]),
            history_tags: put(&tags, &[bi, ni, ti]),
            behavior_types: put(&types, &[bi, ni]),
            time_gaps: put(&gaps, &[bi, ni]),
            mask: Tensor::from_slice(&mask).view([bi, ni]).to_device(device),
            lengths: put(&lengths, &[bi]),
            labels: Tensor::from_slice(&labels).to_device(device),
            negatives: None,
            size: b,
            n,
            slot_items: items,
            device,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Whether the batch is empty (never true for a built batch).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The width of the padded history axis (the longest history of the
    /// batch, at most the model's N).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The device the tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Draws, for every real behavior, a negative behavior for DIEN's
    /// auxiliary loss: another real behavior of this batch, uniformly (so
    /// items come with their real features, in proportion to their
    /// popularity), redrawn a few times when it is the same item.
    pub fn sample_negatives<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let real: Vec<usize> = self
            .slot_items
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.slot_is_real(i))
            .map(|(i, _)| i)
            .collect();
        let mut neg = vec![0i64; self.slot_items.len()];
        if !real.is_empty() {
            for &i in &real {
                let mut pick = real[rng.random_range(0..real.len())];
                for _ in 0..8 {
                    if self.slot_items[pick] != self.slot_items[i] {
                        break;
                    }
                    pick = real[rng.random_range(0..real.len())];
                }
                neg[i] = pick as i64;
            }
        }
        self.negatives = Some(
            Tensor::from_slice(&neg)
                .view([self.size as i64, self.n as i64])
                .to_device(self.device),
        );
    }

    fn slot_is_real(&self, i: usize) -> bool {
        // Items of real behaviors are never PAD (unknown ones are OOV).
        self.slot_items[i] != PAD
    }
}
