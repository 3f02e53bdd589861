//! The built-in strategies.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use hindsight_core::{feature_key, FeatureKind, Seq};
use hindsight_index::tantivy::postings::SegmentPostings;
use hindsight_index::tantivy::{DocId, DocSet, TERMINATED};
use hindsight_index::{History, SegmentView};
use serde::{Deserialize, Serialize};

use crate::{Query, Result, RetrievalStrategy, Retrieved};

/// Positions `postings` on its first doc `>= target`. (Tantivy's `seek`
/// requires `target >= doc()`, and a fresh posting list already sits on its
/// first doc, which may be past `target`.)
#[inline]
fn seek_at_least(postings: &mut SegmentPostings, target: DocId) -> DocId {
    let d = postings.doc();
    if d >= target {
        d
    } else {
        postings.seek(target)
    }
}

/// Whether a doc passes the query's filter and, when timestamps cannot be
/// binary-searched, the as-of timestamp.
#[inline]
fn admits(seg: &SegmentView, doc: DocId, q: &Query<'_>, check_ts: bool) -> bool {
    if check_ts || !q.filter.is_empty() {
        let ts = seg.timestamp(doc);
        if check_ts && q.as_of.timestamp.is_some_and(|t| ts >= t) {
            return false;
        }
        if !q.filter.is_empty() && !q.filter.admits(seg.behavior_type(doc), ts) {
            return false;
        }
    }
    true
}

fn needs_ts_check(history: &History<'_>, q: &Query<'_>) -> bool {
    q.as_of.timestamp.is_some() && !history.ts_monotonic()
}

/// Appends up to `need` of the newest eligible behaviors not in `taken`
/// (as (run, doc)), with score 0.
fn pad_with_recent(
    history: &History<'_>,
    q: &Query<'_>,
    need: usize,
    taken: &[(usize, DocId)],
    out: &mut Vec<Retrieved>,
) {
    if need == 0 {
        return;
    }
    let target_len = out.len() + need;
    let runs = history.runs();
    let stop_below = q.filter.since.filter(|_| history.ts_monotonic());
    history.for_each_newest_first(&q.as_of, |i, doc| {
        let seg = runs[i].seg;
        if stop_below.is_some_and(|s| seg.timestamp(doc) < s) {
            return false;
        }
        if !taken.contains(&(i, doc)) && admits(seg, doc, q, false) {
            out.push(Retrieved {
                behavior: seg.behavior(doc),
                score: 0.0,
            });
        }
        out.len() < target_len
    });
}

/// The N most recent behaviors before the as-of point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recent;

impl RetrievalStrategy for Recent {
    fn name(&self) -> &'static str {
        "recent"
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        pad_with_recent(history, q, q.n, &[], out);
        Ok(())
    }
}

/// The last `n` docs in `[lo, hi)` of a key's posting list that pass
/// `admit`, ascending. Reads only a window before `hi`, grown until it
/// holds `n` admitted docs, so the cost follows `n`, not the key's
/// frequency (SIM hard search needs only the newest matches).
fn tail_docs(
    seg: &SegmentView,
    key: u64,
    lo: DocId,
    hi: DocId,
    n: usize,
    admit: impl Fn(DocId) -> bool,
    out: &mut Vec<DocId>,
) -> Result<()> {
    if n == 0 || lo >= hi {
        return Ok(());
    }
    let Some(info) = seg.term_info(key)? else {
        return Ok(());
    };
    let df = info.doc_freq;
    // Expected gap between matches in the run, from the key's frequency
    // (in this segment the key belongs to this user alone).
    let span = (hi - lo) as u64;
    let density = (df as f64 / span.max(1) as f64).clamp(1e-6, 1.0);
    let mut window = ((n as f64 / density) * 1.5) as u64 + 64;
    let first = out.len();
    loop {
        let from = if window >= span {
            lo
        } else {
            hi - window as DocId
        };
        out.truncate(first);
        let mut postings = seg.postings_from(&info)?;
        let mut doc = seek_at_least(&mut postings, from);
        while doc != TERMINATED && doc < hi {
            if admit(doc) {
                out.push(doc);
            }
            doc = postings.advance();
        }
        if out.len() - first >= n || from == lo {
            let excess = (out.len() - first).saturating_sub(n);
            out.drain(first..first + excess);
            return Ok(());
        }
        window = window.saturating_mul(4);
    }
}

/// SIM hard search (Pi et al., CIKM 2020, section 4.1): the behaviors
/// sharing a category with the target (any of its genres), newest first,
/// padded with the most recent other behaviors when fewer than N match.
/// Matches score 1, padding 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimHard;

