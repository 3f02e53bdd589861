//! `sim-soft`: SIM's soft search (Pi et al., "Search-based User Interest
//! Modeling with Lifelong Sequential Behavior Data for Click-Through Rate
//! Prediction", CIKM 2020, section 4.1): the N behaviors whose item
//! embedding has the largest inner product with the target's.
//!
//! Exact top N over the whole eligible history (no approximate index), in
//! two steps:
//!
//! 1. **Bound.** Each run's docs are read in doc order from the segment's
//!    int8 copies of their vectors ([`SoftBlocks`], a quarter of the f32
//!    bytes, sequential), eight at a time ([`crate::cpu`]'s kernel), giving
//!    for each doc a lower and an upper bound of its exact inner product
//!    ([`hindsight_embeddings::quantized`] derives them). A doc whose upper
//!    bound is below the N-th largest lower bound of the eligible docs seen
//!    so far cannot be among the N best and is dropped.
//! 2. **Rescore.** The docs left (N plus those whose bounds overlap the
//!    cut: a few dozen at 50k behaviors with dimension 32) are scored with
//!    the f32 [`dot`] of their full vectors and kept in a [`TopN`] by
//!    (score, seq), so ties go to the newer behavior. Their rows are
//!    located first and then prefetched a few ahead (they lie in the
//!    store's item order, not the history's), and a one-run history breaks
//!    ties by doc id, which is seq order within a run.
//!
//! The result is exactly the full-precision scan's (the property tests
//! compare with brute force). The target's vector is its stored row, or
//! the vector of its features for an item the store does not hold.

use std::sync::Arc;

use hindsight_embeddings::{
    dot, Embeddings, QuantizedQuery, SegmentCodes, SoftBlocks, BLOCK_DOCS,
};
use hindsight_index::{DocId, History, Run};

use super::{
    admits, embeddings_of, for_each_tile, materialize, needs_ts_check, newness, BatchBuilder, Make,
    Pick, StrategyKind,
};
use crate::{
    BatchRetrieved, Query, Result, RetrievalContext, RetrievalStrategy, Retrieved, TopN,
};

/// Docs per tile of a batch's shared pass (a multiple of [`BLOCK_DOCS`]).
const TILE_DOCS: DocId = 512;

/// How many survivors ahead of the one rescored the row is prefetched.
const PREFETCH: usize = 8;

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

/// The N-th largest of the lower bounds offered, kept cheaply: values are
/// appended, and every time `2N` are held the N largest are selected
/// (`select_nth_unstable`, linear) and the N-th becomes the cut, so the
/// cut lags behind the exact N-th largest by at most N offers (a lower
/// cut only keeps a few more docs for the rescoring: never a wrong
/// result) at a constant cost per offer, where a heap paid a logarithm
/// and a branch miss each.
struct LowerCut {
    values: Vec<f32>,
    n: usize,
    cut: f32,
}

impl LowerCut {
    fn new(n: usize) -> LowerCut {
        LowerCut {
            values: Vec::with_capacity(2 * n + 1),
            n,
            cut: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, lower: f32) -> f32 {
        if lower > self.cut {
            self.values.push(lower);
            if self.values.len() >= 2 * self.n {
                self.settle();
            }
        }
        self.cut
    }

    /// Brings the cut to the exact N-th largest value offered (once N
    /// have been).
    fn settle(&mut self) {
        if self.n == 0 || self.values.len() < self.n {
            return;
        }
        let n = self.n;
        self.values
            .select_nth_unstable_by(n - 1, |a, b| b.total_cmp(a));
        self.values.truncate(n);
        self.cut = self.values[n - 1];
    }
}

/// Step 1's state: the cut and the docs not excluded.
struct Survivors {
    lowers: LowerCut,
    /// (upper bound, run, doc) of the docs whose upper bound reached the
    /// cut when they were seen (the cut rises: filtered again at the end,
    /// compacted on the way).
    kept: Vec<(f32, usize, DocId)>,
    compact_at: usize,
}

impl Survivors {
    fn new(n: usize) -> Survivors {
        Survivors {
            lowers: LowerCut::new(n),
            kept: Vec::with_capacity(2 * n + 64),
            compact_at: 8 * n + 1024,
        }
    }

    /// A lower bound of the N-th largest exact score among the docs seen
    /// (`-inf` before N docs).
    fn cut(&self) -> f32 {
        self.lowers.cut
    }

    fn keep(&mut self, (lower, upper): (f32, f32), ri: usize, doc: DocId) -> f32 {
        self.kept.push((upper, ri, doc));
        let cut = self.lowers.offer(lower);
        if self.kept.len() >= self.compact_at {
            self.kept.retain(|k| k.0 >= cut);
            self.compact_at = self.compact_at.max(2 * self.kept.len());
        }
        cut
    }
}

/// One query's pass: its quantised target, survivors and cut.
struct Pass<'q> {
    q: &'q Query<'q>,
    t: Vec<f32>,
    qq: QuantizedQuery,
    plain: bool,
    check_ts: bool,
    survivors: Survivors,
    cut: f32,
}

