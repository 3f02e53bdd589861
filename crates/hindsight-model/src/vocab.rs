//! Dense id vocabularies of the sparse features.
//!
//! Every id field (item, category, tag, behavior type) is mapped to a dense
//! index into an embedding table: [`PAD`] (0) is padding and [`OOV`] (1) is
//! any id not seen (often enough) in the training examples. The time
//! between a behavior and its target is bucketized on a log2 scale and
//! embedded like an id, as ATRank (Zhou et al., AAAI 2018) does with time
//! information.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::example::Example;

/// Dense id of padding.
pub const PAD: i64 = 0;
/// Dense id of an out-of-vocabulary value.
pub const OOV: i64 = 1;
/// Number of time-gap bucket ids, padding included.
pub const TIME_GAP_BUCKETS: i64 = 30;

/// The time-gap bucket of a behavior at `behavior_ts` relative to a target
/// at `target_ts` (both unix seconds).
///
/// Bucket 1 holds gaps under one second (and negative gaps, which retrieval
/// as of a target should never produce); bucket `k >= 2` holds gaps in
/// `[2^(k-2), 2^(k-1))` seconds; the last bucket
/// (`TIME_GAP_BUCKETS - 1`, gaps of about 4 years and more) is open-ended.
/// 0 is padding.
pub fn time_gap_bucket(target_ts: i64, behavior_ts: i64) -> i64 {
    let gap = target_ts.saturating_sub(behavior_ts);
    if gap < 1 {
        return 1;
    }
    // floor(log2(gap)) + 2 for gap >= 1.
    let bucket = 2 + i64::from(63 - gap.leading_zeros());
    bucket.min(TIME_GAP_BUCKETS - 1)
}

/// A map from raw ids to dense ids `2..`, serialized as the list of raw ids
/// in dense order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<u64>", into = "Vec<u64>")]
struct IdMap {
    ids: Vec<u64>,
    index: HashMap<u64, i64>,
}

impl From<Vec<u64>> for IdMap {
    fn from(ids: Vec<u64>) -> Self {
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as i64 + 2))
            .collect();
        Self { ids, index }
    }
}

impl From<IdMap> for Vec<u64> {
    fn from(map: IdMap) -> Self {
        map.ids
    }
}

impl IdMap {
    fn from_counts(counts: HashMap<u64, u32>, min_count: u32) -> Self {
        let mut ids: Vec<u64> = counts
            .into_iter()
            .filter(|&(_, c)| c >= min_count)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        ids.into()
    }

    #[inline]
    fn get(&self, id: u64) -> i64 {
        self.index.get(&id).copied().unwrap_or(OOV)
    }

    /// Table size: the ids plus padding and out-of-vocabulary.
    fn table_size(&self) -> i64 {
        self.ids.len() as i64 + 2
    }
}

/// Vocabularies of items, categories, tags and behavior types, built from
/// training examples (targets and histories).
///
/// Serialized into every checkpoint so that scoring maps ids exactly as
/// training did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureVocab {
    items: IdMap,
    categories: IdMap,
    tags: IdMap,
    behavior_types: IdMap,
    /// At most this many categories of an item are used.
    pub max_categories: usize,
    /// At most this many tags of an item are used.
    pub max_tags: usize,
}

/// Options of [`FeatureVocab::build`]; see [`FeatureVocab::builder`].
#[derive(Debug, Clone)]
pub struct VocabBuilder {
    min_count: u32,
    min_users: u32,
    max_categories: usize,
    max_tags: usize,
}

impl Default for VocabBuilder {
    fn default() -> Self {
        Self {
            min_count: 1,
            min_users: 1,
            max_categories: 8,
            max_tags: 8,
        }
    }
}

impl VocabBuilder {
    /// Ids seen fewer than `min_count` times map to out-of-vocabulary
    /// (default 1: every id seen is kept).
    pub fn min_count(mut self, min_count: u32) -> Self {
        self.min_count = min_count.max(1);
        self
    }

