//! Recall baselines, each a [`CatalogScorer`] built from a split's
//! training parts only (no valid or test behavior leaks into them):
//!
//! * [`Popularity`]: an item's count of training behaviors over all users;
//!   the floor every recall model must clear.
//! * [`ItemCf`]: item-to-item collaborative filtering (Sarwar et al.,
//!   "Item-based collaborative filtering recommendation algorithms",
//!   WWW 2001; Linden, Smith & York, "Amazon.com recommendations:
//!   item-to-item collaborative filtering", IEEE Internet Computing 2003):
//!   two items are similar when the same users' training histories hold
//!   both, cosine-normalised (`c_ij / sqrt(n_i n_j)`, `c_ij` the number of
//!   users with both, `n_i` with `i`); a user's score for item `j` sums the
//!   similarities of `j` to the user's most recent distinct items, each
//!   weighted by `decay^r` (`r` = 0 for the newest). Only the
//!   [`ItemCfParams::neighbors`] most similar items of each item are kept,
//!   so the table is sparse. This is the baseline the SmartNews design
//!   reports SASRec beating.
//! * [`Repeat`]: the user's own history, newest distinct item highest; the
//!   rest of the catalog below it by popularity. On taobao, where users
//!   view items again, this is strong without masking seen items.

use std::collections::HashMap;

use hindsight_core::{Behavior, ItemId, UserId};

use crate::split::RecallSplit;
use crate::{CatalogScorer, RecallError, Result};

/// Item id -> position in `RecallSplit::catalog`.
#[derive(Debug, Clone)]
pub struct CatalogPositions {
    positions: HashMap<ItemId, u32>,
}

impl CatalogPositions {
    /// The positions of `split`'s catalog.
    pub fn new(split: &RecallSplit) -> CatalogPositions {
        CatalogPositions {
            positions: split
                .catalog
                .iter()
                .enumerate()
                .map(|(i, (item, _))| (*item, i as u32))
                .collect(),
        }
    }

    /// The catalog position of `item`, if it is in the catalog.
    pub fn get(&self, item: ItemId) -> Option<usize> {
        self.positions.get(&item).map(|&i| i as usize)
    }

    /// Number of catalog items.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// Training-behavior counts per catalog position.
fn train_counts(split: &RecallSplit, positions: &CatalogPositions) -> Vec<u32> {
    let mut counts = vec![0u32; split.catalog.len()];
    for user in &split.users {
        for b in user.train() {
            if let Some(i) = positions.get(b.item_id) {
                counts[i] += 1;
            }
        }
    }
    counts
}

/// The most popular items: score = training behaviors on the item, over
/// all users.
#[derive(Debug, Clone)]
pub struct Popularity {
    counts: Vec<u32>,
}

impl Popularity {
    /// Counts the training parts of `split`.
    pub fn new(split: &RecallSplit) -> Popularity {
        let positions = CatalogPositions::new(split);
        Popularity {
            counts: train_counts(split, &positions),
        }
    }

    /// The training count of each catalog item (catalog order).
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }
}

impl CatalogScorer for Popularity {
    fn name(&self) -> &str {
        "popularity"
    }

    fn score_catalog(&self, _user: UserId, _history: &[Behavior], out: &mut [f32]) {
        for (o, &c) in out.iter_mut().zip(&self.counts) {
            *o = c as f32;
        }
    }
}

/// The user's distinct items, newest first, at most `limit`.
fn recent_distinct(
    history: &[Behavior],
    positions: &CatalogPositions,
    limit: usize,
    seen: &mut Vec<usize>,
) {
    seen.clear();
    for b in history.iter().rev() {
        if seen.len() >= limit {
            break;
        }
        if let Some(i) = positions.get(b.item_id) {
            if !seen.contains(&i) {
                seen.push(i);
            }
        }
    }
}

/// The user's own items first (newest highest), then the rest by
/// popularity.
#[derive(Debug, Clone)]
pub struct Repeat {
    positions: CatalogPositions,
    /// Popularity scaled into [0, 1).
    base: Vec<f32>,
}

impl Repeat {
    /// Builds the popularity tie-break from the training parts of `split`.
    pub fn new(split: &RecallSplit) -> Repeat {
        let positions = CatalogPositions::new(split);
        let counts = train_counts(split, &positions);
        let max = counts.iter().copied().max().unwrap_or(0) as f64 + 1.0;
        let base = counts.iter().map(|&c| (c as f64 / max) as f32).collect();
        Repeat { positions, base }
    }
}

impl CatalogScorer for Repeat {
    fn name(&self) -> &str {
        "repeat"
    }

