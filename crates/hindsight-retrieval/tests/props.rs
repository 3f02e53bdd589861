//! Property tests of the retrieval invariants on generated logs, appended
//! in several batches (so histories span several segments, with late
//! behaviors in some cases). Each retrieval is checked against a brute-force
//! reference computed from the user's full history: recent, sim-hard and
//! the shape of ubr on untagged logs; ubr's exact ranking (BM25 of every
//! eligible behavior) and hybrid on tagged ones.

use std::collections::HashSet;

use hindsight_core::{AsOf, Behavior, BehaviorFilter, FeatureKind, ItemFeatures, Target};
use hindsight_index::schema::key_count;
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use hindsight_retrieval::bm25::{Bm25Params, QueryTerm};
use hindsight_retrieval::{
    Bm25Weight, Query, RetrievalStrategy, Retriever, StrategyKind, Ubr, UbrConfig,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    batches: Vec<Vec<NewBehavior>>,
    queries: Vec<(u64, Target, usize, AsOf, BehaviorFilter)>,
}

fn behavior() -> impl Strategy<Value = NewBehavior> {
    (
        1u64..5,
        0u64..30,
        prop::collection::vec(0u64..6, 1..3),
        0u8..4,
        0i64..400,
    )
        .prop_map(|(user, item, cats, btype, ts)| NewBehavior {
            user_id: user,
            // Items determine one of their categories, as in real logs.
            item_id: item,
            features: ItemFeatures::with_categories(cats.into_iter().chain([item % 6]).collect()),
            behavior_type: btype,
            timestamp: ts,
        })
}

fn case() -> impl Strategy<Value = Case> {
    let batches = prop::collection::vec(prop::collection::vec(behavior(), 0..60), 1..4);
    let query = (
        0u64..6,
        0u64..32,
        prop::collection::vec(0u64..7, 0..3),
        0usize..25,
        prop::option::of(0u32..120),
        prop::option::of(0i64..420),
        prop::option::of(0u8..4),
        prop::option::of(0i64..300),
    )
        .prop_map(|(user, item, cats, n, seq, ts, btype, since)| {
            let target = Target {
                item_id: item,
                features: ItemFeatures::with_categories(cats),
            };
            let filter = BehaviorFilter {
                behavior_types: btype.into_iter().collect(),
                since,
                until: None,
            };
            (user, target, n, AsOf { seq, timestamp: ts }, filter)
        });
    (batches, prop::collection::vec(query, 40))
        .prop_map(|(batches, queries)| Case { batches, queries })
}

fn eligible(h: &[Behavior], as_of: &AsOf, f: &BehaviorFilter) -> Vec<Behavior> {
    // Newest first.
    h.iter()
        .rev()
        .filter(|b| as_of.admits(b.seq, b.timestamp) && f.admits(b.behavior_type, b.timestamp))
        .cloned()
        .collect()
}

