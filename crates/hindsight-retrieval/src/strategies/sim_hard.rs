//! `sim-hard`: SIM's hard search (Pi et al., "Search-based User Interest
//! Modeling with Lifelong Sequential Behavior Data for Click-Through Rate
//! Prediction", CIKM 2020, section 4.1): the behaviors sharing a category
//! with the target, newest first.
//!
//! SIM keeps a two-level index user -> category -> behaviors; here that is
//! the posting list of the feature key (user, category) within the user's
//! run, read newest first from the as-of bound with
//! [`NewestMatches`], so the cost follows N and not how often the user
//! touched the category.

use std::cmp::Reverse;

use hindsight_core::{FeatureKind, Seq};
use hindsight_index::{DocId, History, KeyPostings, NewestMatches};

use super::{admits, needs_ts_check, pad_with_recent, StrategyKind};
use crate::{Query, Result, RetrievalStrategy, Retrieved};

/// SIM hard search: the behaviors sharing a category with the target (any
/// of its genres), newest first, padded with the most recent other
/// behaviors when fewer than N match. Matches score 1, padding 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimHard;

impl RetrievalStrategy for SimHard {
    fn name(&self) -> &'static str {
        StrategyKind::SimHard.as_str()
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        let check_ts = needs_ts_check(history, q);
        let runs = history.runs();
        // Per run, the newest N admitted matches; then the newest N of all.
        let mut cands: Vec<(Seq, usize, DocId)> = Vec::new();
        let mut window = Vec::new();
        for (ri, run) in runs.iter().enumerate() {
            if q.n == 0 {
                break;
            }
            let mut keys: Vec<KeyPostings<'_>> = Vec::new();
            for &c in &q.target.features.categories {
                keys.extend(run.postings(FeatureKind::Category, c)?);
            }
            let keys: Vec<&KeyPostings<'_>> = keys.iter().collect();
            let mut reader = NewestMatches::new(*run, run.bound(&q.as_of, history.ts_monotonic()));
            let mut found = 0;
            while found < q.n && reader.next_window(&keys, q.n, &mut window)? {
                for &doc in &window {
                    if admits(run.seg, doc, q, check_ts) {
                        cands.push((run.seg.seq(doc), ri, doc));
                        found += 1;
                        if found == q.n {
                            break;
                        }
                    }
                }
            }
        }
        cands.sort_unstable_by_key(|c| Reverse(c.0));
        cands.truncate(q.n);
        let mut taken = Vec::with_capacity(cands.len());
        for &(_, ri, doc) in &cands {
            out.push(Retrieved {
                behavior: runs[ri].seg.behavior(doc),
                score: 1.0,
            });
            taken.push((ri, doc));
        }
        pad_with_recent(history, q, q.n - cands.len(), &taken, out);
        Ok(())
    }
}
