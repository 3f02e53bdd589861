//! Property tests of the embedding strategies (`sim-soft`, `eta`, `sdim`)
//! against brute force on generated logs appended in several batches (so
//! histories span segments, and items appended after the store was built
//! get their vectors from their features): exact top N by inner product and
//! by Hamming distance with ties to newer, exact collision sets newest
//! first; never at or after the as-of point; at most N.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;

use hindsight_core::{AsOf, Behavior, BehaviorFilter, ItemFeatures, Target};
use hindsight_embeddings::{
    dot, hamming, EmbeddingStore, Embeddings, FeatureCombine, FeatureTable, FeatureTables,
    HashSettings, IndexRef, ModelRef,
};
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use hindsight_retrieval::{Query, RetrievalContext, RetrievalError, Retriever, StrategyKind};
use proptest::prelude::*;

const DIM: usize = 6;

#[derive(Debug, Clone)]
struct Case {
    batches: Vec<Vec<NewBehavior>>,
    /// Vectors (small integers: many exact ties) of items 0..30; the store
    /// holds the items `held` says.
    vectors: Vec<[i8; DIM]>,
    held: Vec<bool>,
    hash: HashSettings,
    queries: Vec<(u64, Target, usize, AsOf, BehaviorFilter)>,
}

fn behavior() -> impl Strategy<Value = NewBehavior> {
    (1u64..4, 0u64..30, 0u8..3, 0i64..300).prop_map(|(user, item, btype, ts)| NewBehavior {
        user_id: user,
        item_id: item,
        features: ItemFeatures::with_categories(vec![item % 4]),
        behavior_type: btype,
        timestamp: ts,
    })
}

fn case() -> impl Strategy<Value = Case> {
    let batches = prop::collection::vec(prop::collection::vec(behavior(), 0..50), 1..4);
    let vectors = prop::collection::vec(prop::array::uniform6(-2i8..3), 30);
    let held = prop::collection::vec(prop::bool::weighted(0.7), 30);
    let hash = (1u32..=64, 1u32..=4, 1u32..=4, any::<u64>()).prop_map(|(eta_bits, r, b, seed)| {
        HashSettings {
            eta_bits,
            sdim_rounds: r,
            sdim_bits: b,
            seed,
        }
    });
    let query = (
        0u64..5,
        0u64..34,
        0u64..6,
        0usize..20,
        prop::option::of(0u32..100),
        prop::option::of(0i64..320),
        prop::option::of(0u8..3),
    )
        .prop_map(|(user, item, cat, n, seq, ts, btype)| {
            let target = Target {
                item_id: item,
                features: ItemFeatures::with_categories(vec![cat]),
            };
            let filter = BehaviorFilter {
                behavior_types: btype.into_iter().collect(),
                since: None,
                until: None,
            };
            (user, target, n, AsOf { seq, timestamp: ts }, filter)
        });
    (
        batches,
        vectors,
        held,
        hash,
        prop::collection::vec(query, 30),
    )
        .prop_map(|(batches, vectors, held, hash, queries)| Case {
            batches,
            vectors,
            held,
            hash,
            queries,
        })
}

/// Tables: item OOV row of 2, category rows of 4 (categories 0..3; 4 and 5
/// are unknown and take the OOV row).
fn tables() -> FeatureTables {
    FeatureTables {
        combine: FeatureCombine::Concat,
        item_oov: vec![0.5, -1.0],
        categories: FeatureTable {
            ids: vec![0, 1, 2, 3],
            rows: (0..16).map(|i| (i % 5) as f32 - 2.0).collect(),
            oov: vec![1.0, 1.0, -1.0, 0.0],
        },
        tags: None,
        max_categories: 1,
        max_tags: 1,
    }
}

fn store(case: &Case, index: &BehaviorIndex) -> EmbeddingStore {
    let ids: Vec<u64> = (0..30u64).filter(|&i| case.held[i as usize]).collect();
    let vectors: Vec<f32> = ids
        .iter()
        .flat_map(|&i| case.vectors[i as usize].map(f32::from))
        .collect();
    EmbeddingStore::build(
        ids,
        vectors,
        DIM,
        tables(),
        case.hash,
        ModelRef {
            path: "test".into(),
            kind: "din".into(),
            weights_sha256: String::new(),
            representation: "test".into(),
        },
        IndexRef::of(index),
    )
    .unwrap()
}

