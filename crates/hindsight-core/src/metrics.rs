//! Ranking and calibration metrics of the evaluation protocol (docs/evaluation-protocol.md):
//! AUC, gAUC (per-user AUC weighted by the user's number of samples, over
//! users that have both labels, as in DIN, Zhou et al. KDD 2018) and
//! logloss.

use std::collections::BTreeMap;

/// Area under the ROC curve of `scores` against binary `labels`, with tied
/// scores counted as half (the Mann-Whitney U statistic). `None` when one
/// class is absent.
pub fn auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut pos, mut neg) = (0u64, 0u64);
    let mut rank_sum = 0f64; // sum of (1-based, tie-averaged) ranks of positives
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] != 0 {
                pos += 1;
                rank_sum += avg_rank;
            } else {
                neg += 1;
            }
        }
        i = j + 1;
    }
    if pos == 0 || neg == 0 {
        return None;
    }
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// Group AUC: the mean of per-user AUCs weighted by each user's number of
/// samples, over the users that have both a positive and a negative.
/// `None` when no user has both. Users are summed in id order, so the
/// figure does not depend on the order of the samples (bit for bit).
pub fn gauc(users: &[u64], scores: &[f32], labels: &[u8]) -> Option<f64> {
    assert_eq!(
        users.len(),
        scores.len(),
        "users and scores differ in length"
    );
    let mut groups: BTreeMap<u64, (Vec<f32>, Vec<u8>)> = BTreeMap::new();
    for ((&u, &s), &l) in users.iter().zip(scores).zip(labels) {
        let g = groups.entry(u).or_default();
        g.0.push(s);
        g.1.push(l);
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (s, l) in groups.values() {
        if let Some(a) = auc(s, l) {
            num += a * s.len() as f64;
            den += s.len() as f64;
        }
    }
    (den > 0.0).then(|| num / den)
}

/// Mean binary cross-entropy of probabilities `probs` against `labels`,
/// with probabilities clipped to `[1e-7, 1 - 1e-7]`.
pub fn logloss(probs: &[f32], labels: &[u8]) -> f64 {
    assert_eq!(
        probs.len(),
        labels.len(),
        "probs and labels differ in length"
    );
    if probs.is_empty() {
        return f64::NAN;
    }
    let eps = 1e-7f64;
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let p = (p as f64).clamp(eps, 1.0 - eps);
            if l != 0 {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / probs.len() as f64
}

/// The `q`-quantile (`q` in [0, 1]) of ascending `sorted` values by the
/// nearest-rank method: the value of rank `ceil(q n)`, at least the first;
/// NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_hand_computed() {
        // Positives at 0.9 and 0.4, negatives at 0.5 and 0.1: pairs
        // (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3 of 4.
        let a = auc(&[0.9, 0.5, 0.4, 0.1], &[1, 0, 1, 0]).unwrap();
        assert!((a - 0.75).abs() < 1e-12);
        // A tie between a positive and a negative counts half.
        let a = auc(&[0.5, 0.5], &[1, 0]).unwrap();
        assert!((a - 0.5).abs() < 1e-12);
        assert!(auc(&[0.1, 0.2], &[1, 1]).is_none());
    }

    #[test]
    fn gauc_weights_by_user_samples() {
        // User 1: perfect (AUC 1, 2 samples); user 2: inverted (AUC 0, 4
        // samples); user 3: only positives, skipped.
        let users = [1, 1, 2, 2, 2, 2, 3];
        let scores = [0.9, 0.1, 0.1, 0.2, 0.8, 0.9, 0.5];
        let labels = [1, 0, 1, 1, 0, 0, 1];
        let g = gauc(&users, &scores, &labels).unwrap();
        assert!((g - (1.0 * 2.0 + 0.0 * 4.0) / 6.0).abs() < 1e-12);
    }

    #[test]
    fn logloss_hand_computed() {
        let l = logloss(&[0.8, 0.25], &[1, 0]);
        let want = (-(0.8f64).ln() - (0.75f64).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
    }

    #[test]
    fn percentile_is_the_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 500.0);
        assert_eq!(super::percentile(&v, 0.99), 990.0);
        assert_eq!(super::percentile(&v, 1.0), 1000.0);
        assert_eq!(super::percentile(&v, 0.0), 1.0);
        assert_eq!(super::percentile(&[7.0], 0.9), 7.0);
        assert!(super::percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn gauc_is_bit_identical_whatever_the_sample_order() {
        // 200 users with a few samples each; scores with many digits so that
        // the weighted sum depends on the order it is added in.
        let mut users = Vec::new();
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for u in 0..200u64 {
            for k in 0..(2 + u % 5) {
                users.push(u * 7919 % 1000);
                scores.push(((u * 31 + k * 17) % 101) as f32 / 101.0 + 1e-3 * k as f32);
                labels.push(((u + k) % 2) as u8);
            }
        }
        let g = super::gauc(&users, &scores, &labels).unwrap();
        fn rotated<T: Copy>(v: &[T], by: usize) -> Vec<T> {
            let mut v = v.to_vec();
            v.rotate_left(by);
            v
        }
        fn reversed<T: Copy>(v: &[T]) -> Vec<T> {
            v.iter().rev().copied().collect()
        }
        for by in [1, 7, 100] {
            let (u, s, l) = (
                rotated(&users, by),
                rotated(&scores, by),
                rotated(&labels, by),
            );
            assert_eq!(super::gauc(&u, &s, &l).unwrap().to_bits(), g.to_bits());
        }
        let (u, s, l) = (reversed(&users), reversed(&scores), reversed(&labels));
        assert_eq!(super::gauc(&u, &s, &l).unwrap().to_bits(), g.to_bits());
    }
}