impl RetrievalStrategy for SimHard {
    fn name(&self) -> &'static str {
        "sim-hard"
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        let check_ts = needs_ts_check(history, q);
        let cats = &q.target.features.categories;
        let mut cands: Vec<(Seq, usize, DocId)> = Vec::new();
        let mut docs = Vec::new();
        for (ri, run) in history.runs().iter().enumerate() {
            let bound = run.bound(&q.as_of, history.ts_monotonic());
            docs.clear();
            for &c in cats {
                let key = feature_key(history.user, FeatureKind::Category, c);
                tail_docs(
                    run.seg,
                    key,
                    run.start,
                    bound,
                    q.n,
                    |d| admits(run.seg, d, q, check_ts),
                    &mut docs,
                )?;
            }
            if cats.len() > 1 {
                docs.sort_unstable();
                docs.dedup();
            }
            let keep = docs.len().saturating_sub(q.n);
            cands.extend(docs[keep..].iter().map(|&d| (run.seg.seq(d), ri, d)));
        }
        cands.sort_unstable_by_key(|c| Reverse(c.0));
        cands.truncate(q.n);
        let runs = history.runs();
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

/// UBR4CTR-style retrieval (Qin et al., SIGIR 2020, section 3.2): the
/// target's features (item, categories, tags) form a query against the
/// user's feature-keyed behaviors, ranked by BM25, top N, ties broken
/// towards newer behaviors. Behaviors on the target item itself form a
/// tier above all others (BM25 length normalization alone could rank a
/// long-featured exact match below a short category-only one), ranked
/// among themselves by the BM25 of their other features.
///
/// The document collection of the BM25 statistics is the user's own
/// history: a feature the user touches all the time weighs little, a rare
/// one (this exact item) a lot. Term frequencies are 1 (a behavior has a
/// feature or not), so BM25 reduces to the sum of the matched terms'
/// weighted IDFs times the length normalization
/// `(k1 + 1) / (1 + k1 (1 - b + b dl / avgdl))`. UBR4CTR learns which
/// features enter the query with a self-attentive selector; here all of the
/// target's features do, with fixed weights ([`UbrConfig`]).
#[derive(Debug, Clone, Default)]
pub struct Ubr {
    /// Settings.
    pub config: UbrConfig,
}

#[derive(Clone, Copy, PartialEq)]
struct Ranked {
    score: f32,
    seq: Seq,
    run: usize,
    doc: DocId,
}

impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(self.seq.cmp(&other.seq))
    }
}

impl Ubr {
    /// The query terms: (key kind, value, weight).
    fn terms(&self, q: &Query<'_>) -> Vec<(FeatureKind, u64, f32)> {
        let c = &self.config;
        let f = &q.target.features;
        let mut terms = vec![(FeatureKind::Item, q.target.item_id, c.item_weight)];
        terms.extend(
            f.categories
                .iter()
                .map(|&v| (FeatureKind::Category, v, c.category_weight)),
        );
        terms.extend(
            f.tags
                .iter()
                .take(c.max_tags)
                .map(|&v| (FeatureKind::Tag, v, c.tag_weight)),
        );
        terms.retain(|t| t.2 != 0.0);
        terms
    }