fn eligible(h: &[Behavior], as_of: &AsOf, f: &BehaviorFilter) -> Vec<Behavior> {
    h.iter()
        .filter(|b| as_of.admits(b.seq, b.timestamp) && f.admits(b.behavior_type, b.timestamp))
        .cloned()
        .collect()
}

fn vector_of(store: &EmbeddingStore, item: u64, features: &ItemFeatures) -> Vec<f32> {
    match store.row(item) {
        Some(r) => store.vector(r).to_vec(),
        None => store.features_vector(features),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn embedding_strategies_equal_brute_force(case in case()) {
        let dir = tempfile::tempdir().unwrap();
        let m = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path(), &m).unwrap();
        // The store is built after the first batch: later batches bring
        // items it may not hold, in new segments.
        let mut batches = case.batches.iter();
        if let Some(first) = batches.next() {
            if !first.is_empty() {
                index.append(first).unwrap();
            }
        }
        let emb = Arc::new(Embeddings::new(store(&case, &index)));
        emb.warm(&index.refresh().unwrap());
        for batch in batches {
            if !batch.is_empty() {
                index.append(batch).unwrap();
            }
        }
        let snap = index.refresh().unwrap();
        let ctx = RetrievalContext { embeddings: Some(emb.clone()) };
        let st = emb.store();
        let r = |k| Retriever::for_kind(k, &ctx).unwrap();
        let (soft, eta, sdim) = (r(StrategyKind::SimSoft), r(StrategyKind::Eta), r(StrategyKind::Sdim));
        let layout = st.sdim_layout();
        for (user, target, n, as_of, filter) in &case.queries {
            let mut full = snap.history(*user).newest(&AsOf::NOW, usize::MAX);
            full.reverse();
            let elig = eligible(&full, as_of, filter);
            let q = Query::new(target, *n).as_of(*as_of).filter(filter.clone());
            let t = st.target(target);
            prop_assert_eq!(&t.vector, &vector_of(st, target.item_id, &target.features));

            // sim-soft: top N by (inner product, seq), descending.
            let mut want: Vec<(f32, u32)> = elig
                .iter()
                .map(|b| (dot(&t.vector, &vector_of(st, b.item_id, &b.features)), b.seq))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            want.truncate(*n);
            let got: Vec<(f32, u32)> = soft.retrieve(&snap, *user, &q).unwrap()
                .iter().map(|h| (h.score, h.behavior.seq)).collect();
            prop_assert_eq!(got, want, "sim-soft");

            // eta: top N by Hamming distance ascending, ties to newer.
            let bits = st.eta_bits();
            let mut want: Vec<(f32, u32)> = elig
                .iter()
                .map(|b| {
                    let code = st.eta_of(&vector_of(st, b.item_id, &b.features));
                    ((bits - hamming(code, t.eta)) as f32, b.seq)
                })
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
            want.truncate(*n);
            let got: Vec<(f32, u32)> = eta.retrieve(&snap, *user, &q).unwrap()
                .iter().map(|h| (h.score, h.behavior.seq)).collect();
            prop_assert_eq!(got, want, "eta");

            // sdim: every colliding behavior, newest first, at most N.
            let mut want: Vec<(f32, u32)> = elig
                .iter()
                .filter_map(|b| {
                    let sig = st.sdim_of(&vector_of(st, b.item_id, &b.features));
                    let c = (0..layout.rounds)
                        .filter(|&r| layout.bucket(sig, r) == layout.bucket(t.sdim, r))
                        .count();
                    (c > 0).then_some((c as f32, b.seq))
                })
                .collect();
            want.sort_by_key(|w| Reverse(w.1));
            want.truncate(*n);
            let got = sdim.retrieve(&snap, *user, &q).unwrap();
            let mut seen = HashSet::new();
            for h in &got {
                let b = &h.behavior;
                prop_assert!(as_of.admits(b.seq, b.timestamp), "sdim leaked past {:?}", as_of);
                prop_assert!(seen.insert(b.seq));
            }
            let got: Vec<(f32, u32)> = got.iter().map(|h| (h.score, h.behavior.seq)).collect();
            prop_assert_eq!(got, want, "sdim");
        }
        // A batch of each user's queries gives each query its own result,
        // on one thread and split over two.
        for user in 0..5u64 {
            let qs: Vec<Query<'_>> = case.queries.iter().filter(|q| q.0 == user)
                .map(|(_, target, n, as_of, filter)| Query::new(target, *n).as_of(*as_of).filter(filter.clone()))
                .collect();
            for r in [&soft, &eta, &sdim] {
                let one: Vec<_> = qs.iter().map(|q| r.retrieve(&snap, user, q).unwrap()).collect();
                let history = snap.history(user);
                prop_assert_eq!(&r.retrieve_batch(&snap, user, &qs).unwrap().to_vecs(), &one, "{}", r.name());
                prop_assert_eq!(&r.retrieve_batch_threads(&history, &qs, 2).unwrap().to_vecs(), &one, "{} on 2 threads", r.name());
            }
        }
    }
}

