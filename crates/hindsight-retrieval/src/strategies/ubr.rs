//! `ubr`: UBR4CTR-style retrieval (Qin et al., "User Behavior Retrieval
//! for Click-Through Rate Prediction", SIGIR 2020, section 3.2): the
//! target's features form a query against the user's feature-keyed
//! behaviors, ranked by BM25 ([`Bm25Weight`]), top N ([`TopN`]).
//!
//! The search is exact with early termination, in two phases:
//!
//! 1. **rare terms** (short postings: the item, an unusual category) are
//!    read in full (`Search::read_rare`);
//! 2. **frequent terms** (the user's everyday categories) are read newest
//!    first in windows ([`NewestMatches`]), and as in MaxScore a term stops
//!    being read once a behavior matching only it and the other
//!    non-essential terms could at best tie the heap's minimum, and lose
//!    the tie by being older (`Search::read_frequent`).
//!
//! The cost then follows N and the rare terms, not how often the user
//! touched a category. A property test checks the result equals reading
//! every posting in full.

use hindsight_core::FeatureKind;
use hindsight_index::{
    DocId, History, KeyPostings, NewestMatches, Run, SegmentView, PREFETCH_STRETCH,
};
use serde::{Deserialize, Serialize};

use super::{
    admits, materialize, needs_ts_check, pad_with_recent, BatchBuilder, Memo, Pick, Postings,
    StrategyKind,
};
use crate::bm25::{Bm25Params, Bm25Weight, QueryTerm};
use crate::topn::{Ranked, TopN};
use crate::{BatchRetrieved, Query, Result, RetrievalStrategy, Retrieved};

/// Settings of the UBR4CTR-style BM25 retrieval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UbrConfig {
    /// BM25 term-frequency saturation (term frequencies are 1 here, so it
    /// only shapes length normalization).
    pub k1: f32,
    /// BM25 length normalization (length = feature keys of a behavior).
    pub b: f32,
    /// Weight of the item-id term.
    pub item_weight: f32,
    /// Weight of each category (genre) term.
    pub category_weight: f32,
    /// Weight of each tag term.
    pub tag_weight: f32,
    /// At most this many of the target's tags go into the query.
    pub max_tags: usize,
    /// Additive bonus per behavior type id for behaviors that matched at
    /// least one term (e.g. favour purchases over page views).
    pub behavior_type_bonus: Vec<f32>,
    /// Fill up to N with the most recent unmatched behaviors (score 0), so
    /// that every strategy spends the same budget.
    pub pad_with_recent: bool,
    /// Terms matching at most this many of the user's behaviors are read in
    /// full, the others newest first with early termination (see
    /// [`Ubr`]). `None`: `2 N + 32`. Results are the same either way; only
    /// the cost changes.
    pub rare_term_limit: Option<u64>,
}

impl Default for UbrConfig {
    fn default() -> Self {
        UbrConfig {
            k1: 1.2,
            b: 0.75,
            item_weight: 1.0,
            category_weight: 1.0,
            tag_weight: 0.5,
            max_tags: 16,
            behavior_type_bonus: Vec::new(),
            pad_with_recent: true,
            rare_term_limit: None,
        }
    }
}

/// UBR4CTR-style retrieval: BM25 of the target's features (item,
/// categories, tags) against the user's behaviors, top N, ties broken
/// towards newer behaviors. Behaviors on the target item itself form a
/// tier above all others (BM25 length normalization alone could rank a
/// long-featured exact match below a short category-only one), ranked
/// among themselves by the BM25 of their other features.
///
/// The document collection of the BM25 statistics is the user's own
/// history: a feature the user touches all the time weighs little, a rare
/// one (this exact item) a lot. UBR4CTR learns which features enter the
/// query with a self-attentive selector; here all of the target's features
/// do, with fixed weights ([`UbrConfig`]).
#[derive(Debug, Clone, Default)]
pub struct Ubr {
    /// Settings.
    pub config: UbrConfig,
}

/// Where a ranked behavior is: (run index, doc).
pub(crate) type Hit = Ranked<(usize, DocId)>;

impl Ubr {
    /// The query terms.
    fn terms(&self, q: &Query<'_>) -> Vec<QueryTerm> {
        let c = &self.config;
        let f = &q.target.features;
        let term = |kind, value, weight| QueryTerm {
            kind,
            value,
            weight,
        };
        let mut terms = vec![term(FeatureKind::Item, q.target.item_id, c.item_weight)];
        terms.extend(
            f.categories
                .iter()
                .map(|&v| term(FeatureKind::Category, v, c.category_weight)),
        );
        terms.extend(
            f.tags
                .iter()
                .take(c.max_tags)
                .map(|&v| term(FeatureKind::Tag, v, c.tag_weight)),
        );
        terms.retain(|t| t.weight != 0.0);
        terms
    }

