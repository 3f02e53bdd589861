//! `eta`: ETA's retrieval (Chen et al., "End-to-End User Behavior Retrieval
//! in Click-Through Rate Prediction Model", 2021): the N behaviors whose
//! item's SimHash code is closest to the target's in Hamming distance,
//! ties to the newer behavior.
//!
//! The codes are `m`-bit SimHash signatures of the item embeddings
//! (random hyperplanes, `m = 64` by default; [`hindsight_embeddings::hash`]),
//! read by doc id from the per-segment arrays of [`Embeddings`]. Exact
//! top N in one pass over the eligible docs that neither sorts nor stores
//! the history: a doc is kept when its distance (`popcount(code ^
//! target)`) is at most the running cut-off `D`, and `D` drops as soon as
//! N kept docs are strictly closer than it (a doc at `D` can then never be
//! among the N). Docs go eight at a time where the CPU has AVX2
//! (`cpu::eta_scan`: eight xors, a nibble-table popcount and two compares
//! with `D`), and the eight are looked at one by one only when one is
//! within (after the first few hundred docs, rarely). The kept docs (N
//! plus those tied at the end's `D`) are then sorted by (distance, newer
//! first). Score: `m - distance` (the number of agreeing bits).

use std::cmp::Reverse;
use std::sync::Arc;

use hindsight_core::Seq;
use hindsight_embeddings::Embeddings;
use hindsight_index::{DocId, History, Run};

use super::{
    admits, embeddings_of, for_each_tile, materialize, needs_ts_check, BatchBuilder, Make, Pick,
    StrategyKind,
};
use crate::{BatchRetrieved, Query, Result, RetrievalContext, RetrievalStrategy, Retrieved};

/// The running cut-off of the scan and the docs kept under it.
struct Cut {
    /// Docs at a distance above this are not among the N closest.
    max: u32,
    /// How many kept docs are strictly closer than `max`.
    closer: usize,
    /// Kept docs by distance (index: distance).
    at: [u32; 65],
    /// (distance, run, doc) of the kept docs; some may be above `max`
    /// since it dropped (filtered at the end, compacted on the way).
    kept: Vec<(u32, usize, DocId)>,
    /// `kept`'s length at which it is next compacted (at least twice what
    /// survived the last compaction, so ties at the cut-off, which all
    /// survive, cost amortised constant time each).
    compact_at: usize,
    n: usize,
}

impl Cut {
    fn new(bits: u32, n: usize) -> Cut {
        Cut {
            max: bits,
            closer: 0,
            at: [0; 65],
            kept: Vec::with_capacity(2 * n + 16),
            compact_at: 8 * n + 1024,
            n,
        }
    }

    /// Keeps a doc at distance `d <= self.max`, then lowers the cut-off
    /// while N kept docs are strictly closer than it.
    #[inline]
    fn keep(&mut self, d: u32, ri: usize, doc: DocId) {
        self.kept.push((d, ri, doc));
        self.at[d as usize] += 1;
        if d < self.max {
            self.closer += 1;
            while self.closer >= self.n {
                self.max -= 1;
                self.closer -= self.at[self.max as usize] as usize;
            }
        }
        if self.kept.len() >= self.compact_at {
            let max = self.max;
            self.kept.retain(|k| k.0 <= max);
            self.compact_at = self.compact_at.max(2 * self.kept.len());
        }
    }
}

/// One query's pass: its target code and cut.
struct Pass<'q> {
    q: &'q Query<'q>,
    t: u64,
    plain: bool,
    check_ts: bool,
    cut: Cut,
}