    /// The top-N matches (score desc, newest first among equals).
    ///
    /// Exact, with early termination. Terms whose postings are short
    /// ("rare": the item, an unusual category) are read in full. Frequent
    /// terms (the user's everyday categories) are read newest first, in
    /// windows before the as-of bound, and reading stops as soon as the
    /// heap holds N behaviors scoring at least what any older behavior
    /// matching only frequent terms could score: such a behavior can at
    /// best tie, and ties go to newer behaviors. The cost then follows N
    /// and the rare terms, not how often the user touched the category.
    fn ranked(&self, history: &History<'_>, q: &Query<'_>, avg_dl: f32) -> Result<Vec<Ranked>> {
        let c = &self.config;
        let runs = history.runs();
        let terms = self.terms(q);
        if terms.is_empty() || q.n == 0 || runs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<u64> = terms
            .iter()
            .map(|&(k, v, _)| feature_key(history.user, k, v))
            .collect();
        // Term infos per (run, term), and each term's frequency in the history.
        let mut infos = Vec::with_capacity(runs.len());
        let mut df = vec![0u64; terms.len()];
        for run in runs {
            let mut per_term = Vec::with_capacity(terms.len());
            for (t, &key) in keys.iter().enumerate() {
                let info = run.seg.term_info(key)?;
                if let Some(i) = &info {
                    df[t] += i.doc_freq as u64;
                }
                per_term.push(info);
            }
            infos.push(per_term);
        }
        let n_docs = history.len() as f32;
        let idf_weights: Vec<f32> = terms
            .iter()
            .zip(&df)
            .map(|(&(_, _, w), &d)| {
                let d = d as f32;
                w * (1.0 + (n_docs - d + 0.5) / (d + 0.5)).ln()
            })
            .collect();
        let avg_dl = avg_dl.max(1e-3);
        let norm = |dl: f32| {
            if c.b == 0.0 {
                1.0
            } else {
                (c.k1 + 1.0) / (1.0 + c.k1 * (1.0 - c.b + c.b * dl / avg_dl))
            }
        };
        // No behavior is shorter than the index's shortest one.
        let max_norm = norm(history.min_feature_keys());
        let max_bonus = c.behavior_type_bonus.iter().copied().fold(0.0f32, f32::max);
        let is_item = |t: usize| terms[t].0 == FeatureKind::Item;
        // An exact item match is a tier of its own: it adds more than any
        // behavior can score without it, so it always ranks first.
        let features_max: f32 = (0..terms.len())
            .filter(|&t| !is_item(t))
            .map(|t| idf_weights[t])
            .sum::<f32>()
            * max_norm;
        let item_tier = features_max
            + max_bonus
            + (0..terms.len())
                .filter(|&t| is_item(t))
                .map(|t| idf_weights[t])
                .sum::<f32>();
        // The most a behavior can score from term t (for the bound below).
        let best_from: Vec<f32> = (0..terms.len())
            .map(|t| {
                if is_item(t) {
                    item_tier
                } else {
                    idf_weights[t] * max_norm
                }
            })
            .collect();
        let check_ts = needs_ts_check(history, q);
        let score_of = |seg: &SegmentView, doc: DocId| -> Option<f32> {
            let (mut features, mut item_hit) = (0.0, false);
            for (t, &(kind, value, _)) in terms.iter().enumerate() {
                match kind {
                    FeatureKind::Item => item_hit |= seg.item(doc) == value,
                    FeatureKind::Category => {
                        if seg.categories(doc).any(|v| v == value) {
                            features += idf_weights[t];
                        }
                    }
                    FeatureKind::Tag => {
                        if seg.tags(doc).any(|v| v == value) {
                            features += idf_weights[t];
                        }
                    }
                    FeatureKind::BehaviorType => {}
                }
            }
            if features <= 0.0 && !item_hit {
                // Only a key collision brings a behavior without any of the
                // target's features here.
                return None;
            }
            let mut score = features;
            if c.b != 0.0 && features > 0.0 {
                score *= norm(2.0 + seg.feature_count(doc) as f32);
            }
            if item_hit {
                score += item_tier;
            }
            if !c.behavior_type_bonus.is_empty() {
                score += c
                    .behavior_type_bonus
                    .get(seg.behavior_type(doc) as usize)
                    .copied()
                    .unwrap_or(0.0);
            }
            Some(score)
        };
        let mut heap: BinaryHeap<Reverse<Ranked>> = BinaryHeap::with_capacity(q.n + 1);
        let offer = |r: Ranked, heap: &mut BinaryHeap<Reverse<Ranked>>| {
            if heap.len() < q.n {
                heap.push(Reverse(r));
            } else if heap.peek().is_some_and(|Reverse(min)| r > *min) {
                heap.pop();
                heap.push(Reverse(r));
            }
        };

        // Rare terms: read in full.
        let rare_limit = c.rare_term_limit.unwrap_or(2 * q.n as u64 + 32);
        let rare: Vec<usize> = (0..terms.len()).filter(|&t| df[t] <= rare_limit).collect();
        let frequent: Vec<usize> = (0..terms.len()).filter(|&t| df[t] > rare_limit).collect();
        let mut seen: Vec<(usize, DocId)> = Vec::new();
        let bounds: Vec<DocId> = runs
            .iter()
            .map(|r| r.bound(&q.as_of, history.ts_monotonic()))
            .collect();
        for (ri, run) in runs.iter().enumerate() {
            for &t in &rare {
                let Some(info) = &infos[ri][t] else { continue };
                let mut p = run.seg.postings_from(info)?;
                let mut doc = seek_at_least(&mut p, run.start);
                while doc < bounds[ri] {
                    seen.push((ri, doc));
                    doc = p.advance();
                }
            }
        }
        seen.sort_unstable();
        seen.dedup();
        // Scores an eligible behavior and offers it to the heap.
        let consider = |ri: usize, doc: DocId, heap: &mut BinaryHeap<Reverse<Ranked>>| {
            let seg = runs[ri].seg;
            if admits(seg, doc, q, check_ts) {
                if let Some(score) = score_of(seg, doc) {
                    let seq = seg.seq(doc);
                    offer(
                        Ranked {
                            score,
                            seq,
                            run: ri,
                            doc,
                        },
                        heap,
                    );
                }
            }
        };
        for &(ri, doc) in &seen {
            consider(ri, doc, &mut heap);
        }

        // Frequent terms: newest first, in growing windows. As in MaxScore,
        // a term is non-essential once a behavior matching only it and the
        // other non-essential terms can at best tie the heap's minimum (and
        // lose the tie, being older): its postings are no longer read, since
        // scores come from the behavior's own features. Reading stops when
        // no term is essential.
        let mut by_bound = frequent.clone();
        by_bound.sort_unstable_by(|&a, &b| best_from[a].total_cmp(&best_from[b]));
        let essential_from = |heap: &BinaryHeap<Reverse<Ranked>>| -> usize {
            let Some(Reverse(min)) = heap.peek().filter(|_| heap.len() >= q.n) else {
                return 0;
            };
            let mut cum = max_bonus;
            let mut k = 0;
            while k < by_bound.len() && cum + best_from[by_bound[k]] <= min.score {
                cum += best_from[by_bound[k]];
                k += 1;
            }
            k
        };
        let mut window_docs: Vec<DocId> = Vec::new();
        'runs: for (ri, run) in runs.iter().enumerate().rev() {
            let seg = run.seg;
            let mut hi = bounds[ri];
            let mut window = 0u64;
            let mut essential_len = usize::MAX;
            while hi > run.start {
                let first = essential_from(&heap);
                if first >= by_bound.len() {
                    break 'runs;
                }
                let essential = &by_bound[first..];
                if essential.len() != essential_len {
                    // Size windows for about N matches of the essential terms.
                    essential_len = essential.len();
                    let matches: u64 = essential
                        .iter()
                        .filter_map(|&t| infos[ri][t].as_ref())
                        .map(|i| i.doc_freq as u64)
                        .sum();
                    if matches == 0 {
                        continue 'runs;
                    }
                    let density = (matches as f64 / run.len().max(1) as f64).clamp(1e-6, 1.0);
                    window = window.max(((q.n as f64 / density) * 1.5) as u64 + 64);
                }
                let lo = if (hi - run.start) as u64 <= window {
                    run.start
                } else {
                    hi - window as DocId
                };
                window_docs.clear();
                for &t in essential {
                    let Some(info) = &infos[ri][t] else { continue };
                    let mut p = seg.postings_from(info)?;
                    let mut doc = seek_at_least(&mut p, lo);
                    while doc < hi {
                        window_docs.push(doc);
                        doc = p.advance();
                    }
                }
                if essential.len() > 1 {
                    window_docs.sort_unstable();
                    window_docs.dedup();
                }
                for &doc in window_docs.iter().rev() {
                    if seen.binary_search(&(ri, doc)).is_err() {
                        consider(ri, doc, &mut heap);
                    }
                }
                hi = lo;
                window = window.saturating_mul(2);
            }
        }
        let mut top: Vec<Ranked> = heap.into_iter().map(|Reverse(r)| r).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        Ok(top)
    }
}