/// Batches over a long history (several tiles of the shared passes, runs
/// in three segments, as-of points inside tiles) give each candidate
/// exactly its own result.
#[test]
fn batches_over_long_histories_equal_single_queries() {
    let dir = tempfile::tempdir().unwrap();
    let m = DatasetMapping::preset("taobao").unwrap();
    let index = BehaviorIndex::create(dir.path(), &m).unwrap();
    let mut s = 5u64;
    let mut next = || {
        s = hindsight_core::splitmix64(s);
        s
    };
    let behaviors: Vec<NewBehavior> = (0..9000i64)
        .map(|ts| {
            let item = next() % 400;
            NewBehavior {
                user_id: 1 + (next() % 8 == 0) as u64,
                item_id: item,
                features: ItemFeatures::with_categories(vec![item % 4]),
                behavior_type: (next() % 3) as u8,
                timestamp: ts,
            }
        })
        .collect();
    let vectors: Vec<[i8; DIM]> = (0..30)
        .map(|_| std::array::from_fn(|_| (next() % 9) as i8 - 4))
        .collect();
    let case = Case {
        batches: Vec::new(),
        vectors,
        held: vec![true; 30],
        hash: HashSettings::default(),
        queries: Vec::new(),
    };
    index.append(&behaviors[..3000]).unwrap();
    // Items 30.. are not in the store: their vectors come from features.
    let emb = Arc::new(Embeddings::new(store(&case, &index)));
    index.append(&behaviors[3000..7000]).unwrap();
    index.append(&behaviors[7000..]).unwrap();
    let snap = index.refresh().unwrap();
    emb.warm(&snap);
    let ctx = RetrievalContext {
        embeddings: Some(emb),
    };
    let targets: Vec<Target> = (0..40u64)
        .map(|i| Target {
            item_id: i * 11 % 430,
            features: ItemFeatures::with_categories(vec![i % 6]),
        })
        .collect();
    let qs: Vec<Query<'_>> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let q = Query::new(t, [50, 1, 0, 300][i % 4]);
            let q = match i % 5 {
                0 => q,
                1 => q.as_of(AsOf {
                    seq: Some(1 + 97 * i as u32),
                    timestamp: None,
                }),
                2 => q.as_of(AsOf {
                    seq: None,
                    timestamp: Some(100 * i as i64),
                }),
                _ => q.as_of(AsOf {
                    seq: Some(4000 - 50 * i as u32),
                    timestamp: None,
                }),
            };
            if i % 7 == 3 {
                q.filter(BehaviorFilter {
                    behavior_types: vec![1],
                    since: None,
                    until: None,
                })
            } else {
                q
            }
        })
        .collect();
    for kind in [StrategyKind::SimSoft, StrategyKind::Eta, StrategyKind::Sdim] {
        let r = Retriever::for_kind(kind, &ctx).unwrap();
        for user in [1u64, 2] {
            let one: Vec<_> = qs
                .iter()
                .map(|q| r.retrieve(&snap, user, q).unwrap())
                .collect();
            assert!(
                one.iter().any(|o| o.len() == 50),
                "{kind}: long results expected"
            );
            let history = snap.history(user);
            assert_eq!(
                r.retrieve_batch(&snap, user, &qs).unwrap().to_vecs(),
                one,
                "{kind}"
            );
            for threads in [2, 3] {
                assert_eq!(
                    r.retrieve_batch_threads(&history, &qs, threads)
                        .unwrap()
                        .to_vecs(),
                    one,
                    "{kind} on {threads} threads"
                );
            }
        }
    }
}

