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
//! among the N). `D` starts from a pilot: the distances of 2,048
//! eligible docs sampled in 32 stretches of 64 over the history give the
//! smallest `D` that about 4N docs of the whole history are expected to
//! be within; if fewer than N turn out to be, the scan is done again from
//! `D = m` (so the pilot only saves work, never changes a result; with
//! 4N the sample would have to hold about four times its expected share
//! of the N closest docs: by a Poisson estimate, under 0.1% of queries at
//! 50k behaviors and N = 50). It cuts the docs looked at one by one from
//! about 490 to about 4N. The scan reads the codes bit-sliced
//! (`cpu::eta_planes_scan`: 256 docs a step, their 64 bit planes added by
//! carry-save adders and compared with `D` bit-sliced), and looks at docs
//! one by one only where one is within `D`. The kept docs (N plus those
//! tied at the end's `D`) are then sorted by (distance, newer
//! first). Score: `m - distance` (the number of agreeing bits).

use std::cmp::Reverse;
use std::sync::Arc;

use hindsight_core::Seq;
use hindsight_embeddings::{Embeddings, SegmentCodes, PLANE_DOCS};
use hindsight_index::{DocId, History, Run};

use super::{
    admits, embeddings_of, for_each_tile, materialize, needs_ts_check, newness, BatchBuilder, Make,
    Pick, StrategyKind,
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
    fn new(max: u32, n: usize) -> Cut {
        Cut {
            max,
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

    /// Whether fewer than N docs were within a cut-off that started below
    /// `bits`: docs above it may then belong to the N closest, and the
    /// scan must be redone from `bits`.
    fn short(&self, start: u32, bits: u32) -> bool {
        start < bits && self.closer + (self.at[self.max as usize] as usize) < self.n
    }
}

/// Docs the pilot samples (in stretches of [`PILOT_STRETCH`]).
const PILOT_DOCS: usize = 2048;
const PILOT_STRETCH: usize = 64;

/// The pilot's starting cut-off for a scan of `spans` (each run's
/// eligible codes): the smallest distance within which about `4 n` docs
/// of the whole are expected, from the distances of [`PILOT_DOCS`] docs
/// sampled in evenly spaced stretches; `bits` (no pilot) when the
/// history is too short for a sample to pay.
fn pilot(spans: &[&[u64]], t: u64, n: usize, bits: u32) -> u32 {
    let total: usize = spans.iter().map(|s| s.len()).sum();
    if n == 0 || total < 8 * PILOT_DOCS || total < 8 * n {
        return bits;
    }
    let stretches = PILOT_DOCS / PILOT_STRETCH;
    let step = total / stretches;
    let mut hist = [0u32; 65];
    let (mut span, mut base) = (0usize, 0usize);
    for k in 0..stretches {
        let at = k * step;
        while at >= base + spans[span].len() {
            base += spans[span].len();
            span += 1;
        }
        let s = spans[span];
        let from = at - base;
        crate::cpu::eta_histogram(&s[from..(from + PILOT_STRETCH).min(s.len())], t, &mut hist);
    }
    let sampled: u32 = hist.iter().sum();
    // Expected docs of the whole within `d`: cum(d) * total / sampled.
    let want = 4 * n as u64 * sampled as u64;
    let mut cum = 0u64;
    for (d, &h) in hist.iter().enumerate().take(bits as usize) {
        cum += u64::from(h);
        if cum * total as u64 >= want && cum > 0 {
            return d as u32;
        }
    }
    bits
}

/// One query's pass: its target code and cut.
struct Pass<'q> {
    q: &'q Query<'q>,
    planes: crate::cpu::PlaneTarget,
    plain: bool,
    check_ts: bool,
    /// The cut-off the scan started from (the pilot's).
    start: u32,
    cut: Cut,
}

impl<'q> Pass<'q> {
    /// The pass of `q`, its cut-off started by the pilot over `spans` (the
    /// eligible codes of each run) when `q` has no filter; `None` for
    /// `spans` starts it at `m`.
    fn new(emb: &Embeddings, history: &History<'_>, q: &'q Query<'q>, spans: Option<&[&[u64]]>) -> Pass<'q> {
        let store = emb.store();
        let check_ts = needs_ts_check(history, q);
        let plain = !check_ts && q.filter.is_empty();
        let t = store.target_eta(q.target);
        let bits = store.eta_bits();
        let start = match spans {
            // A filter or a timestamp check drops docs the sample cannot
            // see: no pilot.
            Some(spans) if plain => pilot(spans, t, q.n, bits),
            _ => bits,
        };
        Pass {
            q,
            planes: crate::cpu::PlaneTarget::new(t),
            plain,
            check_ts,
            start,
            cut: Cut::new(start, q.n),
        }
    }

    /// Whether the pilot's cut-off was too tight (see [`Cut::short`]).
    fn short(&self, bits: u32) -> bool {
        self.cut.short(self.start, bits)
    }

    /// Offers every eligible doc of `range` (of run `ri`, whose segment's
    /// codes are `codes`) whose distance is within the cut-off
    /// (`cpu::eta_planes_scan`: 256 docs at a time from the bit planes).
    fn scan(&mut self, ri: usize, run: &Run<'_>, codes: &SegmentCodes, range: (DocId, DocId)) {
        let Pass {
            q,
            planes,
            plain,
            check_ts,
            cut,
            ..
        } = self;
        crate::cpu::eta_planes_scan(codes.eta_planes(), codes.eta(), planes, range, cut.max, &mut |doc, d| {
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
            .map(|(d, ri, doc)| (d, newness(runs, ri, doc), ri, doc))
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

/// Docs per tile of a batch's shared pass (16 KB of bit planes; a
/// multiple of [`PLANE_DOCS`]).
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

impl Eta {
    /// One query's pass over all of `spans` (each run's eligible codes,
    /// from `codes`), from the pilot's cut-off when `pilot`.
    fn whole_pass<'q>(
        &self,
        history: &History<'_>,
        q: &'q Query<'q>,
        codes: &[Arc<SegmentCodes>],
        spans: &[&[u64]],
        pilot: bool,
    ) -> Pass<'q> {
        let mut pass = Pass::new(&self.emb, history, q, pilot.then_some(spans));
        for (ri, run) in history.runs().iter().enumerate() {
            let range = (run.start, run.start + spans[ri].len() as DocId);
            pass.scan(ri, run, &codes[ri], range);
        }
        pass
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
        let codes: Vec<_> = runs.iter().map(|run| self.emb.segment(run.seg)).collect();
        let spans: Vec<&[u64]> = runs
            .iter()
            .zip(&codes)
            .map(|(run, c)| {
                let end = run.bound(&q.as_of, history.ts_monotonic());
                &c.eta()[run.start as usize..end as usize]
            })
            .collect();
        let bits = self.emb.store().eta_bits();
        let mut pass = self.whole_pass(history, q, &codes, &spans, true);
        if pass.short(bits) {
            pass = self.whole_pass(history, q, &codes, &spans, false);
        }
        let picks = pass.finish(runs, bits);
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
        let codes: Vec<_> = runs.iter().map(|run| self.emb.segment(run.seg)).collect();
        let spans_of = |q: &Query<'_>| -> Vec<&[u64]> {
            runs.iter()
                .zip(&codes)
                .map(|(run, c)| {
                    let end = run.bound(&q.as_of, history.ts_monotonic());
                    &c.eta()[run.start as usize..end as usize]
                })
                .collect()
        };
        let mut passes: Vec<Pass<'_>> = queries
            .iter()
            .map(|q| Pass::new(&self.emb, history, q, Some(&spans_of(q))))
            .collect();
        for (ri, run) in runs.iter().enumerate() {
            let codes = &codes[ri];
            for_each_tile(history, run, queries, (TILE_DOCS, PLANE_DOCS as DocId), |qi, range| {
                passes[qi].scan(ri, run, codes, range);
            });
        }
        let bits = self.emb.store().eta_bits();
        let mut b = BatchBuilder::new(history, queries.len());
        for (qi, mut pass) in passes.into_iter().enumerate() {
            if pass.q.n == 0 {
                continue;
            }
            if pass.short(bits) {
                // The pilot was too tight for this one: its own pass from `m`.
                let q = pass.q;
                pass = self.whole_pass(history, q, &codes, &spans_of(q), false);
            }
            b.set(qi, &pass.finish(runs, bits));
        }
        Ok(b.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan of `spans` as `retrieve` does it (pilot, then again from
    /// `bits` if short): (distance, span, index) of the N closest, closest
    /// first, later first among ties.
    fn pilot_scan(spans: &[&[u64]], t: u64, n: usize) -> (Vec<(u32, usize, DocId)>, bool) {
        let run = |start: u32| {
            let mut cut = Cut::new(start, n);
            for (si, codes) in spans.iter().enumerate() {
                let planes = hindsight_embeddings::transpose_codes(codes);
                let range = (0, codes.len() as DocId);
                let target = crate::cpu::PlaneTarget::new(t);
                crate::cpu::eta_planes_scan(&planes, codes, &target, range, cut.max, &mut |i, d| {
                    cut.keep(d, si, i);
                    cut.max
                });
            }
            cut
        };
        let start = pilot(spans, t, n, 64);
        let mut cut = run(start);
        let redone = cut.short(start, 64);
        if redone {
            cut = run(64);
        }
        let max = cut.max;
        let mut got: Vec<(u32, usize, DocId)> = cut.kept.into_iter().filter(|k| k.0 <= max).collect();
        got.sort_unstable_by_key(|&(d, si, i)| (d, Reverse((si, i))));
        got.truncate(n);
        (got, redone)
    }

    /// With the pilot, the scan still returns exactly the brute-force top
    /// N over histories long enough to be sampled: random codes, codes
    /// near the target, and an adversarial history whose sampled stretches
    /// are the only close codes (the pilot is then too tight and the scan
    /// is redone).
    #[test]
    fn the_pilot_never_changes_the_result() {
        let mut state = 11u64;
        let mut redone_seen = false;
        for case in 0..40u64 {
            state = hindsight_core::splitmix64(state ^ case);
            let n = [1usize, 10, 50, 300][case as usize % 4];
            let len = 20_000 + (state % 40_000) as usize;
            let t = hindsight_core::splitmix64(state ^ 99);
            let kind = case % 3;
            let mut codes: Vec<u64> = (0..len as u64)
                .map(|i| {
                    let r = hindsight_core::splitmix64(state ^ (i * 7 + 1));
                    match kind {
                        // Near the target: a few flipped bits.
                        1 => t ^ (r & hindsight_core::splitmix64(r) & hindsight_core::splitmix64(r ^ 5)),
                        _ => r,
                    }
                })
                .collect();
            if kind == 2 {
                // Close codes only where the pilot samples (stretch starts
                // are multiples of len / 64): it sees many, the whole has
                // fewer than N of them.
                let step = len / (PILOT_DOCS / PILOT_STRETCH);
                for k in 0..(PILOT_DOCS / PILOT_STRETCH) {
                    codes[k * step] = t ^ 1;
                }
            }
            let cut_at = len / 3;
            let spans: Vec<&[u64]> = vec![&codes[..cut_at], &codes[cut_at..]];
            let (got, redone) = pilot_scan(&spans, t, n);
            redone_seen |= redone;
            let mut want: Vec<(u32, usize, DocId)> = spans
                .iter()
                .enumerate()
                .flat_map(|(si, s)| s.iter().enumerate().map(move |(i, &c)| ((c ^ t).count_ones(), si, i as DocId)))
                .collect();
            want.sort_unstable_by_key(|&(d, si, i)| (d, Reverse((si, i))));
            want.truncate(n);
            assert_eq!(got, want, "case {case}: n {n}, {len} codes, kind {kind}");
        }
        assert!(redone_seen, "the adversarial histories must make the pilot too tight");
    }

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
