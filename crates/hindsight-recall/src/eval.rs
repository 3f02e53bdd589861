//! Evaluating a [`CatalogScorer`] on a split's valid or test targets, with
//! full ranking over the whole catalog (the protocol: `docs/recall.md`).
//!
//! For every user: the scorer scores every catalog item from the user's
//! history before the target ([`UserSequence::valid_history`] or
//! [`UserSequence::test_history`]); the target's rank among them gives
//! HR@K, NDCG@K and Recall@K ([`crate::metrics`]).
//!
//! By default seen items are **not** excluded: on taobao users come back
//! to items they viewed, and the `repeat` baseline shows how much of the
//! task that is. With [`EvalOptions::exclude_seen`] every item of the
//! history is set to −∞ before ranking (the masking RecBole applies to
//! general, non-sequential models); a target that is itself in the history
//! is then a miss at every K (counted at rank = catalog size in the mean
//! rank). The metrics of the **new-item**
//! subset (targets not in the history) are reported in both modes; they
//! do not depend on the masking except through the masked items that no
//! longer outrank the target.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Instant;

use hindsight_core::ItemId;
use serde::{Deserialize, Serialize};

use crate::baselines::CatalogPositions;
use crate::metrics::{rank_of, MetricsAtK, MetricsSum, TieRule, DEFAULT_KS};
use crate::split::{RecallSplit, UserSequence};
use crate::{CatalogScorer, RecallError, Result};

/// Which of a user's held-out behaviors is the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The behavior before the last (for model selection).
    Valid,
    /// The last behavior (the reported figures).
    Test,
}

impl Target {
    /// `valid` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Valid => "valid",
            Target::Test => "test",
        }
    }

    /// The target and the history it is predicted from.
    pub fn of(self, user: &UserSequence) -> (ItemId, &[hindsight_core::Behavior]) {
        match self {
            Target::Valid => (user.valid().item_id, user.valid_history()),
            Target::Test => (user.test().item_id, user.test_history()),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "valid" => Ok(Target::Valid),
            "test" => Ok(Target::Test),
            other => Err(format!("unknown target {other:?}; use valid or test")),
        }
    }
}

/// How an evaluation runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Set every item of the user's history to −∞ before ranking
    /// (RecBole's masking); default false.
    pub exclude_seen: bool,
    /// Evaluate only the first this many users (ascending user id).
    pub max_users: Option<usize>,
    /// How ties with the target count ([`TieRule::Average`] by default).
    pub ties: TieRule,
    /// The cut-offs K (default 10, 50, 100).
    pub ks: Vec<usize>,
    /// Threads for [`evaluate_parallel`] (0: the available parallelism).
    pub threads: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            exclude_seen: false,
            max_users: None,
            ties: TieRule::Average,
            ks: DEFAULT_KS.to_vec(),
            threads: 0,
        }
    }
}

/// Progress of an evaluation: users done out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalProgress {
    /// Users evaluated so far.
    pub done: usize,
    /// Users to evaluate.
    pub total: usize,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallReport {
    /// The scorer's name.
    pub scorer: String,
    /// The target evaluated.
    pub target: Target,
    /// Whether seen items were masked.
    pub exclude_seen: bool,
    /// The tie rule.
    pub ties: TieRule,
    /// Catalog size (the number of candidates of every ranking).
    pub catalog_items: usize,
    /// Users evaluated.
    pub users: usize,
    /// Users whose target is not in their history.
    pub new_item_users: usize,
    /// Metrics over all users, one entry per K.
    pub metrics: Vec<MetricsAtK>,
    /// Metrics over the new-item users.
    pub new_item_metrics: Vec<MetricsAtK>,
    /// Mean 0-based rank of the target.
    pub mean_rank: f64,
    /// Wall-clock seconds of the evaluation.
    pub wall_seconds: f64,
    /// Users evaluated per second.
    pub users_per_second: f64,
    /// Threads used.
    pub threads: usize,
}

impl RecallReport {
    /// The metrics at cut-off `k`, if it was evaluated.
    pub fn at(&self, k: usize) -> Option<&MetricsAtK> {
        self.metrics.iter().find(|m| m.k == k)
    }
}

/// One user's outcome.
#[derive(Clone, Copy)]
struct Outcome {
    rank: f64,
    new_item: bool,
    /// The target was masked (seen, with `exclude_seen`): a miss.
    masked: bool,
}