    /// Ids seen with fewer than `min_users` distinct users (as a target or
    /// in a history) map to out-of-vocabulary (default 1: no limit).
    ///
    /// Why: an id only one user ever touched has an embedding trained on
    /// that user's samples alone, which memorises them; and at test time
    /// the ids not in the vocabulary are mostly items new since training,
    /// which are what a user's own rare items looked like at training time.
    /// Sending both to the OOV row trains that row on the case it meets.
    pub fn min_users(mut self, min_users: u32) -> Self {
        self.min_users = min_users.max(1);
        self
    }

    /// At most this many categories per item (default 8).
    pub fn max_categories(mut self, max: usize) -> Self {
        self.max_categories = max.max(1);
        self
    }

    /// At most this many tags per item (default 8).
    pub fn max_tags(mut self, max: usize) -> Self {
        self.max_tags = max.max(1);
        self
    }

    /// Counts every id of the examples' targets and histories.
    pub fn build(&self, examples: &[Example]) -> FeatureVocab {
        let per_user = self.min_users > 1;
        let mut items = Counts::new(per_user);
        let mut categories = Counts::new(per_user);
        let mut tags = Counts::new(per_user);
        let mut types = HashMap::new();
        let mut count_item = |user: u64, item: u64, f: &hindsight_core::ItemFeatures| {
            items.add(item, user);
            for &c in f.categories.iter().take(self.max_categories) {
                categories.add(c, user);
            }
            for &t in f.tags.iter().take(self.max_tags) {
                tags.add(t, user);
            }
        };
        for ex in examples {
            count_item(ex.user_id, ex.target.item_id, &ex.target.features);
            for b in &ex.history {
                count_item(ex.user_id, b.item_id, &b.features);
                *types.entry(u64::from(b.behavior_type)).or_insert(0u32) += 1;
            }
        }
        let (min_count, min_users) = (self.min_count, self.min_users);
        FeatureVocab {
            items: items.into_map(min_count, min_users),
            categories: categories.into_map(min_count, min_users),
            tags: tags.into_map(min_count, min_users),
            // Behavior types are few: keep all of them.
            behavior_types: IdMap::from_counts(types, 1),
            max_categories: self.max_categories,
            max_tags: self.max_tags,
        }
    }
}

/// Occurrences of every id of one field, and its (id, user) pairs when
/// distinct users are needed.
struct Counts {
    count: HashMap<u64, u32>,
    pairs: Option<HashSet<(u64, u64)>>,
}

impl Counts {
    fn new(per_user: bool) -> Self {
        Self {
            count: HashMap::new(),
            pairs: per_user.then(HashSet::new),
        }
    }

    fn add(&mut self, id: u64, user: u64) {
        *self.count.entry(id).or_insert(0) += 1;
        if let Some(pairs) = &mut self.pairs {
            pairs.insert((id, user));
        }
    }

    fn into_map(self, min_count: u32, min_users: u32) -> IdMap {
        let mut counts = self.count;
        if let Some(pairs) = self.pairs {
            let mut users: HashMap<u64, u32> = HashMap::new();
            for (id, _) in pairs {
                *users.entry(id).or_insert(0) += 1;
            }
            counts.retain(|id, _| users.get(id).is_some_and(|&u| u >= min_users));
        }
        IdMap::from_counts(counts, min_count)
    }
}

impl FeatureVocab {
    /// A builder with default options.
    pub fn builder() -> VocabBuilder {
        VocabBuilder::default()
    }

    /// Builds with default options (every id seen is kept).
    pub fn build(examples: &[Example]) -> Self {
        Self::builder().build(examples)
    }

    /// Dense id of an item.
    #[inline]
    pub fn item(&self, id: u64) -> i64 {
        self.items.get(id)
    }

    /// Dense id of a category.
    #[inline]
    pub fn category(&self, id: u64) -> i64 {
        self.categories.get(id)
    }

    /// Dense id of a tag.
    #[inline]
    pub fn tag(&self, id: u64) -> i64 {
        self.tags.get(id)
    }

    /// Dense id of a behavior type.
    #[inline]
    pub fn behavior_type(&self, t: u8) -> i64 {
        self.behavior_types.get(u64::from(t))
    }