impl SimSoft {
    fn begin<'q>(&self, history: &History<'_>, q: &'q Query<'q>) -> Pass<'q> {
        let store = self.emb.store();
        let t = store.target_vector(q.target).into_owned();
        let check_ts = needs_ts_check(history, q);
        Pass {
            q,
            qq: QuantizedQuery::new(&t, store.dim().div_ceil(4).max(1)),
            t,
            plain: !check_ts && q.filter.is_empty(),
            check_ts,
            survivors: Survivors::new(q.n),
            cut: f32::NEG_INFINITY,
        }
    }

    /// Step 1 over docs `range` of run `ri`.
    fn bound(&self, pass: &mut Pass<'_>, ri: usize, run: &Run<'_>, blocks: &SoftBlocks, range: (DocId, DocId)) {
        let e = pass.qq.err * blocks.max_norm();
        let Pass {
            q,
            qq,
            plain,
            check_ts,
            survivors,
            cut,
            ..
        } = pass;
        *cut = crate::cpu::soft_scan(blocks, qq, e, range, *cut, &mut |doc, acc| {
            if !*plain && !admits(run.seg, doc, q, *check_ts) {
                return survivors.cut();
            }
            let scale = blocks.block_scales(doc as usize / BLOCK_DOCS)[doc as usize % BLOCK_DOCS];
            survivors.keep(qq.bounds(acc, scale, e), ri, doc)
        });
    }

    /// Step 2: the exact top N of the survivors, best first.
    fn rescore(&self, pass: Pass<'_>, runs: &[Run<'_>], codes: &[Arc<SegmentCodes>]) -> Vec<Pick> {
        let store = self.emb.store();
        let Pass {
            q,
            t,
            mut survivors,
            cut,
            ..
        } = pass;
        survivors.lowers.settle();
        let cut = cut.max(survivors.cut());
        survivors.kept.retain(|k| k.0 >= cut);
        let kept = &survivors.kept;
        // Rows are read in the store's random order: find every
        // survivor's row first, then ask for each row (all its cache
        // lines) a few survivors ahead of the one scored (the two steps
        // were not timed apart from the session's other changes).
        let vectors: Vec<&[f32]> = kept
            .iter()
            .map(|&(_, ri, doc)| codes[ri].vector(store, doc))
            .collect();
        let mut top: TopN<(usize, DocId)> = TopN::new(q.n);
        for (i, (&(_, ri, doc), v)) in kept.iter().zip(&vectors).enumerate() {
            if let Some(ahead) = vectors.get(i + PREFETCH) {
                crate::cpu::prefetch_slice(ahead);
            }
            top.offer(dot(&t, v), newness(runs, ri, doc), (ri, doc));
        }
        top.into_sorted_vec()
            .into_iter()
            .map(|r| Pick {
                run: r.value.0,
                doc: r.value.1,
                score: r.score,
            })
            .collect()
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
        let runs = history.runs();
        let codes: Vec<Arc<SegmentCodes>> = runs.iter().map(|r| self.emb.segment(r.seg)).collect();
        let mut pass = self.begin(history, q);
        for (ri, run) in runs.iter().enumerate() {
            let end = run.bound(&q.as_of, history.ts_monotonic());
            self.bound(&mut pass, ri, run, codes[ri].soft(self.emb.store()), (run.start, end));
        }
        materialize(history, &self.rescore(pass, runs, &codes), out);
        Ok(())
    }

    /// The candidates' passes go over the history together, a tile of
    /// [`TILE_DOCS`] docs at a time (16 KB of int8 vectors at dimension
    /// 32, in L1 while every candidate bounds it), so the history is read
    /// from memory once per request rather than once per candidate; each
    /// candidate's result is exactly its own `retrieve`'s.
    fn retrieve_batch(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        let runs = history.runs();
        let codes: Vec<Arc<SegmentCodes>> = runs.iter().map(|r| self.emb.segment(r.seg)).collect();
        let mut passes: Vec<Pass<'_>> = queries.iter().map(|q| self.begin(history, q)).collect();
        for (ri, run) in runs.iter().enumerate() {
            let blocks = codes[ri].soft(self.emb.store());
            let tiles = (TILE_DOCS, BLOCK_DOCS as DocId);
            for_each_tile(history, run, queries, tiles, |qi, range| {
                self.bound(&mut passes[qi], ri, run, blocks, range);
            });
        }
        let mut b = BatchBuilder::new(history, queries.len());
        for (qi, pass) in passes.into_iter().enumerate() {
            if pass.q.n > 0 {
                let picks = self.rescore(pass, runs, &codes);
                b.set(qi, &picks);
            }
        }
        Ok(b.out)
    }
}