fn shares_category(b: &Behavior, t: &Target) -> bool {
    b.features
        .categories
        .iter()
        .any(|c| t.features.categories.contains(c))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn retrieval_invariants(case in case()) {
        let dir = tempfile::tempdir().unwrap();
        let m = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path(), &m).unwrap();
        let mut appended = 0;
        for batch in &case.batches {
            if !batch.is_empty() {
                let r = index.append(batch).unwrap();
                appended += r.added;
            }
        }
        let snap = index.snapshot();
        prop_assert_eq!(snap.num_behaviors(), appended);
        let retrievers: Vec<Retriever> = StrategyKind::ALL.iter().filter(|k| !k.needs_embeddings()).map(|k| Retriever::new(*k)).collect();
        // UBR with every term read in full, and with every term read newest
        // first with early termination: the same results.
        let ubr_with = |limit| Retriever::with_strategy(Box::new(Ubr { config: UbrConfig { rare_term_limit: Some(limit), ..UbrConfig::default() } }));
        let (ubr_full, ubr_windowed) = (ubr_with(u64::MAX), ubr_with(0));
        for (user, target, n, as_of, filter) in &case.queries {
            let mut full = snap.history(*user).newest(&AsOf::NOW, usize::MAX);
            full.reverse();
            for (i, b) in full.iter().enumerate() {
                prop_assert_eq!(b.seq as usize, i, "seq is dense from 0");
            }
            let elig = eligible(&full, as_of, filter);
            let q = Query::new(target, *n).as_of(*as_of).filter(filter.clone());
            let full_hits = ubr_full.retrieve(&snap, *user, &q).unwrap();
            let windowed_hits = ubr_windowed.retrieve(&snap, *user, &q).unwrap();
            prop_assert_eq!(&full_hits, &windowed_hits, "early termination changed the result");
            for r in &retrievers {
                let hits = r.retrieve(&snap, *user, &q).unwrap();
                let name = r.name();
                // At most N, and exactly min(N, eligible): every strategy spends its budget.
                prop_assert_eq!(hits.len(), (*n).min(elig.len()), "{} count", name);
                let mut seen = HashSet::new();
                for h in &hits {
                    let b = &h.behavior;
                    prop_assert_eq!(b.user_id, *user);
                    prop_assert!(as_of.admits(b.seq, b.timestamp), "{} leaked seq {} ts {} past {:?}", name, b.seq, b.timestamp, as_of);
                    prop_assert!(filter.admits(b.behavior_type, b.timestamp), "{} ignored the filter", name);
                    prop_assert!(seen.insert(b.seq), "{} returned seq {} twice", name, b.seq);
                    prop_assert_eq!(b, &full[b.seq as usize]);
                }
                match name {
                    "recent" => {
                        let want: Vec<u32> = elig.iter().take(*n).map(|b| b.seq).collect();
                        let got: Vec<u32> = hits.iter().map(|h| h.behavior.seq).collect();
                        prop_assert_eq!(got, want);
                    }
                    "sim-hard" => {
                        let matching: Vec<u32> = elig.iter().filter(|b| shares_category(b, target)).take(*n).map(|b| b.seq).collect();
                        let got: Vec<u32> = hits.iter().take(matching.len()).map(|h| h.behavior.seq).collect();
                        prop_assert_eq!(&got, &matching, "sim-hard: newest category matches first");
                        for h in &hits[matching.len()..] {
                            prop_assert!(!shares_category(&h.behavior, target));
                        }
                    }
                    "ubr" => {
                        for w in hits.windows(2) {
                            prop_assert!(w[0].score >= w[1].score, "ubr scores not sorted");
                        }
                        // An exact item match outranks a behavior matching only categories.
                        let item_rank = hits.iter().position(|h| h.behavior.item_id == target.item_id);
                        let cat_only_rank = hits.iter().position(|h| h.behavior.item_id != target.item_id && shares_category(&h.behavior, target));
                        if let (Some(i), Some(c)) = (item_rank, cat_only_rank) {
                            prop_assert!(i < c, "item match at {} below category-only match at {}", i, c);
                        }
                        // Nothing matching is left out while a non-match is in.
                        let matches = |b: &Behavior| b.item_id == target.item_id || shares_category(b, target);
                        let n_match = elig.iter().filter(|b| matches(b)).count();
                        for (rank, h) in hits.iter().enumerate() {
                            prop_assert_eq!(matches(&h.behavior), rank < n_match.min(*n));
                        }
                    }
                    _ => {
                        // hybrid: the first k are the newest eligible ones.
                        let k = ((*n as f32 * 0.2).round() as usize).clamp(usize::from(*n > 1), *n);
                        let want: Vec<u32> = elig.iter().take(k.min(elig.len())).map(|b| b.seq).collect();
                        let got: Vec<u32> = hits.iter().take(want.len()).map(|h| h.behavior.seq).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }
    }
}

fn tagged_behavior() -> impl Strategy<Value = NewBehavior> {
    (
        1u64..4,
        0u64..30,
        prop::collection::vec(0u64..6, 1..3),
        prop::collection::vec(0u64..8, 0..4),
        0u8..4,
        0i64..400,
    )
        .prop_map(|(user, item, cats, tags, btype, ts)| NewBehavior {
            user_id: user,
            item_id: item,
            features: ItemFeatures {
                categories: cats.into_iter().chain([item % 6]).collect(),
                tags,
            },
            behavior_type: btype,
            timestamp: ts,
        })
}

type TaggedQuery = (u64, Target, usize, AsOf, BehaviorFilter);

fn tagged_case() -> impl Strategy<Value = (Vec<Vec<NewBehavior>>, Vec<TaggedQuery>)> {
    let batches = prop::collection::vec(prop::collection::vec(tagged_behavior(), 0..70), 1..4);
    let query = (
        1u64..4,
        0u64..32,
        prop::collection::vec(0u64..7, 0..3),
        prop::collection::vec(0u64..9, 0..3),
        0usize..25,
        prop::option::of(0u32..150),
        prop::option::of(0i64..420),
        prop::option::of(0u8..4),
    )
        .prop_map(|(user, item, categories, tags, n, seq, ts, btype)| {
            let target = Target {
                item_id: item,
                features: ItemFeatures { categories, tags },
            };
            let filter = BehaviorFilter {
                behavior_types: btype.into_iter().collect(),
                since: None,
                until: None,
            };
            (user, target, n, AsOf { seq, timestamp: ts }, filter)
        });
    (batches, prop::collection::vec(query, 30))
}

/// The query terms `Ubr` builds from a target (the item, each category,
/// at most `max_tags` tags; zero weights dropped).
fn ubr_terms(t: &Target, c: &UbrConfig) -> Vec<QueryTerm> {
    let term = |kind, value, weight| QueryTerm {
        kind,
        value,
        weight,
    };
    let mut terms = vec![term(FeatureKind::Item, t.item_id, c.item_weight)];
    terms.extend(
        t.features
            .categories
            .iter()
            .map(|&v| term(FeatureKind::Category, v, c.category_weight)),
    );
    terms.extend(
        t.features
            .tags
            .iter()
            .take(c.max_tags)
            .map(|&v| term(FeatureKind::Tag, v, c.tag_weight)),
    );
    terms.retain(|t| t.weight != 0.0);
    terms
}

fn holds(b: &Behavior, t: &QueryTerm) -> bool {
    match t.kind {
        FeatureKind::Item => b.item_id == t.value,
        FeatureKind::Category => b.features.categories.contains(&t.value),
        FeatureKind::Tag => b.features.tags.contains(&t.value),
        FeatureKind::BehaviorType => false,
    }
}

/// UBR by brute force: BM25 of every eligible behavior, with document
/// frequencies counted over the user's whole history, sorted by (score,
/// seq) descending, the first N.
fn ubr_brute_force(
    full: &[Behavior],
    elig: &[Behavior],
    target: &Target,
    n: usize,
    c: &UbrConfig,
    avg_dl: f32,
    min_dl: f32,
) -> Vec<(u32, f32)> {
    let terms = ubr_terms(target, c);
    if terms.is_empty() || n == 0 {
        return Vec::new();
    }
    let dfs: Vec<u64> = terms
        .iter()
        .map(|t| full.iter().filter(|b| holds(b, t)).count() as u64)
        .collect();
    let w = Bm25Weight::new(
        terms,
        &dfs,
        full.len() as u64,
        avg_dl,
        min_dl,
        Bm25Params { k1: c.k1, b: c.b },
        &c.behavior_type_bonus,
    );
    let mut scored: Vec<(u32, f32)> = elig
        .iter()
        .filter_map(|b| {
            let len = key_count(b.features.categories.len(), b.features.tags.len());
            w.score(|t| holds(b, t), len, b.behavior_type)
                .map(|s| (b.seq, s))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    scored.truncate(n);
    scored
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// With tags, several segments and late behaviors: `ubr` (several
    /// configurations, every term read in full or windowed) equals the
    /// brute-force BM25 ranking, `hybrid` equals its definition on top of
    /// it, and every strategy stays before the as-of point, within N,
    /// without duplicates.
    #[test]
    fn ubr_and_hybrid_equal_brute_force((batches, queries) in tagged_case()) {
        let dir = tempfile::tempdir().unwrap();
        let m = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path(), &m).unwrap();
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            index.append(batch).unwrap();
        }
        let snap = index.snapshot();
        let configs = [
            UbrConfig::default(),
            UbrConfig { rare_term_limit: Some(0), ..UbrConfig::default() },
            UbrConfig { rare_term_limit: Some(u64::MAX), ..UbrConfig::default() },
            UbrConfig { b: 0.0, tag_weight: 2.0, max_tags: 1, ..UbrConfig::default() },
            UbrConfig {
                behavior_type_bonus: vec![0.0, 0.5, 3.0],
                rare_term_limit: Some(1),
                ..UbrConfig::default()
            },
        ];
        let all: Vec<Retriever> = StrategyKind::ALL.iter().filter(|k| !k.needs_embeddings()).map(|k| Retriever::new(*k)).collect();
        for (user, target, n, as_of, filter) in &queries {
            let history = snap.history(*user);
            let mut full = history.newest(&AsOf::NOW, usize::MAX);
            full.reverse();
            let elig = eligible(&full, as_of, filter);
            let q = Query::new(target, *n).as_of(*as_of).filter(filter.clone());
            for config in &configs {
                let want = ubr_brute_force(
                    &full,
                    &elig,
                    target,
                    *n,
                    config,
                    history.avg_feature_keys(),
                    history.min_feature_keys(),
                );
                let ubr = Retriever::with_strategy(Box::new(Ubr {
                    config: UbrConfig { pad_with_recent: false, ..config.clone() },
                }));
                let got: Vec<(u32, f32)> = ubr
                    .retrieve(&snap, *user, &q)
                    .unwrap()
                    .iter()
                    .map(|h| (h.behavior.seq, h.score))
                    .collect();
                prop_assert_eq!(&got, &want, "ubr {:?}", config);
            }
            // hybrid: the k newest, then UBR's top N without them, then the
            // newest of the rest.
            let k = ((*n as f32 * 0.2).round() as usize).clamp(usize::from(*n > 1), *n);
            let mut want: Vec<u32> = elig.iter().take(k).map(|b| b.seq).collect();
            if *n > 0 {
                let ranked = ubr_brute_force(
                    &full,
                    &elig,
                    target,
                    *n,
                    &UbrConfig::default(),
                    history.avg_feature_keys(),
                    history.min_feature_keys(),
                );
                let recent = want.clone();
                for (seq, _) in ranked {
                    if want.len() < *n && !recent.contains(&seq) {
                        want.push(seq);
                    }
                }
                for b in &elig {
                    if want.len() < *n && !want.contains(&b.seq) {
                        want.push(b.seq);
                    }
                }
            }
            for r in &all {
                let hits = r.retrieve(&snap, *user, &q).unwrap();
                prop_assert_eq!(hits.len(), (*n).min(elig.len()), "{} count", r.name());
                let mut seen = HashSet::new();
                for h in &hits {
                    let b = &h.behavior;
                    prop_assert!(as_of.admits(b.seq, b.timestamp), "{} leaked seq {}", r.name(), b.seq);
                    prop_assert!(filter.admits(b.behavior_type, b.timestamp));
                    prop_assert!(seen.insert(b.seq), "{} returned seq {} twice", r.name(), b.seq);
                    prop_assert_eq!(b, &full[b.seq as usize]);
                }
                if r.name() == "hybrid" {
                    let got: Vec<u32> = hits.iter().map(|h| h.behavior.seq).collect();
                    prop_assert_eq!(&got, &want, "hybrid");
                }
            }
        }
        // Warmed rows and in-memory category and tag postings change what
        // the strategies read from, never what they return.
        let ubrs: Vec<Retriever> = configs
            .iter()
            .map(|c| Retriever::with_strategy(Box::new(Ubr { config: c.clone() })))
            .collect();
        let everything = |snap: &hindsight_index::Snapshot| -> Vec<Vec<(u32, f32)>> {
            let mut out = Vec::new();
            for (user, target, n, as_of, filter) in &queries {
                let q = Query::new(target, *n).as_of(*as_of).filter(filter.clone());
                for r in all.iter().chain(&ubrs) {
                    let hits = r.retrieve(snap, *user, &q).unwrap();
                    out.push(hits.iter().map(|h| (h.behavior.seq, h.score)).collect());
                }
                let batch = all[0].retrieve_batch(snap, *user, std::slice::from_ref(&q)).unwrap();
                out.push(batch.to_vecs().concat().iter().map(|h| (h.behavior.seq, h.score)).collect());
            }
            out
        };
        let cold = everything(&snap);
        drop(snap);
        index.keep_rows_warm();
        let warm = index.snapshot();
        prop_assert!(warm.segments().iter().all(|s| s.is_warm()));
        prop_assert_eq!(everything(&warm), cold);
    }
}

/// A strategy that only implements `retrieve`: it gets the trait's
/// default `retrieve_batch` (one by one, behaviors shared by seq).
struct OneByOne(Box<dyn RetrievalStrategy>);

impl RetrievalStrategy for OneByOne {
    fn name(&self) -> &'static str {
        "one-by-one"
    }

    fn retrieve(
        &self,
        history: &hindsight_index::History<'_>,
        q: &Query<'_>,
        out: &mut Vec<hindsight_retrieval::Retrieved>,
    ) -> hindsight_retrieval::Result<()> {
        self.0.retrieve(history, q, out)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// `retrieve_batch` of a user's queries (repeated targets, shared
    /// categories, items never touched, several as-of points and filters)
    /// gives each query exactly what `retrieve` gives it alone, for every
    /// strategy, the default implementation and UBR configurations; every
    /// distinct behavior is held once.
    #[test]
    fn batch_equals_one_by_one((batches, queries) in tagged_case(), repeat in 0usize..30) {
        let dir = tempfile::tempdir().unwrap();
        let m = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path(), &m).unwrap();
        for batch in batches.iter().filter(|b| !b.is_empty()) {
            index.append(batch).unwrap();
        }
        let snap = index.snapshot();
        let mut retrievers: Vec<Retriever> = StrategyKind::ALL.iter().filter(|k| !k.needs_embeddings()).map(|k| Retriever::new(*k)).collect();
        retrievers.push(Retriever::with_strategy(Box::new(Ubr {
            config: UbrConfig { rare_term_limit: Some(0), pad_with_recent: false, ..UbrConfig::default() },
        })));
        retrievers.push(Retriever::with_strategy(Box::new(Ubr {
            config: UbrConfig { item_weight: 0.0, ..UbrConfig::default() },
        })));
        retrievers.push(Retriever::with_strategy(Box::new(OneByOne(StrategyKind::Ubr.build()))));
        for user in 0u64..5 {
            // The user's queries, with one repeated and one on an item
            // nobody touched, as the candidates of a request are.
            let mut mine: Vec<(Target, usize, AsOf, BehaviorFilter)> = queries
                .iter()
                .filter(|q| q.0 == user || user == 0)
                .map(|(_, t, n, a, f)| (t.clone(), *n, *a, f.clone()))
                .collect();
            if let Some(first) = mine.get(repeat % mine.len().max(1)).cloned() {
                mine.push(first.clone());
                let mut unseen = first;
                unseen.0.item_id = 1_000_000;
                mine.push(unseen);
            }
            let qs: Vec<Query<'_>> = mine
                .iter()
                .map(|(t, n, a, f)| Query::new(t, *n).as_of(*a).filter(f.clone()))
                .collect();
            for r in &retrievers {
                let batch = r.retrieve_batch(&snap, user, &qs).unwrap();
                prop_assert_eq!(batch.len(), qs.len());
                for (i, q) in qs.iter().enumerate() {
                    let alone = r.retrieve(&snap, user, q).unwrap();
                    prop_assert_eq!(&batch.retrieved(i), &alone, "{} query {}", r.name(), i);
                }
                let distinct: HashSet<u32> = batch.behaviors().iter().map(|b| b.seq).collect();
                prop_assert_eq!(distinct.len(), batch.behaviors().len(), "{} holds a behavior twice", r.name());
            }
        }
    }
}
