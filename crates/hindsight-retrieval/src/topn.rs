//! The N best of a stream of scored behaviors.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use hindsight_core::Seq;

/// A scored behavior, ordered by score, then by `seq`: among equal scores
/// the newer behavior ranks higher.
#[derive(Debug, Clone, Copy)]
pub struct Ranked<T> {
    /// The score.
    pub score: f32,
    /// The behavior's sequence number (unique within a user).
    pub seq: Seq,
    /// What the caller keeps with it (where the behavior is).
    pub value: T,
}

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.seq.cmp(&other.seq))
    }
}

/// Keeps the `n` highest [`Ranked`] entries offered (a min-heap of `n`):
/// ties in score go to the newer behavior.
#[derive(Debug, Clone)]
pub struct TopN<T> {
    n: usize,
    heap: BinaryHeap<Reverse<Ranked<T>>>,
}

impl<T> TopN<T> {
    /// An empty top-`n`.
    pub fn new(n: usize) -> Self {
        TopN {
            n,
            heap: BinaryHeap::with_capacity(n.min(4096) + 1),
        }
    }

    /// Offers an entry; returns whether it is kept (for now).
    pub fn offer(&mut self, score: f32, seq: Seq, value: T) -> bool {
        let r = Ranked { score, seq, value };
        if self.heap.len() < self.n {
            self.heap.push(Reverse(r));
            true
        } else if self.heap.peek().is_some_and(|Reverse(min)| r > *min) {
            self.heap.pop();
            self.heap.push(Reverse(r));
            true
        } else {
            false
        }
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The lowest kept score once `n` entries are kept (`None` before, and
    /// always for `n = 0`): an entry must beat it, or tie it and be newer,
    /// to get in.
    pub fn threshold(&self) -> Option<f32> {
        if self.n == 0 || self.heap.len() < self.n {
            return None;
        }
        self.heap.peek().map(|Reverse(min)| min.score)
    }

    /// The kept entries, best first.
    pub fn into_sorted_vec(self) -> Vec<Ranked<T>> {
        let mut top: Vec<Ranked<T>> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_the_best_and_breaks_ties_towards_newer() {
        let mut top = TopN::new(2);
        assert_eq!(top.threshold(), None);
        assert!(top.offer(1.0, 3, 'a'));
        assert!(top.offer(1.0, 1, 'b'));
        assert_eq!(top.threshold(), Some(1.0));
        // Same score, newer than the oldest kept: replaces it.
        assert!(top.offer(1.0, 2, 'c'));
        // Same score, older than both: refused.
        assert!(!top.offer(1.0, 0, 'd'));
        assert!(!top.offer(0.5, 9, 'e'));
        assert!(top.offer(2.0, 0, 'f'));
        let got: Vec<(f32, Seq, char)> = top
            .into_sorted_vec()
            .into_iter()
            .map(|r| (r.score, r.seq, r.value))
            .collect();
        assert_eq!(got, [(2.0, 0, 'f'), (1.0, 3, 'a')]);
        let mut none = TopN::new(0);
        assert!(!none.offer(5.0, 1, ()));
        assert!(none.is_empty() && none.threshold().is_none());
    }

    proptest! {
        #[test]
        fn equals_sorting_everything(
            scores in prop::collection::vec(0u8..6, 0..60),
            n in 0usize..20,
        ) {
            // Distinct seqs, few distinct scores: many ties.
            let mut top = TopN::new(n);
            for (seq, &s) in scores.iter().enumerate() {
                top.offer(f32::from(s), seq as Seq, seq);
            }
            prop_assert_eq!(top.len(), n.min(scores.len()));
            let got: Vec<usize> = top.into_sorted_vec().into_iter().map(|r| r.value).collect();
            let mut all: Vec<usize> = (0..scores.len()).collect();
            all.sort_by(|&a, &b| scores[b].cmp(&scores[a]).then(b.cmp(&a)));
            all.truncate(n);
            prop_assert_eq!(got, all);
        }
    }
}
