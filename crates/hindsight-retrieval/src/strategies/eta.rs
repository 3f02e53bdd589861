//! `eta`: ETA's retrieval (Chen et al., "End-to-End User Behavior Retrieval
//! in Click-Through Rate Prediction Model", 2021): the N behaviors whose
//! item's SimHash code is closest to the target's in Hamming distance,
//! ties to the newer behavior.
//!
//! The codes are `m`-bit SimHash signatures of the item embeddings
//! (random hyperplanes, `m = 64` by default; [`hindsight_embeddings::hash`]),
//! read by doc id from the per-segment arrays of [`Embeddings`]. Exact
//! top N in three passes over the eligible docs, none of which sorts the
//! history: the distances (`popcount(code ^ target)`, one byte each), a
//! histogram of them, and the collection of the docs closer than the
//! cut-off distance `D` (the smallest with at least N docs at or below it)
//! plus the newest of those at exactly `D`. Score: `m - distance` (the
//! number of agreeing bits).

use std::cmp::Reverse;
use std::sync::Arc;

use hindsight_core::Seq;
use hindsight_embeddings::Embeddings;
use hindsight_index::{DocId, History};

use super::{admits, embeddings_of, needs_ts_check, Make, StrategyKind};
use crate::{Query, Result, RetrievalContext, RetrievalStrategy, Retrieved};

/// Distance byte of a doc the query does not admit.
const EXCLUDED: u8 = u8::MAX;

/// ETA: top N by Hamming distance between SimHash codes, ties to newer.
#[derive(Debug, Clone)]
pub struct Eta {
    emb: Arc<Embeddings>,
}

impl Eta {
    /// ETA over `emb`.
    pub fn new(emb: Arc<Embeddings>) -> Self {
        Eta { emb }
    }
}

impl Make for Eta {
    const NEEDS_EMBEDDINGS: bool = true;
    fn make(ctx: &RetrievalContext) -> Result<Self> {
        Ok(Eta::new(embeddings_of(ctx, StrategyKind::Eta)?))
    }
}

impl RetrievalStrategy for Eta {
    fn name(&self) -> &'static str {
        StrategyKind::Eta.as_str()
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
        let bits = store.eta_bits();
        let t = store.target(q.target).eta;
        let check_ts = needs_ts_check(history, q);
        let plain = !check_ts && q.filter.is_empty();
        let runs = history.runs();
        // Pass 1 and 2: distances of every eligible doc, and their histogram.
        let mut spans: Vec<(usize, DocId, usize)> = Vec::with_capacity(runs.len());
        let mut dist: Vec<u8> = Vec::new();
        let mut hist = [0u32; 256];
        for (ri, run) in runs.iter().enumerate() {
            let codes = self.emb.segment(run.seg);
            let end = run.bound(&q.as_of, history.ts_monotonic());
            let off = dist.len();
            dist.extend(
                codes.eta()[run.start as usize..end as usize]
                    .iter()
                    .map(|&c| (c ^ t).count_ones() as u8),
            );
            if !plain {
                for (i, d) in dist[off..].iter_mut().enumerate() {
                    if !admits(run.seg, run.start + i as DocId, q, check_ts) {
                        *d = EXCLUDED;
                    }
                }
            }
            // Four partial histograms: consecutive equal distances (they
            // cluster around m / 2) do not wait on one counter.
            let mut part = [[0u32; 256]; 4];
            let mut quads = dist[off..].chunks_exact(4);
            for q4 in &mut quads {
                part[0][q4[0] as usize] += 1;
                part[1][q4[1] as usize] += 1;
                part[2][q4[2] as usize] += 1;
                part[3][q4[3] as usize] += 1;
            }
            for &d in quads.remainder() {
                part[0][d as usize] += 1;
            }
            for (d, h) in hist.iter_mut().enumerate().take(bits as usize + 1) {
                *h += part[0][d] + part[1][d] + part[2][d] + part[3][d];
            }
            spans.push((ri, run.start, off));
        }
        // The cut-off: the smallest distance with at least N docs at or below.
        let mut below = 0usize;
        let mut cut = bits as usize;
        for (d, &c) in hist.iter().enumerate().take(bits as usize + 1) {
            if below + c as usize >= q.n {
                cut = d;
                break;
            }
            below += c as usize;
        }
        let total_at_most_cut = below + hist[cut] as usize;
        // Pass 3: the docs below the cut-off, and the newest at it.
        let mut kept: Vec<(u8, Seq, usize, DocId)> = Vec::with_capacity(q.n.min(total_at_most_cut));
        let mut ties: Vec<(Seq, usize, DocId)> = Vec::new();
        let cut = cut as u8;
        for (k, &(ri, start, off)) in spans.iter().enumerate() {
            let len = spans.get(k + 1).map_or(dist.len(), |s| s.2) - off;
            let seg = runs[ri].seg;
            for (i, &d) in dist[off..off + len].iter().enumerate() {
                if d < cut {
                    let doc = start + i as DocId;
                    kept.push((d, seg.seq(doc), ri, doc));
                } else if d == cut {
                    let doc = start + i as DocId;
                    ties.push((seg.seq(doc), ri, doc));
                }
            }
        }
        let room = q.n - kept.len().min(q.n);
        if ties.len() > room {
            if room > 0 {
                ties.select_nth_unstable_by_key(room - 1, |t| Reverse(t.0));
            }
            ties.truncate(room);
        }
        kept.extend(ties.into_iter().map(|(s, ri, doc)| (cut, s, ri, doc)));
        kept.sort_unstable_by_key(|&(d, s, _, _)| (d, Reverse(s)));
        kept.truncate(q.n);
        for (d, _, ri, doc) in kept {
            out.push(Retrieved {
                behavior: runs[ri].seg.behavior(doc),
                score: (bits - u32::from(d)) as f32,
            });
        }
        Ok(())
    }
}