    fn score_catalog(&self, _user: UserId, history: &[Behavior], out: &mut [f32]) {
        for (o, &b) in out.iter_mut().zip(&self.base) {
            *o = b;
        }
        let mut seen = Vec::new();
        recent_distinct(history, &self.positions, usize::MAX, &mut seen);
        let n = seen.len();
        for (r, &i) in seen.iter().enumerate() {
            if let Some(o) = out.get_mut(i) {
                // Above every popularity score (< 1); the newest is n.
                *o = 1.0 + (n - r) as f32;
            }
        }
    }
}

/// The settings of [`ItemCf`].
#[derive(Debug, Clone, PartialEq)]
pub struct ItemCfParams {
    /// How many of the user's most recent distinct items seed the score.
    pub seeds: usize,
    /// Weight of the `r`-th most recent seed: `decay^r` (1 = no recency).
    pub decay: f32,
    /// Neighbours kept per item (the most similar).
    pub neighbors: usize,
}

impl Default for ItemCfParams {
    fn default() -> Self {
        ItemCfParams {
            seeds: 20,
            decay: 0.9,
            neighbors: 200,
        }
    }
}

/// Item-to-item collaborative filtering over users' training histories
/// (cosine-normalised co-occurrence, recency-weighted seeds).
#[derive(Debug, Clone)]
pub struct ItemCf {
    params: ItemCfParams,
    positions: CatalogPositions,
    /// `offsets[i]..offsets[i + 1]` indexes `neighbors` for catalog item i.
    offsets: Vec<usize>,
    /// (catalog position, cosine similarity), most similar first.
    neighbors: Vec<(u32, f32)>,
}

impl ItemCf {
    /// Builds the similarity table from the training parts of `split`.
    ///
    /// Cost: the sum over users of (distinct training items)², with one
    /// dense catalog-sized accumulator; memory: `neighbors` entries per
    /// item.
    pub fn new(split: &RecallSplit, params: ItemCfParams) -> Result<ItemCf> {
        if params.seeds == 0 || params.neighbors == 0 {
            return Err(RecallError::InvalidParameter(format!(
                "item-cf needs at least one seed and one neighbour (got seeds {}, neighbors {})",
                params.seeds, params.neighbors
            )));
        }
        if !(params.decay > 0.0 && params.decay <= 1.0) {
            return Err(RecallError::InvalidParameter(format!(
                "item-cf decay must be in (0, 1], got {}",
                params.decay
            )));
        }
        let positions = CatalogPositions::new(split);
        let n = split.catalog.len();
        // Each user's distinct training items.
        let user_items: Vec<Vec<u32>> = split
            .users
            .iter()
            .map(|u| {
                let mut items: Vec<u32> = u
                    .train()
                    .iter()
                    .filter_map(|b| positions.get(b.item_id).map(|i| i as u32))
                    .collect();
                items.sort_unstable();
                items.dedup();
                items
            })
            .collect();
        // Item -> users holding it.
        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (u, items) in user_items.iter().enumerate() {
            for &i in items {
                item_users[i as usize].push(u as u32);
            }
        }
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut neighbors = Vec::new();
        let mut co = vec![0u32; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut row: Vec<(u32, f32)> = Vec::new();
        for i in 0..n {
            touched.clear();
            for &u in &item_users[i] {
                for &j in &user_items[u as usize] {
                    if j as usize == i {
                        continue;
                    }
                    if co[j as usize] == 0 {
                        touched.push(j);
                    }
                    co[j as usize] += 1;
                }
            }
            row.clear();
            let ni = item_users[i].len() as f32;
            for &j in &touched {
                let nj = item_users[j as usize].len() as f32;
                row.push((j, co[j as usize] as f32 / (ni * nj).sqrt()));
                co[j as usize] = 0;
            }
            // Most similar first; ties by catalog position, so the table is
            // deterministic.
            row.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            row.truncate(params.neighbors);
            neighbors.extend_from_slice(&row);
            offsets.push(neighbors.len());
        }
        Ok(ItemCf {
            params,
            positions,
            offsets,
            neighbors,
        })
    }

    /// The kept neighbours of catalog item `position`: (catalog position,
    /// cosine similarity), most similar first.
    pub fn neighbors_of(&self, position: usize) -> &[(u32, f32)] {
        match (self.offsets.get(position), self.offsets.get(position + 1)) {
            (Some(&a), Some(&b)) => &self.neighbors[a..b],
            _ => &[],
        }
    }

    /// Number of (item, neighbour) pairs kept.
    pub fn pairs(&self) -> usize {
        self.neighbors.len()
    }
}

impl CatalogScorer for ItemCf {
    fn name(&self) -> &str {
        "item-cf"
    }

