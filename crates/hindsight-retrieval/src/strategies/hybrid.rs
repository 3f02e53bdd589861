//! `hybrid`: a few of the most recent behaviors (short-term interest),
//! the rest of the budget by [`Ubr`] (long-term interest matching the
//! target), in the spirit of SIM's and UBR4CTR's combination of a short
//! recent sequence with a retrieved long-term one.

use hindsight_core::Seq;
use hindsight_index::{DocId, History};

use super::ubr::ubr_batch;
use super::{materialize, pad_with_recent, Pick, Postings, StrategyKind, Ubr};
use crate::{BatchRetrieved, Query, Result, RetrievalStrategy, Retrieved};

/// A few of the most recent behaviors, then [`Ubr`] for the rest of the
/// budget, in that order; padded with recent ones if UBR matches too few.
#[derive(Debug, Clone)]
pub struct Hybrid {
    /// Share of the budget given to recency, rounded (at least 1 when N > 1).
    pub recent_share: f32,
    /// The BM25 part.
    pub ubr: Ubr,
}

impl Default for Hybrid {
    fn default() -> Self {
        Hybrid {
            recent_share: 0.2,
            ubr: Ubr::default(),
        }
    }
}

impl Hybrid {
    fn picks<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        cache: &mut Postings<'_, 'a>,
        out: &mut Vec<Pick>,
    ) -> Result<()> {
        if q.n == 0 {
            return Ok(());
        }
        let k =
            ((q.n as f32 * self.recent_share).round() as usize).clamp(usize::from(q.n > 1), q.n);
        let start = out.len();
        pad_with_recent(history, q, k, &[], out);
        let runs = history.runs();
        let recent_seqs: Vec<Seq> = out[start..]
            .iter()
            .map(|p| runs[p.run].seg.seq(p.doc))
            .collect();
        let top = self.ubr.ranked(history, q, cache)?;
        let mut taken: Vec<(usize, DocId)> = Vec::new();
        for r in &top {
            if out.len() - start >= q.n {
                break;
            }
            if recent_seqs.contains(&r.seq) {
                continue;
            }
            taken.push(r.value);
            out.push(Pick {
                run: r.value.0,
                doc: r.value.1,
                score: r.score,
            });
        }
        // Pad: everything retrieved so far is excluded by (run, doc).
        taken.extend(docs_of(history, &recent_seqs));
        let rest = q.n - (out.len() - start);
        pad_with_recent(history, q, rest, &taken, out);
        Ok(())
    }
}

impl RetrievalStrategy for Hybrid {
    fn name(&self) -> &'static str {
        StrategyKind::Hybrid.as_str()
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
        ubr_batch(&self.ubr, history, queries, |q, cache, out| {
            self.picks(history, q, cache, out)
        })
    }
}

/// The (run, doc) of behaviors given by seq.
fn docs_of(history: &History<'_>, seqs: &[Seq]) -> Vec<(usize, DocId)> {
    let mut v = Vec::with_capacity(seqs.len());
    for (ri, run) in history.runs().iter().enumerate() {
        for &s in seqs {
            if let Some(doc) = run.doc_of_seq(s) {
                v.push((ri, doc));
            }
        }
    }
    v
}