    /// The top-N matches, best first (score desc, newest first among
    /// equals).
    pub(crate) fn ranked<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        cache: &mut Postings<'_, 'a>,
    ) -> Result<Vec<Hit>> {
        let terms = self.terms(q);
        if terms.is_empty() || q.n == 0 || history.runs().is_empty() {
            return Ok(Vec::new());
        }
        let postings = TermPostings::open(history, &terms, cache)?;
        self.ranked_with(history, q, terms, &postings)
    }

    /// [`ranked`](Self::ranked) once the terms' postings are open.
    fn ranked_with<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        terms: Vec<QueryTerm>,
        postings: &TermPostings<'a>,
    ) -> Result<Vec<Hit>> {
        let c = &self.config;
        let weight = Bm25Weight::new(
            terms,
            &postings.doc_freqs,
            history.len(),
            history.avg_feature_keys(),
            history.min_feature_keys(),
            Bm25Params { k1: c.k1, b: c.b },
            &c.behavior_type_bonus,
        );
        let rare_limit = c.rare_term_limit.unwrap_or(2 * q.n as u64 + 32);
        let (rare, frequent): (Vec<usize>, Vec<usize>) =
            (0..weight.terms().len()).partition(|&t| postings.doc_freqs[t] <= rare_limit);
        let mut search = Search::new(history, q, &weight, postings);
        let seen = search.read_rare(&rare)?;
        search.read_frequent(&frequent, &seen)?;
        Ok(search.top.into_sorted_vec())
    }
}

/// The postings of each query term in each of the user's runs, and each
/// term's frequency in the user's history.
struct TermPostings<'a> {
    /// `per_run[run][term]`.
    per_run: Vec<Vec<Option<KeyPostings<'a>>>>,
    doc_freqs: Vec<u64>,
}

impl<'a> TermPostings<'a> {
    fn open(
        history: &History<'a>,
        terms: &[QueryTerm],
        cache: &mut Postings<'_, 'a>,
    ) -> Result<Self> {
        let mut doc_freqs = vec![0u64; terms.len()];
        let mut per_run = Vec::with_capacity(history.runs().len());
        for ri in 0..history.runs().len() {
            let mut per_term = Vec::with_capacity(terms.len());
            for (t, term) in terms.iter().enumerate() {
                let p = cache.get(ri, term.kind, term.value)?;
                if let Some(p) = &p {
                    doc_freqs[t] += p.doc_freq() as u64;
                }
                per_term.push(p);
            }
            per_run.push(per_term);
        }
        Ok(TermPostings { per_run, doc_freqs })
    }
}

/// One ranking: the heap and what scoring a behavior needs.
struct Search<'s, 'a> {
    runs: &'s [Run<'a>],
    q: &'s Query<'s>,
    weight: &'s Bm25Weight,
    postings: &'s TermPostings<'a>,
    /// Per run, the first doc at or after the as-of point.
    bounds: Vec<DocId>,
    check_ts: bool,
    top: TopN<(usize, DocId)>,
}

impl<'s, 'a> Search<'s, 'a> {
    fn new(
        history: &'s History<'a>,
        q: &'s Query<'s>,
        weight: &'s Bm25Weight,
        postings: &'s TermPostings<'a>,
    ) -> Self {
        let runs = history.runs();
        Search {
            runs,
            q,
            weight,
            postings,
            bounds: runs
                .iter()
                .map(|r| r.bound(&q.as_of, history.ts_monotonic()))
                .collect(),
            check_ts: needs_ts_check(history, q),
            top: TopN::new(q.n),
        }
    }

    /// The BM25 score of a behavior (`None`: it holds none of the terms,
    /// which only a key collision brings here).
    fn score(&self, seg: &SegmentView, doc: DocId) -> Option<f32> {
        let has = |t: &QueryTerm| match t.kind {
            FeatureKind::Item => seg.item(doc) == t.value,
            FeatureKind::Category => seg.categories(doc).any(|v| v == t.value),
            FeatureKind::Tag => seg.tags(doc).any(|v| v == t.value),
            FeatureKind::BehaviorType => false,
        };
        self.weight
            .score(has, seg.key_count(doc), seg.behavior_type(doc))
    }

    /// Scores an eligible behavior and offers it to the heap.
    fn consider(&mut self, ri: usize, doc: DocId) {
        let seg = self.runs[ri].seg;
        if admits(seg, doc, self.q, self.check_ts) {
            if let Some(score) = self.score(seg, doc) {
                self.top.offer(score, seg.seq(doc), (ri, doc));
            }
        }
    }

    /// Phase 1: every behavior holding a rare term, read in full and
    /// considered; returns them as sorted (run, doc).
    fn read_rare(&mut self, rare: &[usize]) -> Result<Vec<(usize, DocId)>> {
        let mut seen: Vec<(usize, DocId)> = Vec::new();
        for (ri, run) in self.runs.iter().enumerate() {
            for &t in rare {
                if let Some(p) = &self.postings.per_run[ri][t] {
                    seen.extend(p.docs(run.start, self.bounds[ri])?.map(|doc| (ri, doc)));
                }
            }
        }
        seen.sort_unstable();
        seen.dedup();
        let mut docs = Vec::with_capacity(PREFETCH_STRETCH);
        for stretch in seen.chunks(PREFETCH_STRETCH) {
            docs.clear();
            docs.extend(stretch.iter().map(|&(_, doc)| doc));
            // One stretch may span two runs; the hint is for the first's
            // segment (the usual case is one run).
            self.runs[stretch[0].0].seg.prefetch(&docs);
            for &(ri, doc) in stretch {
                self.consider(ri, doc);
            }
        }
        Ok(seen)
    }

