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
//!
//! In a batch (the candidates of one request), candidates with the same
//! categories get the same result, computed once, and each category's
//! postings are looked up once.

use std::cmp::Reverse;

use hindsight_core::{FeatureKind, Seq};
use hindsight_index::{DocId, History, KeyPostings, NewestMatches};

use super::{
    admits, materialize, needs_ts_check, pad_with_recent, BatchBuilder, Memo, Pick, Postings,
    StrategyKind,
};
use crate::{BatchRetrieved, Query, Result, RetrievalStrategy, Retrieved};

/// SIM hard search: the behaviors sharing a category with the target (any
/// of its genres), newest first, padded with the most recent other
/// behaviors when fewer than N match. Matches score 1, padding 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimHard;

impl SimHard {
    /// The picks of one query.
    fn picks<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        postings: &mut Postings<'_, 'a>,
        out: &mut Vec<Pick>,
    ) -> Result<()> {
        let check_ts = needs_ts_check(history, q);
        let runs = history.runs();
        let start = out.len();
        let mut window = Vec::new();
        let mut keys: Vec<KeyPostings<'a>> = Vec::new();
        if runs.len() == 1 && q.n > 0 {
            // One run (the usual case): its matches are already newest first.
            let run = runs[0];
            for &c in &q.target.features.categories {
                keys.extend(postings.get(0, FeatureKind::Category, c)?);
            }
            let keys: Vec<&KeyPostings<'a>> = keys.iter().collect();
            let bound = run.bound(&q.as_of, history.ts_monotonic());
            let mut found = 0;
            let mut take = |doc: DocId| {
                if admits(run.seg, doc, q, check_ts) {
                    out.push(Pick {
                        run: 0,
                        doc,
                        score: 1.0,
                    });
                    found += 1;
                }
                found < q.n
            };
            // One key held in memory: its docs below the bound, newest
            // first, as they are; otherwise windows of the union.
            let single = match keys[..] {
                [k] => k.newest_before(bound),
                _ => None,
            };
            if let Some(mut newest) = single {
                newest.try_for_each(|doc| take(doc).then_some(()));
            } else {
                let mut reader = NewestMatches::new(run, bound);
                'read: while reader.next_window(&keys, q.n, &mut window)? {
                    for &doc in &window {
                        if !take(doc) {
                            break 'read;
                        }
                    }
                }
            }
        } else {
            // Per run, the newest N admitted matches; then the newest N of all.
            let mut cands: Vec<(Seq, usize, DocId)> = Vec::new();
            for (ri, run) in runs.iter().enumerate() {
                if q.n == 0 {
                    break;
                }
                keys.clear();
                for &c in &q.target.features.categories {
                    keys.extend(postings.get(ri, FeatureKind::Category, c)?);
                }
                let keys: Vec<&KeyPostings<'a>> = keys.iter().collect();
                let mut reader =
                    NewestMatches::new(*run, run.bound(&q.as_of, history.ts_monotonic()));
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
            out.extend(cands.iter().map(|&(_, run, doc)| Pick {
                run,
                doc,
                score: 1.0,
            }));
        }
        let taken: Vec<(usize, DocId)> = out[start..].iter().map(|p| (p.run, p.doc)).collect();
        let need = q.n - taken.len();
        pad_with_recent(history, q, need, &taken, out);
        Ok(())
    }
}

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
        let mut picks = Vec::with_capacity(q.n.min(1024));
        self.picks(history, q, &mut Postings::direct(history), &mut picks)?;
        materialize(history, &picks, out);
        Ok(())
    }

    fn retrieve_batch(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        let mut b = BatchBuilder::new(history, queries.len());
        let mut postings = Postings::shared(history);
        let mut memo = Memo::new(false);
        for (qi, q) in queries.iter().enumerate() {
            if let Some(picks) = memo.get(queries, qi) {
                b.set(qi, picks);
                continue;
            }
            let mut picks = Vec::with_capacity(q.n.min(1024));
            self.picks(history, q, &mut postings, &mut picks)?;
            b.set(qi, &picks);
            memo.put(queries, qi, picks);
        }
        Ok(b.out)
    }
}