impl RetrievalStrategy for Ubr {
    fn name(&self) -> &'static str {
        "ubr"
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        let top = self.ranked(history, q, history.avg_feature_keys())?;
        let runs = history.runs();
        let taken: Vec<(usize, DocId)> = top.iter().map(|r| (r.run, r.doc)).collect();
        let start = out.len();
        out.extend(top.iter().map(|r| Retrieved {
            behavior: runs[r.run].seg.behavior(r.doc),
            score: r.score,
        }));
        if self.config.pad_with_recent {
            let rest = q.n - (out.len() - start);
            pad_with_recent(history, q, rest, &taken, out);
        }
        Ok(())
    }
}

/// A few of the most recent behaviors (short-term interest), the rest of
/// the budget by [`Ubr`] (long-term interest matching the target), in that
/// order; padded with recent ones if UBR matches too few.
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

impl RetrievalStrategy for Hybrid {
    fn name(&self) -> &'static str {
        "hybrid"
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
        let k =
            ((q.n as f32 * self.recent_share).round() as usize).clamp(usize::from(q.n > 1), q.n);
        let start = out.len();
        pad_with_recent(history, q, k, &[], out);
        let recent_seqs: Vec<Seq> = out[start..].iter().map(|r| r.behavior.seq).collect();
        let top = self.ubr.ranked(history, q, history.avg_feature_keys())?;
        let runs = history.runs();
        let mut taken: Vec<(usize, DocId)> = Vec::new();
        for r in &top {
            if out.len() - start >= q.n {
                break;
            }
            if recent_seqs.contains(&r.seq) {
                continue;
            }
            taken.push((r.run, r.doc));
            out.push(Retrieved {
                behavior: runs[r.run].seg.behavior(r.doc),
                score: r.score,
            });
        }
        // Pad: everything retrieved so far is excluded by (run, doc).
        let recent_docs = history_docs_of(history, &recent_seqs);
        taken.extend(recent_docs);
        let rest = q.n - (out.len() - start);
        pad_with_recent(history, q, rest, &taken, out);
        Ok(())
    }
}

/// The (run, doc) of behaviors given by seq.
fn history_docs_of(history: &History<'_>, seqs: &[Seq]) -> Vec<(usize, DocId)> {
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