/// Scores and ranks one user's target.
fn rank_user(
    scorer: &dyn CatalogScorer,
    positions: &CatalogPositions,
    user: &UserSequence,
    target: Target,
    options: &EvalOptions,
    scores: &mut [f32],
    seen: &mut HashSet<usize>,
) -> Outcome {
    let (item, history) = target.of(user);
    scores.fill(0.0);
    scorer.score_catalog(user.user, history, scores);
    seen.clear();
    seen.extend(history.iter().filter_map(|b| positions.get(b.item_id)));
    let worst = scores.len().saturating_sub(1) as f64;
    let Some(t) = positions.get(item) else {
        // Every target is an item of the index, so of the catalog; a split
        // built otherwise counts it as a miss.
        return Outcome {
            rank: scores.len() as f64,
            new_item: true,
            masked: true,
        };
    };
    let new_item = !seen.contains(&t);
    if options.exclude_seen {
        if !new_item {
            return Outcome {
                rank: scores.len() as f64,
                new_item,
                masked: true,
            };
        }
        for &i in seen.iter() {
            scores[i] = f32::NEG_INFINITY;
        }
    }
    let rank = rank_of(scores, t, options.ties).unwrap_or(worst);
    Outcome {
        rank,
        new_item,
        masked: false,
    }
}

