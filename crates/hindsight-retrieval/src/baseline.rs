//! The naive tantivy query, kept as the baseline of the benchmarks.
//!
//! This is how retrieval is usually first written with tantivy: a boolean
//! query `Must(user) + Should(category) + Should(item)` with a fast-field
//! filter on the as-of point and `TopDocs`. Beside a `Must` clause the
//! `Should` clauses are optional, so it matches and scores every behavior
//! of the user and fills the top N with non-matches when few match; and
//! the filter opens its fast-field column on every search. The strategies
//! of this crate read the user's own run of the index instead.

use hindsight_core::{feature_key, AsOf, FeatureKind, Target};
use hindsight_index::schema::user_seq_key;
use hindsight_index::tantivy::collector::{FilterCollector, TopDocs};
use hindsight_index::tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use hindsight_index::tantivy::schema::IndexRecordOption;
use hindsight_index::tantivy::{DocAddress, Term};
use hindsight_index::Snapshot;

use crate::Result;

/// Runs the naive boolean query; returns (score, doc address) pairs.
pub fn naive_boolean(
    snapshot: &Snapshot,
    user: u64,
    target: &Target,
    n: usize,
    as_of: AsOf,
) -> Result<Vec<(f32, DocAddress)>> {
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
    let upper = user_seq_key(user, as_of.seq.unwrap_or(hindsight_index::schema::MAX_SEQ));
    let collector = FilterCollector::new(
        "uk".to_owned(),
        move |uk: u64| uk < upper,
        TopDocs::with_limit(n.max(1)).order_by_score(),
    );
    Ok(snapshot.searcher().search(&query, &collector)?)
}