    /// How many of `by_bound` (frequent terms by ascending
    /// [`Bm25Weight::max_score`]) are non-essential: a behavior holding
    /// only them scores at most the heap's minimum, so it cannot get in.
    fn non_essential(&self, by_bound: &[usize]) -> usize {
        let Some(min) = self.top.threshold() else {
            return 0;
        };
        let mut cum = self.weight.max_bonus();
        let mut k = 0;
        while k < by_bound.len() && cum + self.weight.max_score(by_bound[k]) <= min {
            cum += self.weight.max_score(by_bound[k]);
            k += 1;
        }
        k
    }

    /// Phase 2: the frequent terms' behaviors not seen in phase 1, newest
    /// run first and newest first within a run, in windows of the
    /// essential terms' postings, until no term is essential.
    fn read_frequent(&mut self, frequent: &[usize], seen: &[(usize, DocId)]) -> Result<()> {
        let mut by_bound = frequent.to_vec();
        by_bound.sort_unstable_by(|&a, &b| {
            self.weight
                .max_score(a)
                .total_cmp(&self.weight.max_score(b))
        });
        let postings = self.postings;
        let mut window: Vec<DocId> = Vec::new();
        'runs: for ri in (0..self.runs.len()).rev() {
            let mut reader = NewestMatches::new(self.runs[ri], self.bounds[ri]);
            while !reader.is_exhausted() {
                let first = self.non_essential(&by_bound);
                if first >= by_bound.len() {
                    break 'runs;
                }
                let essential: Vec<&KeyPostings<'a>> = by_bound[first..]
                    .iter()
                    .filter_map(|&t| postings.per_run[ri][t].as_ref())
                    .collect();
                if !reader.next_window(&essential, self.q.n, &mut window)? {
                    continue 'runs;
                }
                let seg = self.runs[ri].seg;
                for stretch in window.chunks(PREFETCH_STRETCH) {
                    seg.prefetch(stretch);
                    for &doc in stretch {
                        if seen.binary_search(&(ri, doc)).is_err() {
                            self.consider(ri, doc);
                            // Within a window too: once no term is
                            // essential, no behavior left (all older than
                            // the heap's) can get in.
                            if self.top.threshold().is_some()
                                && self.non_essential(&by_bound) >= by_bound.len()
                            {
                                break 'runs;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Ubr {
    /// The picks of one query: the ranking, padded with recent behaviors
    /// when configured.
    fn picks<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        cache: &mut Postings<'_, 'a>,
        out: &mut Vec<Pick>,
    ) -> Result<()> {
        let top = self.ranked(history, q, cache)?;
        let start = out.len();
        out.extend(top.iter().map(|r| Pick {
            run: r.value.0,
            doc: r.value.1,
            score: r.score,
        }));
        if self.config.pad_with_recent {
            let taken: Vec<(usize, DocId)> = top.iter().map(|r| r.value).collect();
            let rest = q.n - (out.len() - start);
            pad_with_recent(history, q, rest, &taken, out);
        }
        Ok(())
    }

    /// Whether no behavior of the history is on the target item (its term
    /// has no postings in any run): then the result depends only on the
    /// target's features, the as-of point and the filter.
    pub(crate) fn item_absent<'a>(
        &self,
        history: &History<'a>,
        q: &Query<'_>,
        cache: &mut Postings<'_, 'a>,
    ) -> Result<bool> {
        if self.config.item_weight == 0.0 {
            return Ok(true);
        }
        for ri in 0..history.runs().len() {
            if cache.get(ri, FeatureKind::Item, q.target.item_id)?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A batch for `ubr` or `hybrid`: `picks` runs one query; candidates on an
/// item the user never touched and with the same features share a result.
pub(crate) fn ubr_batch<'a>(
    ubr: &Ubr,
    history: &History<'a>,
    queries: &[Query<'_>],
    mut picks: impl FnMut(&Query<'_>, &mut Postings<'_, 'a>, &mut Vec<Pick>) -> Result<()>,
) -> Result<BatchRetrieved> {
    let mut b = BatchBuilder::new(history, queries.len());
    let mut cache = Postings::shared(history);
    let mut memo = Memo::new(true);
    let mut one = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        let absent = ubr.item_absent(history, q, &mut cache)?;
        if absent {
            if let Some(p) = memo.get(queries, qi) {
                b.set(qi, p);
                continue;
            }
        }
        one.clear();
        picks(q, &mut cache, &mut one)?;
        b.set(qi, &one);
        if absent {
            memo.put(queries, qi, one.clone());
        }
    }
    Ok(b.out)
}

impl RetrievalStrategy for Ubr {
    fn name(&self) -> &'static str {
        StrategyKind::Ubr.as_str()
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
        ubr_batch(self, history, queries, |q, cache, out| {
            self.picks(history, q, cache, out)
        })
    }
}
