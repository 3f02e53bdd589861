//! `sim-soft`: SIM's soft search (Pi et al., "Search-based User Interest
//! Modeling with Lifelong Sequential Behavior Data for Click-Through Rate
//! Prediction", CIKM 2020, section 4.1): the N behaviors whose item
//! embedding has the largest inner product with the target's.
//!
//! Exact top N over the whole eligible history (no approximate index):
//! each run's documents are read by doc id from the per-segment arrays of
//! [`Embeddings`] (a row per doc, the vector by row), scored with
//! [`dot`], and kept in a [`TopN`] heap keyed by (score, seq), so ties go
//! to the newer behavior. A behavior's `seq` is read only when its score
//! reaches the heap's threshold. The scan runs compiled for AVX2 where the
//! CPU has it ([`crate::cpu`]; same results). The target's vector is its stored row,
//! or the vector of its features for an item the store does not hold.

use std::sync::Arc;

use hindsight_embeddings::{dot, Embeddings};
use hindsight_index::{DocId, History};

use super::{admits, embeddings_of, needs_ts_check, Make, StrategyKind};
use crate::{Query, Result, RetrievalContext, RetrievalStrategy, Retrieved, TopN};

/// How many docs ahead of the one scored the scan prefetches the vector:
/// rows are read in a random order of the store, so without it each doc
/// waits on a cache miss.
const PREFETCH: usize = 16;

crate::cpu::avx2_dispatch! {
    /// Scores every eligible doc into `top` (compiled for AVX2 where the
    /// CPU has it: `dot` runs 8 floats a time; same results).
    fn scan(
        emb: &Embeddings,
        history: &History<'_>,
        q: &Query<'_>,
        t: &[f32],
        plain: bool,
        check_ts: bool,
        top: &mut TopN<(usize, DocId)>,
    ) {
        let store = emb.store();
        for (ri, run) in history.runs().iter().enumerate() {
            let codes = emb.segment(run.seg);
            let end = run.bound(&q.as_of, history.ts_monotonic());
            let mut threshold = top.threshold();
            for doc in run.start..end {
                if let Some(ahead) = doc.checked_add(PREFETCH as DocId).filter(|&a| a < end) {
                    crate::cpu::prefetch(codes.vector(store, ahead).as_ptr());
                }
                let s = dot(t, codes.vector(store, doc));
                if threshold.is_some_and(|m| s < m) {
                    continue;
                }
                if !plain && !admits(run.seg, doc, q, check_ts) {
                    continue;
                }
                if top.offer(s, run.seg.seq(doc), (ri, doc)) {
                    threshold = top.threshold();
                }
            }
        }
    }
}

/// SIM soft search: top N by inner product of item embeddings (score: the
/// inner product).
#[derive(Debug, Clone)]
pub struct SimSoft {
    emb: Arc<Embeddings>,
}

impl SimSoft {
    /// Soft search over `emb`.
    pub fn new(emb: Arc<Embeddings>) -> Self {
        SimSoft { emb }
    }
}

impl Make for SimSoft {
    const NEEDS_EMBEDDINGS: bool = true;
    fn make(ctx: &RetrievalContext) -> Result<Self> {
        Ok(SimSoft::new(embeddings_of(ctx, StrategyKind::SimSoft)?))
    }
}

impl RetrievalStrategy for SimSoft {
    fn name(&self) -> &'static str {
        StrategyKind::SimSoft.as_str()
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        if q.n == 0 {
            return Ok(());
        }
        let store = self.emb.store();
        let target = store.target(q.target);
        let t = &target.vector[..];
        let check_ts = needs_ts_check(history, q);
        let plain = !check_ts && q.filter.is_empty();
        let runs = history.runs();
        let mut top: TopN<(usize, DocId)> = TopN::new(q.n);
        scan(&self.emb, history, q, t, plain, check_ts, &mut top);
        for r in top.into_sorted_vec() {
            let (ri, doc) = r.value;
            out.push(Retrieved {
                behavior: runs[ri].seg.behavior(doc),
                score: r.score,
            });
        }
        Ok(())
    }
}