fn check(split: &RecallSplit, options: &EvalOptions) -> Result<()> {
    if split.catalog.is_empty() {
        return Err(RecallError::EmptyCatalog);
    }
    if options.ks.is_empty() || options.ks.contains(&0) {
        return Err(RecallError::InvalidParameter(format!(
            "the cut-offs K must be at least 1 (got {:?})",
            options.ks
        )));
    }
    if options.max_users == Some(0) {
        return Err(RecallError::InvalidParameter(
            "max_users must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

fn report(
    scorer: &dyn CatalogScorer,
    split: &RecallSplit,
    target: Target,
    options: &EvalOptions,
    outcomes: &[Outcome],
    started: Instant,
    threads: usize,
) -> RecallReport {
    let mut all = MetricsSum::new(&options.ks);
    let mut new = MetricsSum::new(&options.ks);
    for o in outcomes {
        let sums = if o.new_item {
            &mut [&mut all, &mut new][..]
        } else {
            &mut [&mut all][..]
        };
        for m in sums {
            if o.masked {
                m.add_miss(o.rank);
            } else {
                m.add(o.rank);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    RecallReport {
        scorer: scorer.name().to_owned(),
        target,
        exclude_seen: options.exclude_seen,
        ties: options.ties,
        catalog_items: split.catalog.len(),
        users: outcomes.len(),
        new_item_users: new.users(),
        metrics: all.means(),
        new_item_metrics: new.means(),
        mean_rank: all.mean_rank(),
        wall_seconds: wall,
        users_per_second: outcomes.len() as f64 / wall.max(1e-9),
        threads,
    }
}

/// Evaluates `scorer` on one thread.
pub fn evaluate(
    split: &RecallSplit,
    target: Target,
    scorer: &dyn CatalogScorer,
    options: &EvalOptions,
    mut progress: impl FnMut(&EvalProgress),
) -> Result<RecallReport> {
    check(split, options)?;
    let started = Instant::now();
    let positions = CatalogPositions::new(split);
    let users = &split.users[..options
        .max_users
        .unwrap_or(usize::MAX)
        .min(split.users.len())];
    let mut scores = vec![0.0f32; split.catalog.len()];
    let mut seen = HashSet::new();
    let mut outcomes = Vec::with_capacity(users.len());
    let total = users.len();
    for (i, user) in users.iter().enumerate() {
        outcomes.push(rank_user(
            scorer,
            &positions,
            user,
            target,
            options,
            &mut scores,
            &mut seen,
        ));
        if (i + 1) % 64 == 0 || i + 1 == total {
            progress(&EvalProgress { done: i + 1, total });
        }
    }
    Ok(report(
        scorer, split, target, options, &outcomes, started, 1,
    ))
}

/// Evaluates a thread-safe `scorer` with [`EvalOptions::threads`] threads
/// (users in contiguous chunks; the figures equal [`evaluate`]'s bit for
/// bit, since per-user outcomes are summed in user order).
pub fn evaluate_parallel(
    split: &RecallSplit,
    target: Target,
    scorer: &(dyn CatalogScorer + Sync),
    options: &EvalOptions,
    mut progress: impl FnMut(&EvalProgress),
) -> Result<RecallReport> {
    check(split, options)?;
    let started = Instant::now();
    let positions = CatalogPositions::new(split);
    let users = &split.users[..options
        .max_users
        .unwrap_or(usize::MAX)
        .min(split.users.len())];
    let total = users.len();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, total.max(1));
    let chunk = total.div_ceil(threads).max(1);
    let mut outcomes = vec![
        Outcome {
            rank: 0.0,
            new_item: false,
            masked: false,
        };
        total
    ];
    let (tx, rx) = mpsc::channel::<usize>();
    std::thread::scope(|s| {
        for (part, out) in users.chunks(chunk).zip(outcomes.chunks_mut(chunk)) {
            let tx = tx.clone();
            let positions = &positions;
            s.spawn(move || {
                let mut scores = vec![0.0f32; split.catalog.len()];
                let mut seen = HashSet::new();
                let mut pending = 0;
                for (user, o) in part.iter().zip(out.iter_mut()) {
                    *o = rank_user(
                        scorer,
                        positions,
                        user,
                        target,
                        options,
                        &mut scores,
                        &mut seen,
                    );
                    pending += 1;
                    if pending == 64 {
                        let _ = tx.send(pending);
                        pending = 0;
                    }
                }
                let _ = tx.send(pending);
            });
        }
        drop(tx);
        let mut done = 0;
        for n in rx {
            done += n;
            progress(&EvalProgress { done, total });
        }
    });
    Ok(report(
        scorer, split, target, options, &outcomes, started, threads,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baselines::tests::split_of;
    use crate::baselines::{ItemCf, ItemCfParams, Popularity, Repeat};
    use hindsight_core::{Behavior, UserId};
    use proptest::prelude::*;

    /// Scores item i as `weights[i]` for everyone.
    struct Fixed(Vec<f32>);
    impl CatalogScorer for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn score_catalog(&self, _: UserId, _: &[Behavior], out: &mut [f32]) {
            out.copy_from_slice(&self.0);
        }
    }

    fn opts(exclude_seen: bool) -> EvalOptions {
        EvalOptions {
            exclude_seen,
            ks: vec![1, 2, 10],
            ..EvalOptions::default()
        }
    }

    #[test]
    fn hand_computed_report_without_and_with_masking() {
        // Catalog 0..6 scored 5 4 3 2 1 0 (item 0 best).
        // User 1: history 0 1 | valid 2 | test 3: test rank 3, new item.
        // User 2: history 3 4 | valid 0 | test 4: test in history, rank 4.
        let split = split_of(&[&[0, 1, 2, 3], &[3, 4, 0, 4]], 6);
        let scorer = Fixed(vec![5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
        let r = evaluate(&split, Target::Test, &scorer, &opts(false), |_| {}).unwrap();
        assert_eq!((r.users, r.new_item_users, r.catalog_items), (2, 1, 6));
        // No rank below 2: HR@1 = HR@2 = 0; HR@10 = 1.
        assert_eq!(r.at(1).unwrap().hr, 0.0);
        assert_eq!(r.at(10).unwrap().hr, 1.0);
        let ndcg10 = (1.0 / 5f64.log2() + 1.0 / 6f64.log2()) / 2.0;
        assert!((r.at(10).unwrap().ndcg - ndcg10).abs() < 1e-12);
        assert_eq!(r.at(10).unwrap().recall, r.at(10).unwrap().hr);
        assert_eq!(r.mean_rank, 3.5);
        assert!((r.new_item_metrics[2].ndcg - 1.0 / 5f64.log2()).abs() < 1e-12);
        // Masked: user 1's history 0 1 2 goes to -inf, so the target 3 is
        // first (rank 0); user 2's target is seen: a miss at every K, even
        // K = 10 above the catalog size, at rank 6 in the mean rank.
        let r = evaluate(&split, Target::Test, &scorer, &opts(true), |_| {}).unwrap();
        assert_eq!(r.at(1).unwrap().hr, 0.5);
        assert_eq!(r.at(10).unwrap().hr, 0.5);
        assert_eq!(r.at(10).unwrap().ndcg, 0.5);
        assert_eq!(r.mean_rank, 3.0);
        assert_eq!(r.new_item_metrics[0].hr, 1.0);
        // Valid targets: user 1 -> 2 (history 0 1), user 2 -> 0 (history 3 4).
        let r = evaluate(&split, Target::Valid, &scorer, &opts(false), |_| {}).unwrap();
        assert_eq!(r.mean_rank, 1.0);
        assert_eq!(r.at(1).unwrap().hr, 0.5);
        assert_eq!(r.new_item_users, 2);
    }

    #[test]
    fn repeat_beats_popularity_when_users_come_back() {
        // Every user's test item is the item they looked at most recently
        // before it, and popularity points elsewhere (item 9).
        let split = split_of(
            &[
                &[9, 9, 1, 2, 1],
                &[9, 9, 3, 4, 3],
                &[9, 9, 5, 5, 6, 5],
                &[9, 9, 9, 7, 8, 7],
            ],
            10,
        );
        let o = EvalOptions {
            ks: vec![1],
            ..EvalOptions::default()
        };
        let pop = evaluate(&split, Target::Test, &Popularity::new(&split), &o, |_| {}).unwrap();
        let rep = evaluate(&split, Target::Test, &Repeat::new(&split), &o, |_| {}).unwrap();
        assert_eq!(pop.metrics[0].hr, 0.0);
        // Repeat ranks the newest distinct item first, the valid item; the
        // target is the one before it, at rank 1, for each user.
        assert_eq!(rep.mean_rank, 1.0);
        let o2 = EvalOptions {
            ks: vec![2],
            ..o.clone()
        };
        let rep = evaluate(&split, Target::Test, &Repeat::new(&split), &o2, |_| {}).unwrap();
        assert_eq!(rep.metrics[0].hr, 1.0);
        assert_eq!(rep.new_item_users, 0);
    }

    #[test]
    fn bad_options_are_errors() {
        let split = split_of(&[&[0, 1, 2]], 3);
        let s = Popularity::new(&split);
        for o in [
            EvalOptions {
                ks: vec![],
                ..EvalOptions::default()
            },
            EvalOptions {
                ks: vec![10, 0],
                ..EvalOptions::default()
            },
            EvalOptions {
                max_users: Some(0),
                ..EvalOptions::default()
            },
        ] {
            let e = evaluate(&split, Target::Test, &s, &o, |_| {}).unwrap_err();
            assert!(matches!(e, RecallError::InvalidParameter(_)), "{e}");
        }
        let mut empty = split.clone();
        empty.catalog.clear();
        let e = evaluate_parallel(&empty, Target::Test, &s, &EvalOptions::default(), |_| {});
        assert!(matches!(e, Err(RecallError::EmptyCatalog)));
    }

    #[test]
    fn max_users_and_progress() {
        let split = split_of(&[&[0, 1, 2], &[1, 2, 0], &[2, 0, 1]], 3);
        let mut seen = Vec::new();
        let o = EvalOptions {
            max_users: Some(2),
            ..EvalOptions::default()
        };
        let r = evaluate(&split, Target::Test, &Popularity::new(&split), &o, |p| {
            seen.push(*p)
        })
        .unwrap();
        assert_eq!(r.users, 2);
        assert_eq!(seen.last(), Some(&EvalProgress { done: 2, total: 2 }));
    }

    #[test]
    fn report_serialises() {
        let split = split_of(&[&[0, 1, 2]], 3);
        let r = evaluate(
            &split,
            Target::Test,
            &Popularity::new(&split),
            &EvalOptions::default(),
            |_| {},
        )
        .unwrap();
        // Timings are not exact through serde_json's float printing.
        let mut r = r;
        r.wall_seconds = 0.5;
        r.users_per_second = 2.0;
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"target\":\"test\""), "{json}");
        assert!(json.contains("\"ties\":\"average\""), "{json}");
        let back: RecallReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    proptest! {
        /// Threads change nothing: the parallel report equals the
        /// sequential one (timings aside).
        #[test]
        fn parallel_equals_sequential(
            seqs in proptest::collection::vec(proptest::collection::vec(0u64..12, 3..12), 1..20),
            threads in 1usize..5,
            exclude_seen: bool,
        ) {
            let seqs: Vec<&[u64]> = seqs.iter().map(|s| s.as_slice()).collect();
            let split = split_of(&seqs, 12);
            let cf = ItemCf::new(&split, ItemCfParams::default()).unwrap();
            let o = EvalOptions { exclude_seen, threads, ..EvalOptions::default() };
            let mut a = evaluate(&split, Target::Test, &cf, &o, |_| {}).unwrap();
            let mut done = 0;
            let mut b = evaluate_parallel(&split, Target::Test, &cf, &o, |p| done = p.done).unwrap();
            prop_assert_eq!(done, split.users.len());
            for r in [&mut a, &mut b] {
                r.wall_seconds = 0.0;
                r.users_per_second = 0.0;
                r.threads = 0;
            }
            prop_assert_eq!(a, b);
        }
    }
}
