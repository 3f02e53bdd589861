//! Full-ranking recall metrics: HR@K, NDCG@K and Recall@K over the whole
//! catalog (no sampled negatives), as in SASRec (Kang & McAuley, ICDM 2018)
//! evaluated the way Krichene & Rendle ("On Sampled Metrics for Item
//! Recommendation", KDD 2020) ask for: every catalog item is a candidate.
//!
//! With one held-out target per user the target's **rank** (0-based) is the
//! number of catalog items scored strictly higher than it, plus a share of
//! the items scored exactly as high (the tie rule, [`TieRule`]):
//!
//! * [`TieRule::Average`] (the default): half of the tied others, the
//!   expected rank when ties are broken at random;
//! * [`TieRule::Pessimistic`]: all of them, as if every tie went against
//!   the target.
//!
//! A NaN score never counts as higher than anything; a target whose own
//! score is NaN gets the worst rank (`catalog - 1`).
//!
//! Then, for a cut-off K:
//!
//! * **HR@K** (hit rate) = 1 if `rank < K`, else 0;
//! * **NDCG@K** = `1 / log2(rank + 2)` if `rank < K`, else 0 (one relevant
//!   item, so the ideal DCG is 1);
//! * **Recall@K** = relevant items in the top K / relevant items. With one
//!   held-out item per user this **equals HR@K**; it is reported under its
//!   own name because the issue and RecBole do.
//!
//! Each is averaged over users.

use serde::{Deserialize, Serialize};

/// The cut-offs reported by default.
pub const DEFAULT_KS: [usize; 3] = [10, 50, 100];

/// How items scored exactly as high as the target count in its rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieRule {
    /// Half of the tied other items (the expected rank under a random
    /// tie-break).
    #[default]
    Average,
    /// Every tied other item ranks above the target.
    Pessimistic,
}

impl TieRule {
    /// The name used in reports (`average`, `pessimistic`).
    pub fn as_str(self) -> &'static str {
        match self {
            TieRule::Average => "average",
            TieRule::Pessimistic => "pessimistic",
        }
    }
}

impl std::str::FromStr for TieRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "average" => Ok(TieRule::Average),
            "pessimistic" => Ok(TieRule::Pessimistic),
            other => Err(format!(
                "unknown tie rule {other:?}; use average or pessimistic"
            )),
        }
    }
}

/// The 0-based rank of `scores[target]` among all of `scores`, under `ties`.
///
/// Returns `None` when `target` is out of range.
pub fn rank_of(scores: &[f32], target: usize, ties: TieRule) -> Option<f64> {
    let t = *scores.get(target)?;
    if t.is_nan() {
        return Some(scores.len().saturating_sub(1) as f64);
    }
    let mut higher = 0usize;
    let mut equal = 0usize;
    for &s in scores {
        // NaN compares false both ways: never higher, never tied.
        if s > t {
            higher += 1;
        } else if s == t {
            equal += 1;
        }
    }
    let tied_others = equal - 1; // the target itself is one of them
    Some(match ties {
        TieRule::Average => higher as f64 + tied_others as f64 / 2.0,
        TieRule::Pessimistic => (higher + tied_others) as f64,
    })
}

/// HR@K of one target at `rank`: 1 if it is in the top K.
pub fn hit_at(rank: f64, k: usize) -> f64 {
    if rank < k as f64 {
        1.0
    } else {
        0.0
    }
}

/// NDCG@K of one target at `rank`: `1 / log2(rank + 2)` in the top K, else 0.
pub fn ndcg_at(rank: f64, k: usize) -> f64 {
    if rank < k as f64 {
        1.0 / (rank + 2.0).log2()
    } else {
        0.0
    }
}

/// The metrics at one cut-off, averaged over users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsAtK {
    /// The cut-off K.
    pub k: usize,
    /// Hit rate: share of users whose target is in the top K.
    pub hr: f64,
    /// Mean NDCG@K.
    pub ndcg: f64,
    /// Recall@K: with one held-out item per user, equal to `hr`.
    pub recall: f64,
}

/// Sums of per-user metrics at a set of cut-offs, turned into means by
/// [`MetricsSum::means`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSum {
    ks: Vec<usize>,
    hits: Vec<f64>,
    ndcg: Vec<f64>,
    users: usize,
    rank_sum: f64,
}

impl MetricsSum {
    /// Empty sums at the cut-offs `ks`.
    pub fn new(ks: &[usize]) -> MetricsSum {
        MetricsSum {
            ks: ks.to_vec(),
            hits: vec![0.0; ks.len()],
            ndcg: vec![0.0; ks.len()],
            users: 0,
            rank_sum: 0.0,
        }
    }

    /// Adds one user whose target is at `rank`.
    pub fn add(&mut self, rank: f64) {
        for (i, &k) in self.ks.iter().enumerate() {
            self.hits[i] += hit_at(rank, k);
            self.ndcg[i] += ndcg_at(rank, k);
        }
        self.users += 1;
        self.rank_sum += rank;
    }

    /// Adds one user whose target could not be ranked (masked as seen):
    /// a miss at every K, counted at `rank` in the mean rank.
    pub fn add_miss(&mut self, rank: f64) {
        self.users += 1;
        self.rank_sum += rank;
    }

    /// Users added.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Mean 0-based rank of the targets (NaN when empty).
    pub fn mean_rank(&self) -> f64 {
        self.rank_sum / self.users as f64
    }