    fn score_catalog(&self, _user: UserId, history: &[Behavior], out: &mut [f32]) {
        out.fill(0.0);
        let mut seeds = Vec::new();
        recent_distinct(history, &self.positions, self.params.seeds, &mut seeds);
        let mut w = 1.0f32;
        for &s in &seeds {
            for &(j, sim) in self.neighbors_of(s) {
                if let Some(o) = out.get_mut(j as usize) {
                    *o += w * sim;
                }
            }
            w *= self.params.decay;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::split::UserSequence;
    use hindsight_core::ItemFeatures;

    /// A split from per-user item sequences (all behaviors; the last two
    /// are valid and test) over the catalog `0..catalog`.
    pub(crate) fn split_of(users: &[&[u64]], catalog: u64) -> RecallSplit {
        let users = users
            .iter()
            .enumerate()
            .map(|(u, items)| UserSequence {
                user: u as u64 + 1,
                behaviors: items
                    .iter()
                    .enumerate()
                    .map(|(s, &item_id)| Behavior {
                        user_id: u as u64 + 1,
                        seq: s as u32,
                        item_id,
                        features: ItemFeatures::default(),
                        behavior_type: 0,
                        timestamp: 1000 + s as i64,
                    })
                    .collect(),
            })
            .collect();
        RecallSplit {
            users,
            catalog: (0..catalog).map(|i| (i, ItemFeatures::default())).collect(),
            skipped_users: 0,
        }
    }

    fn scores(s: &dyn CatalogScorer, split: &RecallSplit, user: usize, test: bool) -> Vec<f32> {
        let u = &split.users[user];
        let h = if test {
            u.test_history()
        } else {
            u.valid_history()
        };
        let mut out = vec![f32::NAN; split.catalog.len()];
        s.score_catalog(u.user, h, &mut out);
        out
    }

    #[test]
    fn popularity_counts_training_parts_only() {
        // Valid/test items (the last two of each user) must not count:
        // item 4 only ever appears as a target.
        let split = split_of(&[&[0, 1, 1, 4, 4], &[1, 2, 3, 4]], 5);
        let p = Popularity::new(&split);
        assert_eq!(p.counts(), &[1, 3, 1, 0, 0]);
        assert_eq!(scores(&p, &split, 0, true), vec![1.0, 3.0, 1.0, 0.0, 0.0]);
        assert_eq!(p.name(), "popularity");
    }

    #[test]
    fn repeat_puts_the_users_items_first_newest_highest() {
        // Training counts: 0:1, 1:3, 2:2, 3:0 (users 1 and 2).
        let split = split_of(&[&[0, 1, 2, 1, 9, 9], &[2, 1, 9, 9]], 10);
        let r = Repeat::new(&split);
        let s = scores(&r, &split, 0, false);
        // History of user 1's valid target: 0 1 2 1 -> distinct newest
        // first: 1, 2, 0.
        assert_eq!(s[1], 4.0);
        assert_eq!(s[2], 3.0);
        assert_eq!(s[0], 2.0);
        // Others by popularity, below 1 (count / (max + 1)); 3 and 9 have none.
        assert!(s[3] == 0.0 && s[9] == 0.0);
        // The test history adds item 9 (the valid target) as the newest.
        let s = scores(&r, &split, 0, true);
        assert_eq!(s[9], 5.0);
        assert_eq!(s[1], 4.0);
        let split = split_of(&[&[0, 1, 1, 0, 3, 3], &[1, 5, 5]], 6);
        let r = Repeat::new(&split);
        let s = scores(&r, &split, 1, false);
        // User 2's history is item 1 alone; item 0 (count 2) beats item 5
        // (count 0) among the rest.
        assert_eq!(s[1], 2.0);
        assert!(s[0] > s[5] && s[0] < 1.0, "{s:?}");
    }

    #[test]
    fn item_cf_is_cosine_normalised_co_occurrence() {
        // Training parts: u1 {0, 1}, u2 {0, 1, 2}, u3 {2, 3}.
        let split = split_of(&[&[0, 1, 7, 7], &[0, 1, 2, 7, 7], &[2, 3, 7, 7]], 8);
        let cf = ItemCf::new(&split, ItemCfParams::default()).unwrap();
        // n0 = 2, n1 = 2, n2 = 2, n3 = 1; c01 = 2, c02 = 1, c12 = 1, c23 = 1.
        let n0 = cf.neighbors_of(0);
        assert_eq!(n0.len(), 2);
        assert_eq!(n0[0], (1, 1.0));
        assert_eq!(n0[1].0, 2);
        assert!((n0[1].1 - 0.5).abs() < 1e-6);
        let n2 = cf.neighbors_of(2);
        // c23 / sqrt(2 * 1) = 0.7071 first, then 0 and 1 at 0.5.
        assert_eq!(n2[0].0, 3);
        assert!((n2[0].1 - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!((n2[1].0, n2[2].0), (0, 1));
        assert!(cf.neighbors_of(7).is_empty());
        assert!(cf.neighbors_of(99).is_empty());
        assert_eq!(cf.pairs(), 8);
    }

    #[test]
    fn item_cf_weights_seeds_by_recency() {
        let split = split_of(&[&[0, 1, 7, 7], &[0, 1, 2, 7, 7], &[2, 3, 7, 7]], 8);
        let params = ItemCfParams {
            seeds: 2,
            decay: 0.5,
            neighbors: 10,
        };
        let cf = ItemCf::new(&split, params).unwrap();
        // User 2, valid history 0 1 2: seeds newest first 2 (w 1), 1 (w 0.5);
        // item 0 is not a seed (limit 2).
        let s = scores(&cf, &split, 1, false);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((s[3] - h).abs() < 1e-6, "{s:?}");
        // 0: sim(2,0) * 1 + sim(1,0) * 0.5 = 0.5 + 0.5.
        assert!((s[0] - 1.0).abs() < 1e-6);
        // 1: sim(2,1) = 0.5 (1 itself is a seed, never its own neighbour).
        assert!((s[1] - 0.5).abs() < 1e-6);
        // 2: sim(1,2) * 0.5 = 0.25.
        assert!((s[2] - 0.25).abs() < 1e-6);
        assert_eq!(s[7], 0.0);
    }

    #[test]
    fn item_cf_keeps_only_the_nearest_neighbours() {
        let split = split_of(&[&[0, 1, 7, 7], &[0, 1, 2, 7, 7], &[2, 3, 7, 7]], 8);
        let params = ItemCfParams {
            neighbors: 1,
            ..ItemCfParams::default()
        };
        let cf = ItemCf::new(&split, params).unwrap();
        assert_eq!(cf.neighbors_of(0), &[(1, 1.0)]);
        assert_eq!(cf.pairs(), 4);
    }

    #[test]
    fn item_cf_rejects_empty_settings() {
        let split = split_of(&[&[0, 1, 2]], 3);
        for params in [
            ItemCfParams {
                seeds: 0,
                ..ItemCfParams::default()
            },
            ItemCfParams {
                neighbors: 0,
                ..ItemCfParams::default()
            },
            ItemCfParams {
                decay: 0.0,
                ..ItemCfParams::default()
            },
            ItemCfParams {
                decay: f32::NAN,
                ..ItemCfParams::default()
            },
        ] {
            let err = ItemCf::new(&split, params).unwrap_err();
            assert!(matches!(err, RecallError::InvalidParameter(_)), "{err}");
        }
    }

    proptest::proptest! {
        /// The sparse table (all neighbours kept) equals cosine similarity
        /// computed pair by pair from the users' training item sets.
        #[test]
        fn item_cf_equals_brute_force_cosine(
            seqs in proptest::collection::vec(proptest::collection::vec(0u64..10, 3..10), 1..12),
        ) {
            let refs: Vec<&[u64]> = seqs.iter().map(|s| s.as_slice()).collect();
            let split = split_of(&refs, 10);
            let params = ItemCfParams { neighbors: 100, ..ItemCfParams::default() };
            let cf = ItemCf::new(&split, params).unwrap();
            let sets: Vec<std::collections::HashSet<u64>> = split
                .users
                .iter()
                .map(|u| u.train().iter().map(|b| b.item_id).collect())
                .collect();
            for i in 0..10u64 {
                let ni = sets.iter().filter(|s| s.contains(&i)).count() as f32;
                let mut want = Vec::new();
                for j in 0..10u64 {
                    let c = sets.iter().filter(|s| s.contains(&i) && s.contains(&j)).count();
                    if j != i && c > 0 {
                        let nj = sets.iter().filter(|s| s.contains(&j)).count() as f32;
                        want.push((j as u32, c as f32 / (ni * nj).sqrt()));
                    }
                }
                want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let got = cf.neighbors_of(i as usize);
                proptest::prop_assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    proptest::prop_assert_eq!(g.0, w.0);
                    proptest::prop_assert!((g.1 - w.1).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn scorers_tolerate_a_short_output_buffer() {
        let split = split_of(&[&[0, 1, 2, 3, 4]], 5);
        let mut out = vec![0.0; 2];
        let u = &split.users[0];
        Repeat::new(&split).score_catalog(u.user, u.test_history(), &mut out);
        Popularity::new(&split).score_catalog(u.user, u.test_history(), &mut out);
        ItemCf::new(&split, ItemCfParams::default())
            .unwrap()
            .score_catalog(u.user, u.test_history(), &mut out);
    }
}