#[test]
fn embedding_strategies_without_embeddings_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let m = DatasetMapping::preset("taobao").unwrap();
    let index = BehaviorIndex::create(dir.path(), &m).unwrap();
    index
        .append(&[NewBehavior {
            user_id: 1,
            item_id: 1,
            features: ItemFeatures::with_categories(vec![1]),
            behavior_type: 0,
            timestamp: 1,
        }])
        .unwrap();
    let snap = index.refresh().unwrap();
    for kind in [StrategyKind::SimSoft, StrategyKind::Eta, StrategyKind::Sdim] {
        // No store attached to the index.
        let err = Retriever::for_index(kind, &index).err().unwrap();
        assert!(
            err.to_string().contains("hindsight embeddings attach"),
            "{err}"
        );
        // A retriever built without a context refuses every call.
        let target = Target::default();
        let err = Retriever::new(kind)
            .retrieve(&snap, 1, &Query::new(&target, 5))
            .unwrap_err();
        assert!(matches!(err, RetrievalError::MissingEmbeddings(_)), "{err}");
        // Feature strategies need nothing.
        assert!(Retriever::for_index(StrategyKind::Recent, &index).is_ok());
    }
    // A damaged file: a clear error, not a panic.
    let path = hindsight_embeddings::store_path(index.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"HSEMBED\n garbage").unwrap();
    let err = Retriever::for_index(StrategyKind::Eta, &index)
        .err()
        .unwrap();
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// A behavior's score under a strategy, computed by brute force.
type Score<'a> = dyn Fn(&Behavior) -> f32 + 'a;