    /// The means at each cut-off (zeros when no user was added).
    pub fn means(&self) -> Vec<MetricsAtK> {
        let n = self.users.max(1) as f64;
        self.ks
            .iter()
            .enumerate()
            .map(|(i, &k)| MetricsAtK {
                k,
                hr: self.hits[i] / n,
                ndcg: self.ndcg[i] / n,
                recall: self.hits[i] / n,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rank_counts_strictly_higher_items_and_splits_ties() {
        //            0    1    2    3    4    5
        let s = [0.5, 0.9, 0.5, 0.1, 0.5, 0.7];
        // Target 0 (0.5): 2 higher (0.9, 0.7), 2 tied others (items 2, 4).
        assert_eq!(rank_of(&s, 0, TieRule::Average), Some(3.0));
        assert_eq!(rank_of(&s, 0, TieRule::Pessimistic), Some(4.0));
        // The best item: rank 0 under both rules.
        assert_eq!(rank_of(&s, 1, TieRule::Average), Some(0.0));
        assert_eq!(rank_of(&s, 1, TieRule::Pessimistic), Some(0.0));
        // The worst item.
        assert_eq!(rank_of(&s, 3, TieRule::Pessimistic), Some(5.0));
        assert_eq!(rank_of(&s, 6, TieRule::Average), None);
    }

    #[test]
    fn a_constant_scorer_ranks_the_target_in_the_middle_or_last() {
        let s = [1.0f32; 101];
        assert_eq!(rank_of(&s, 7, TieRule::Average), Some(50.0));
        assert_eq!(rank_of(&s, 7, TieRule::Pessimistic), Some(100.0));
    }

    #[test]
    fn nan_scores_are_never_higher_and_a_nan_target_is_last() {
        let s = [f32::NAN, 0.2, f32::NAN, 0.1];
        assert_eq!(rank_of(&s, 1, TieRule::Pessimistic), Some(0.0));
        assert_eq!(rank_of(&s, 3, TieRule::Pessimistic), Some(1.0));
        assert_eq!(rank_of(&s, 0, TieRule::Average), Some(3.0));
        let s = [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0];
        assert_eq!(rank_of(&s, 0, TieRule::Average), Some(1.5));
    }

    #[test]
    fn hr_and_ndcg_match_hand_computed_values() {
        // rank 0: NDCG 1/log2(2) = 1.
        assert_eq!(ndcg_at(0.0, 10), 1.0);
        // rank 2: 1/log2(4) = 0.5.
        assert_eq!(ndcg_at(2.0, 10), 0.5);
        // rank 6: 1/log2(8) = 1/3.
        assert!((ndcg_at(6.0, 10) - 1.0 / 3.0).abs() < 1e-12);
        // rank 9 is in the top 10, rank 10 is not.
        assert_eq!(hit_at(9.0, 10), 1.0);
        assert_eq!(hit_at(10.0, 10), 0.0);
        assert_eq!(ndcg_at(10.0, 10), 0.0);
        // A fractional (average-tie) rank just under K is a hit.
        assert_eq!(hit_at(9.5, 10), 1.0);
    }

    #[test]
    fn sums_average_over_users() {
        // Three users at ranks 0, 2 and 60 with K = 10, 50, 100.
        let mut m = MetricsSum::new(&DEFAULT_KS);
        for r in [0.0, 2.0, 60.0] {
            m.add(r);
        }
        let means = m.means();
        assert_eq!(m.users(), 3);
        assert_eq!(means[0].k, 10);
        assert!((means[0].hr - 2.0 / 3.0).abs() < 1e-12);
        assert!((means[0].ndcg - 1.5 / 3.0).abs() < 1e-12);
        assert_eq!(means[0].recall, means[0].hr);
        assert!((means[1].hr - 2.0 / 3.0).abs() < 1e-12);
        assert!((means[2].hr - 1.0).abs() < 1e-12);
        let n100 = (1.0 + 0.5 + 1.0 / 62f64.log2()) / 3.0;
        assert!((means[2].ndcg - n100).abs() < 1e-12);
        assert!((m.mean_rank() - 62.0 / 3.0).abs() < 1e-12);
        assert_eq!(MetricsSum::new(&[10]).means()[0].hr, 0.0);
        let mut m = MetricsSum::new(&[10]);
        m.add(0.0);
        m.add_miss(5.0);
        assert_eq!(m.means()[0].hr, 0.5);
        assert_eq!(m.means()[0].ndcg, 0.5);
        assert_eq!(m.mean_rank(), 2.5);
    }

    #[test]
    fn tie_rules_parse_and_print() {
        for t in [TieRule::Average, TieRule::Pessimistic] {
            assert_eq!(t.as_str().parse::<TieRule>(), Ok(t));
        }
        assert!("optimistic"
            .parse::<TieRule>()
            .unwrap_err()
            .contains("pessimistic"));
    }

    proptest! {
        /// The rank equals a brute-force count from a sorted list: the
        /// number of items before the target's first tie under a
        /// descending sort, plus the share of ties.
        #[test]
        fn rank_matches_sorting(scores in proptest::collection::vec(0u8..6, 1..40), pick in 0usize..40) {
            let scores: Vec<f32> = scores.into_iter().map(f32::from).collect();
            let target = pick % scores.len();
            let mut sorted = scores.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let t = scores[target];
            let first = sorted.iter().position(|&s| s == t).unwrap();
            let last = sorted.iter().rposition(|&s| s == t).unwrap();
            prop_assert_eq!(rank_of(&scores, target, TieRule::Pessimistic), Some(last as f64));
            prop_assert_eq!(rank_of(&scores, target, TieRule::Average), Some((first + last) as f64 / 2.0));
        }
    }
}
