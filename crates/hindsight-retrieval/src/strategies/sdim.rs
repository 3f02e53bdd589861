//! `sdim`: SDIM's hash-based sampling (Cao et al., "Sampling Is All You
//! Need on Modeling Long-Term User Behaviors for CTR Prediction", CIKM
//! 2022): the behaviors whose item's hash signature collides with the
//! target's in at least one of the rounds, newest first, up to N.
//!
//! A signature is `R` rounds of `B`-bit SimHash buckets of the item
//! embedding (4 x 6 by default), packed in one `u64` per doc in the
//! per-segment arrays of [`Embeddings`]; the number of rounds in which a
//! behavior's bucket equals the target's is a few word operations
//! ([`SdimLayout::collisions`](hindsight_embeddings::SdimLayout::collisions))
//! and is the behavior's score. Each run is read newest first from its
//! as-of bound and stops at N collisions, so the cost follows how far back
//! the N newest colliding behaviors lie. SDIM aggregates only the
//! colliding behaviors: fewer than N collide means fewer than N are
//! returned (no padding).

use std::cmp::Reverse;
use std::sync::Arc;

use hindsight_core::Seq;
use hindsight_embeddings::{Embeddings, SdimLayout};
use hindsight_index::{DocId, History};

use super::{admits, embeddings_of, needs_ts_check, Make, StrategyKind};
use crate::{Query, Result, RetrievalContext, RetrievalStrategy, Retrieved};

crate::cpu::avx2_dispatch! {
    /// Each run newest first from its as-of bound, up to its N newest
    /// colliding docs into `cands` (compiled with POPCNT where the CPU has
    /// it: the collision count is a popcount).
    #[allow(clippy::too_many_arguments)]
    fn scan(
        emb: &Embeddings,
        history: &History<'_>,
        q: &Query<'_>,
        layout: SdimLayout,
        t: u64,
        plain: bool,
        check_ts: bool,
        cands: &mut Vec<(Seq, u32, usize, DocId)>,
    ) {
        let runs = history.runs();
            for (ri, run) in runs.iter().enumerate() {
                let codes = emb.segment(run.seg);
                let end = run.bound(&q.as_of, history.ts_monotonic());
                let sigs = &codes.sdim()[run.start as usize..end as usize];
                let mut found = 0;
                // Newest first, eight signatures at a time; a chunk is looked
                // into only when one of them collides.
                let mut chunks = sigs.rchunks_exact(8);
                let mut top = sigs.len();
                let mut visit = |i: usize, c: u32, found: &mut usize| {
                    let doc = run.start + i as DocId;
                    if plain || admits(run.seg, doc, q, check_ts) {
                        cands.push((run.seg.seq(doc), c, ri, doc));
                        *found += 1;
                    }
                };
                'run: {
                    for chunk in &mut chunks {
                        top -= 8;
                        let mut c = [0u32; 8];
                        for (c, &sig) in c.iter_mut().zip(chunk) {
                            *c = layout.collisions(sig, t);
                        }
                        if c.iter().all(|&c| c == 0) {
                            continue;
                        }
                        for j in (0..8).rev() {
                            if c[j] != 0 {
                                visit(top + j, c[j], &mut found);
                                if found == q.n {
                                    break 'run;
                                }
                            }
                        }
                    }
                    for (i, &sig) in chunks.remainder().iter().enumerate().rev() {
                        let c = layout.collisions(sig, t);
                        if c != 0 {
                            visit(i, c, &mut found);
                            if found == q.n {
                                break 'run;
                            }
                        }
                    }
                }
            }
    }
}

/// SDIM: colliding behaviors, newest first (score: colliding rounds).
#[derive(Debug, Clone)]
pub struct Sdim {
    emb: Arc<Embeddings>,
}

impl Sdim {
    /// SDIM over `emb`.
    pub fn new(emb: Arc<Embeddings>) -> Self {
        Sdim { emb }
    }
}

impl Make for Sdim {
    const NEEDS_EMBEDDINGS: bool = true;
    fn make(ctx: &RetrievalContext) -> Result<Self> {
        Ok(Sdim::new(embeddings_of(ctx, StrategyKind::Sdim)?))
    }
}

impl RetrievalStrategy for Sdim {
    fn name(&self) -> &'static str {
        StrategyKind::Sdim.as_str()
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
        let layout = store.sdim_layout();
        let t = store.target_sdim(q.target);
        let check_ts = needs_ts_check(history, q);
        let plain = !check_ts && q.filter.is_empty();
        let runs = history.runs();
        // Per run, its newest N colliding docs; then the newest N of all.
        let mut cands: Vec<(Seq, u32, usize, DocId)> = Vec::new();
        scan(&self.emb, history, q, layout, t, plain, check_ts, &mut cands);
        if runs.len() > 1 {
            cands.sort_unstable_by_key(|c| Reverse(c.0));
            cands.truncate(q.n);
        }
        for (_, c, ri, doc) in cands {
            out.push(Retrieved {
                behavior: runs[ri].seg.behavior(doc),
                score: c as f32,
            });
        }
        Ok(())
    }
}