    /// Rows of the item embedding table (padding and OOV included).
    pub fn item_table_size(&self) -> i64 {
        self.items.table_size()
    }

    /// Rows of the category embedding table.
    pub fn category_table_size(&self) -> i64 {
        self.categories.table_size()
    }

    /// Rows of the tag embedding table.
    pub fn tag_table_size(&self) -> i64 {
        self.tags.table_size()
    }

    /// Rows of the behavior type embedding table.
    pub fn behavior_type_table_size(&self) -> i64 {
        self.behavior_types.table_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_core::{Behavior, ItemFeatures, Target};

    #[test]
    fn time_gap_buckets_are_log2() {
        assert_eq!(time_gap_bucket(100, 100), 1);
        assert_eq!(time_gap_bucket(100, 200), 1);
        assert_eq!(time_gap_bucket(101, 100), 2);
        assert_eq!(time_gap_bucket(102, 100), 3);
        assert_eq!(time_gap_bucket(103, 100), 3);
        assert_eq!(time_gap_bucket(104, 100), 4);
        assert_eq!(time_gap_bucket(3600, 0), 13);
        assert_eq!(time_gap_bucket(i64::MAX, i64::MIN), TIME_GAP_BUCKETS - 1);
    }

    #[test]
    fn vocab_maps_pad_oov_and_min_count() {
        let b = |item, cat, ty| Behavior {
            user_id: 1,
            seq: 0,
            item_id: item,
            features: ItemFeatures::with_categories(vec![cat]),
            behavior_type: ty,
            timestamp: 0,
        };
        let ex = Example {
            user_id: 1,
            label: 1,
            target: Target {
                item_id: 7,
                features: ItemFeatures::with_categories(vec![3]),
            },
            timestamp: 10,
            history: vec![b(7, 3, 0), b(8, 4, 2)],
        };
        let v = FeatureVocab::build(std::slice::from_ref(&ex));
        assert_eq!(v.item(7), 2);
        assert_eq!(v.item(8), 3);
        assert_eq!(v.item(9), OOV);
        assert_eq!(v.item_table_size(), 4);
        assert_eq!(v.behavior_type(2), 3);
        let v2 = FeatureVocab::builder().min_count(2).build(&[ex]);
        assert_eq!(v2.item(7), 2);
        assert_eq!(v2.item(8), OOV);
        assert_eq!(v2.category(4), OOV);
        let json = serde_json::to_string(&v).unwrap();
        let back: FeatureVocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.item(8), 3);
    }

    #[test]
    fn min_users_counts_distinct_users_not_occurrences() {
        let ex = |user, target: u64, history: &[u64]| Example {
            user_id: user,
            label: 1,
            target: Target {
                item_id: target,
                features: ItemFeatures::with_categories(vec![target % 2]),
            },
            timestamp: 10,
            history: history
                .iter()
                .map(|&item| Behavior {
                    user_id: user,
                    seq: 0,
                    item_id: item,
                    features: ItemFeatures::with_categories(vec![item % 2]),
                    behavior_type: 0,
                    timestamp: 0,
                })
                .collect(),
        };
        // Item 5: three times, one user. Item 6: once each for two users.
        let examples = [ex(1, 5, &[5, 5]), ex(2, 6, &[]), ex(3, 7, &[6])];
        let v = FeatureVocab::builder().min_users(2).build(&examples);
        assert_eq!(v.item(5), OOV);
        assert_ne!(v.item(6), OOV);
        assert_eq!(v.item(7), OOV);
        assert_eq!(v.item_table_size(), 3);
        // Category 1 (items 5 and 7): users 1 and 3; category 0: users 2, 3.
        assert_ne!(v.category(1), OOV);
        assert_ne!(v.category(0), OOV);
        // By occurrences, item 5 is the most frequent.
        let by_count = FeatureVocab::builder().min_count(3).build(&examples);
        assert_ne!(by_count.item(5), OOV);
        assert_eq!(by_count.item(6), OOV);
    }
}