impl<'q> Pass<'q> {
    fn new(emb: &Embeddings, history: &History<'_>, q: &'q Query<'q>) -> Pass<'q> {
        let store = emb.store();
        let check_ts = needs_ts_check(history, q);
        Pass {
            q,
            t: store.target_eta(q.target),
            plain: !check_ts && q.filter.is_empty(),
            check_ts,
            cut: Cut::new(store.eta_bits(), q.n),
        }
    }

    /// Offers every eligible doc of `codes` (docs `first..` of run `ri`)
    /// whose distance is within the cut-off (`cpu::eta_scan`
    /// compares eight codes at a time).
    fn scan(&mut self, ri: usize, run: &Run<'_>, first: DocId, codes: &[u64]) {
        let Pass {
            q,
            t,
            plain,
            check_ts,
            cut,
        } = self;
        crate::cpu::eta_scan(codes, *t, cut.max, &mut |i, d| {
            let doc = first + i as DocId;
            if *plain || admits(run.seg, doc, q, *check_ts) {
                cut.keep(d, ri, doc);
            }
            cut.max
        });
    }

    /// The N closest kept docs, closest first, newer first among ties.
    fn finish(self, runs: &[Run<'_>], bits: u32) -> Vec<Pick> {
        let max = self.cut.max;
        let mut kept: Vec<(u32, Seq, usize, DocId)> = self
            .cut
            .kept
            .into_iter()
            .filter(|k| k.0 <= max)
            .map(|(d, ri, doc)| (d, runs[ri].seg.seq(doc), ri, doc))
            .collect();
        kept.sort_unstable_by_key(|&(d, s, _, _)| (d, Reverse(s)));
        kept.truncate(self.q.n);
        kept.into_iter()
            .map(|(d, _, run, doc)| Pick {
                run,
                doc,
                score: (bits - d) as f32,
            })
            .collect()
    }
}

/// Codes per tile of a batch's shared pass (16 KB).
const TILE_DOCS: DocId = 2048;

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
        let runs = history.runs();
        let mut pass = Pass::new(&self.emb, history, q);
        for (ri, run) in runs.iter().enumerate() {
            let codes = self.emb.segment(run.seg);
            let end = run.bound(&q.as_of, history.ts_monotonic());
            pass.scan(ri, run, run.start, &codes.eta()[run.start as usize..end as usize]);
        }
        let picks = pass.finish(runs, self.emb.store().eta_bits());
        materialize(history, &picks, out);
        Ok(())
    }

    /// The candidates' passes go over the history together, a tile of
    /// [`TILE_DOCS`] codes at a time (in L1 while every candidate scans
    /// it), so the codes are read from memory once per request rather
    /// than once per candidate; each result is exactly its own
    /// `retrieve`'s.
    fn retrieve_batch(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        let runs = history.runs();
        let mut passes: Vec<Pass<'_>> = queries
            .iter()
            .map(|q| Pass::new(&self.emb, history, q))
            .collect();
        for (ri, run) in runs.iter().enumerate() {
            let codes = self.emb.segment(run.seg);
            for_each_tile(history, run, queries, (TILE_DOCS, 1), |qi, (from, to)| {
                passes[qi].scan(ri, run, from, &codes.eta()[from as usize..to as usize]);
            });
        }
        let bits = self.emb.store().eta_bits();
        let mut b = BatchBuilder::new(history, queries.len());
        for (qi, pass) in passes.into_iter().enumerate() {
            if pass.q.n > 0 {
                b.set(qi, &pass.finish(runs, bits));
            }
        }
        Ok(b.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept docs within the final cut-off, closest first and newer
    /// (here: larger doc) first among ties, are exactly the brute-force
    /// top N, including through compactions (long runs, small N, many ties).
    #[test]
    fn the_cut_keeps_exactly_the_n_closest() {
        let mut state = 7u64;
        for case in 0..200u64 {
            state = hindsight_core::splitmix64(state ^ case);
            let n = 1 + (state % 40) as usize;
            let len = (state >> 8) as usize % 6000;
            // Few distinct distances in some cases (ties), all 65 in others.
            let spread = [1u64, 3, 65][(state >> 20) as usize % 3];
            let dists: Vec<u32> = (0..len as u64)
                .map(|i| (hindsight_core::splitmix64(state ^ i) % spread) as u32 + (65 - spread) as u32)
                .collect();
            let mut cut = Cut::new(64, n);
            for (doc, &d) in dists.iter().enumerate() {
                if d <= cut.max {
                    cut.keep(d, 0, doc as DocId);
                }
            }
            let max = cut.max;
            let mut got: Vec<(u32, DocId)> =
                cut.kept.iter().filter(|k| k.0 <= max).map(|k| (k.0, k.2)).collect();
            got.sort_unstable_by_key(|&(d, doc)| (d, Reverse(doc)));
            got.truncate(n);
            let mut want: Vec<(u32, DocId)> =
                dists.iter().enumerate().map(|(doc, &d)| (d, doc as DocId)).collect();
            want.sort_unstable_by_key(|&(d, doc)| (d, Reverse(doc)));
            want.truncate(n);
            assert_eq!(got, want, "case {case}: n {n}, {len} docs, spread {spread}");
        }
    }
}
