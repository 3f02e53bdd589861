//! The naive tantivy query, kept as the baseline of the benchmarks.
//!
//! This is how retrieval is usually first written with tantivy: a boolean
//! query `Must(user) + Should(category) + Should(item)` with a fast-field
//! filter on the as-of point and `TopDocs`. Beside a `Must` clause the
//! `Should` clauses are optional, so it matches and scores every behavior
//! of the user and fills the top N with non-matches when few match; and
//! the filter opens its fast-field column on every search. The strategies
//! of `hindsight-retrieval` read the user's own run of the index instead.
//!
//! It lives in the index crate because it is written with tantivy queries,
//! and no other crate of the workspace uses tantivy.

use hindsight_core::{feature_key, AsOf, Behavior, FeatureKind, Target};
use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::Order;
use tantivy::Term;

use crate::schema::{names, user_seq_key, MAX_SEQ};
use crate::{DocId, Result, Snapshot};

/// A document the naive query found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineHit {
    /// tantivy's BM25 score of the boolean query.
    pub score: f32,
    /// The segment's position in [`Snapshot::segments`].
    pub segment: u32,
    /// The document in that segment.
    pub doc: DocId,
}

/// Runs the naive boolean query; returns the top `max(n, 1)` documents by
/// score.
pub fn naive_boolean(
    snapshot: &Snapshot,
    user: u64,
    target: &Target,
    n: usize,
    as_of: AsOf,
) -> Result<Vec<BaselineHit>> {
    let f = snapshot.fields();
    let term = |key: u64| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_u64(f.keys, key),
            IndexRecordOption::Basic,
        ))
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(TermQuery::new(
            Term::from_field_u64(f.user, user),
            IndexRecordOption::Basic,
        )),
    )];
    clauses.push((
        Occur::Should,
        term(feature_key(user, FeatureKind::Item, target.item_id)),
    ));
    for &c in &target.features.categories {
        clauses.push((
            Occur::Should,
            term(feature_key(user, FeatureKind::Category, c)),
        ));
    }
    let query = BooleanQuery::new(clauses);
    let upper = user_seq_key(user, as_of.seq.unwrap_or(MAX_SEQ));
    let collector = FilterCollector::new(
        names::UK.to_owned(),
        move |uk: u64| uk < upper,
        TopDocs::with_limit(n.max(1)).order_by_score(),
    );
    let hits = snapshot.searcher().search(&query, &collector)?;
    Ok(hits
        .into_iter()
        .map(|(score, addr)| BaselineHit {
            score,
            segment: addr.segment_ord,
            doc: addr.doc_id,
        })
        .collect())
}

/// The bare tantivy form of `sim-hard`'s lookup, the second baseline of
/// the benchmarks: the (user, category) terms of the target's categories
/// (`Should`), tantivy's `TopDocs` ordered by `uk` descending (newest
/// first) behind a `FilterCollector` on the as-of seq, then the fields of
/// the hits read from the snapshot's open columns. Returns at most `n`
/// behaviors sharing a category with the target, newest first (no
/// padding).
pub fn term_newest(
    snapshot: &Snapshot,
    user: u64,
    target: &Target,
    n: usize,
    as_of: AsOf,
) -> Result<Vec<Behavior>> {
    let f = snapshot.fields();
    let clauses: Vec<(Occur, Box<dyn Query>)> = target
        .features
        .categories
        .iter()
        .map(|&c| {
            let q: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_u64(f.keys, feature_key(user, FeatureKind::Category, c)),
                IndexRecordOption::Basic,
            ));
            (Occur::Should, q)
        })
        .collect();
    if clauses.is_empty() || n == 0 {
        return Ok(Vec::new());
    }
    let query = BooleanQuery::new(clauses);
    let upper = user_seq_key(user, as_of.seq.unwrap_or(MAX_SEQ));
    let collector = FilterCollector::new(
        names::UK.to_owned(),
        move |uk: u64| uk < upper,
        TopDocs::with_limit(n).order_by_fast_field::<u64>(names::UK, Order::Desc),
    );
    let hits = snapshot.searcher().search(&query, &collector)?;
    let segments = snapshot.segments();
    Ok(hits
        .into_iter()
        .map(|(_, addr)| segments[addr.segment_ord as usize].behavior_from_columns(addr.doc_id))
        .collect())
}

/// The same lookup as [`term_newest`] on tantivy's postings and columns
/// directly, all held open (what issue 12 measured as "bare tantivy,
/// columns held open"): in every segment the whole posting list of each of
/// the target's (user, category) keys, the docs before the as-of point (by
/// `uk` from the open column), the newest `n` over all segments, and their
/// fields from the open columns. None of hindsight's read path: no row
/// arrays, no in-memory key postings, no newest-first windows.
pub fn postings_newest(
    snapshot: &Snapshot,
    user: u64,
    target: &Target,
    n: usize,
    as_of: AsOf,
) -> Result<Vec<Behavior>> {
    let upper = user_seq_key(user, as_of.seq.unwrap_or(MAX_SEQ));
    let segments = snapshot.segments();
    let mut hits: Vec<(u64, usize, DocId)> = Vec::new();
    for (si, seg) in segments.iter().enumerate() {
        for &c in &target.features.categories {
            let Some(info) = seg.term_info(feature_key(user, FeatureKind::Category, c))? else {
                continue;
            };
            let mut postings = seg.postings_from(&info)?;
            let mut doc = tantivy::DocSet::doc(&postings);
            while doc != tantivy::TERMINATED {
                let uk = seg.uk_from_columns(doc);
                if uk < upper {
                    hits.push((uk, si, doc));
                }
                doc = tantivy::DocSet::advance(&mut postings);
            }
        }
    }
    hits.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
    hits.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    hits.truncate(n);
    Ok(hits
        .into_iter()
        .map(|(_, si, doc)| segments[si].behavior_from_columns(doc))
        .collect())
}