/// Over histories long enough for `eta`'s pilot (tens of thousands of
/// behaviors, one run and two), with behavior rows warmed or not, every
/// `sim-soft` and `eta` result is the brute-force top N; user 3's history
/// puts the only items near the great one exactly where the pilot
/// samples, so its cut-off is too tight for N = 2,500 and the scan is
/// redone.
#[test]
fn pilots_over_long_histories_equal_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let m = DatasetMapping::preset("taobao").unwrap();
    let index = BehaviorIndex::create(dir.path(), &m).unwrap();
    let mut s = 17u64;
    let mut next = || {
        s = hindsight_core::splitmix64(s);
        s
    };
    const ITEMS: u64 = 3000;
    const GREAT: u64 = ITEMS; // the one item that scores high
    let nb = |user: u64, item: u64, ts: i64| NewBehavior {
        user_id: user,
        item_id: item,
        features: ItemFeatures::with_categories(vec![item % 4]),
        behavior_type: 0,
        timestamp: ts,
    };
    let mut first = Vec::new();
    let mut second = Vec::new();
    for ts in 0..40_000i64 {
        let b = nb(1, next() % ITEMS, ts);
        if ts < 25_000 {
            first.push(b)
        } else {
            second.push(b)
        }
    }
    for ts in 0..20_000i64 {
        first.push(nb(2, next() % ITEMS, ts));
    }
    // `eta`'s pilot reads 32 stretches of 64 over 20,480 docs (stretch k
    // starts at 640 k): the great item fills exactly those, 2,048 docs,
    // fewer than N = 2,500 of the whole.
    for ts in 0..20_480i64 {
        let item = if ts % 640 < 64 { GREAT } else { next() % ITEMS };
        first.push(nb(3, item, ts));
    }
    let mut vectors: Vec<f32> = (0..ITEMS * DIM as u64)
        .map(|_| (next() % 9) as f32 - 4.0)
        .collect();
    vectors.extend([40.0f32; DIM]);
    index.append(&first).unwrap();
    let st = EmbeddingStore::build(
        (0..=ITEMS).collect(),
        vectors,
        DIM,
        tables(),
        HashSettings::default(),
        ModelRef {
            path: "test".into(),
            kind: "din".into(),
            weights_sha256: String::new(),
            representation: "test".into(),
        },
        IndexRef::of(&index),
    )
    .unwrap();
    index.append(&second).unwrap();
    let emb = Arc::new(Embeddings::new(st));
    let snap = index.refresh().unwrap();
    emb.warm(&snap);
    let ctx = RetrievalContext {
        embeddings: Some(emb.clone()),
    };
    let st = emb.store();
    let soft = Retriever::for_kind(StrategyKind::SimSoft, &ctx).unwrap();
    let eta = Retriever::for_kind(StrategyKind::Eta, &ctx).unwrap();
    let targets: Vec<Target> = [7u64, 1234, GREAT, ITEMS + 55]
        .iter()
        .map(|&item| Target {
            item_id: item,
            features: ItemFeatures::with_categories(vec![item % 4]),
        })
        .collect();
    for warm in [false, true] {
        if warm {
            index.keep_rows_warm();
        }
        for user in [1u64, 2, 3] {
            let mut full = snap.history(user).newest(&AsOf::NOW, usize::MAX);
            full.reverse();
            assert!(full.iter().enumerate().all(|(i, b)| b.seq as usize == i));
            // Each behavior's vector and code, once (by seq).
            let vecs: Vec<Vec<f32>> = full
                .iter()
                .map(|b| vector_of(st, b.item_id, &b.features))
                .collect();
            let codes: Vec<u64> = vecs.iter().map(|v| st.eta_of(v)).collect();
            for target in &targets {
                let t = st.target(target);
                for n in [1usize, 50, 300, 2500] {
                    for as_of in [
                        AsOf::NOW,
                        AsOf {
                            seq: Some(18_000),
                            timestamp: None,
                        },
                    ] {
                        let elig = eligible(&full, &as_of, &BehaviorFilter::default());
                        let q = Query::new(target, n).as_of(as_of);
                        let bits = st.eta_bits();
                        let checks: [(&Retriever, &Score<'_>); 2] = [
                            (&soft, &|b| dot(&t.vector, &vecs[b.seq as usize])),
                            (&eta, &|b| {
                                (bits - hamming(codes[b.seq as usize], t.eta)) as f32
                            }),
                        ];
                        for (r, score) in checks {
                            // Best first, newer first among ties.
                            let mut want: Vec<(f32, u32)> =
                                elig.iter().map(|b| (score(b), b.seq)).collect();
                            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
                            want.truncate(n);
                            let got: Vec<(f32, u32)> = r
                                .retrieve(&snap, user, &q)
                                .unwrap()
                                .iter()
                                .map(|h| (h.score, h.behavior.seq))
                                .collect();
                            assert_eq!(
                                got,
                                want,
                                "{}: user {user}, item {}, n {n}",
                                r.name(),
                                target.item_id
                            );
                        }
                    }
                }
                let qs: Vec<Query<'_>> = [1usize, 50, 300]
                    .iter()
                    .map(|&n| Query::new(target, n))
                    .collect();
                let one: Vec<_> = qs
                    .iter()
                    .map(|q| soft.retrieve(&snap, user, q).unwrap())
                    .collect();
                assert_eq!(
                    soft.retrieve_batch(&snap, user, &qs).unwrap().to_vecs(),
                    one
                );
                let one: Vec<_> = qs
                    .iter()
                    .map(|q| eta.retrieve(&snap, user, q).unwrap())
                    .collect();
                assert_eq!(eta.retrieve_batch(&snap, user, &qs).unwrap().to_vecs(), one);
            }
        }
    }
}
