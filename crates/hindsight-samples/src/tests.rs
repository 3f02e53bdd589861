use hindsight_core::ItemFeatures;
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use hindsight_retrieval::{Retriever, StrategyKind};

use std::collections::{HashMap, HashSet};

use super::*;

fn index_with(users: &[(u64, usize)]) -> (tempfile::TempDir, BehaviorIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index =
        BehaviorIndex::create(dir.path(), &DatasetMapping::preset("taobao").unwrap()).unwrap();
    let mut batch = Vec::new();
    for &(user, n) in users {
        for i in 0..n {
            let item = (i as u64 * 7 + user) % 40;
            batch.push(NewBehavior {
                user_id: user,
                item_id: item,
                features: ItemFeatures::with_categories(vec![item % 5]),
                behavior_type: 0,
                timestamp: 1000 + i as i64,
            });
        }
    }
    index.append(&batch).unwrap();
    (dir, index)
}

#[test]
fn protocol_counts_splits_and_negatives() {
    // 45 behaviors: 25 positives -> test 2, valid 2, train 21.
    // 25 behaviors: 5 positives -> test 1, valid 0, train 4. 10: none.
    let (_d, index) = index_with(&[(1, 45), (2, 25), (3, 10)]);
    let snap = index.snapshot();
    let (samples, counts) = build_samples(&snap, &Protocol::default()).unwrap();
    assert_eq!(counts.positives, 30);
    assert_eq!(counts.users, 2);
    assert_eq!(samples.len(), 60);
    assert_eq!(
        (counts.train, counts.valid, counts.test),
        (2 * 25, 2 * 2, 2 * 3)
    );
    for pair in samples.chunks(2) {
        let (pos, neg) = (&pair[0], &pair[1]);
        assert_eq!((pos.label, neg.label), (1, 0));
        assert_eq!(
            (pos.user_id, pos.as_of_seq, pos.timestamp, pos.split),
            (neg.user_id, neg.as_of_seq, neg.timestamp, neg.split)
        );
        assert_ne!(
            pos.target.item_id, neg.target.item_id,
            "negative equals positive"
        );
        assert_eq!(
            neg.target.features.categories,
            vec![neg.target.item_id % 5],
            "negative carries its own features"
        );
        assert!(pos.as_of_seq >= 20);
    }
    // Chronological per user: train < valid < test.
    let user1: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.user_id == 1 && s.label == 1)
        .collect();
    let order = |s: Split| match s {
        Split::Train => 0,
        Split::Valid => 1,
        Split::Test => 2,
    };
    for w in user1.windows(2) {
        assert!(w[0].as_of_seq < w[1].as_of_seq);
        assert!(order(w[0].split) <= order(w[1].split));
    }
    // Seeded: the same samples again.
    let (again, _) = build_samples(&snap, &Protocol::default()).unwrap();
    assert_eq!(again, samples);
    let (other, _) = build_samples(
        &snap,
        &Protocol {
            seed: 7,
            ..Protocol::default()
        },
    )
    .unwrap();
    assert_ne!(other, samples);
}

#[test]
fn retrieved_histories_never_reach_the_target_and_export_writes_three_splits() {
    let (dir, index) = index_with(&[(1, 60), (2, 30)]);
    let snap = index.snapshot();
    let (samples, counts) = build_samples(&snap, &Protocol::default()).unwrap();
    // The embedding strategies need attached embeddings (their own tests).
    for kind in StrategyKind::ALL
        .into_iter()
        .filter(|k| !k.needs_embeddings())
    {
        let h = retrieve_histories(&snap, &samples, &Retriever::new(kind), 8, 2).unwrap();
        assert_eq!(h.len(), samples.len());
        for (s, h) in samples.iter().zip(&h) {
            assert_eq!(h.len(), 8.min(s.as_of_seq as usize));
            assert!(h
                .iter()
                .all(|b| b.seq < s.as_of_seq && b.user_id == s.user_id));
        }
    }
    let h = retrieve_histories(&snap, &samples, &Retriever::new(StrategyKind::Ubr), 8, 1).unwrap();
    let out = dir.path().join("export");
    let meta = ExportMeta {
        strategy: "ubr".into(),
        n: 8,
        protocol: Protocol::default(),
        counts: counts.clone(),
        index: "x".into(),
        layout: String::new(),
    };
    export(&out, &samples, &h, meta).unwrap();
    let test = std::fs::read_to_string(out.join("test.csv")).unwrap();
    let lines: Vec<&str> = test.lines().collect();
    assert_eq!(lines.len() as u64, 1 + counts.test);
    assert!(lines[0].starts_with("user_id,label,"));
    let cols: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cols.len(), 13);
    assert_eq!(cols[8].split('^').count(), 8);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["n"], 8);
}

#[test]
fn empty_index_is_a_clear_error() {
    let (_d, index) = index_with(&[(1, 5)]);
    let err = build_samples(&index.snapshot(), &Protocol::default()).unwrap_err();
    assert!(
        err.to_string().contains("no user with more than 20"),
        "{err}"
    );
}

/// Negatives drawn by the v1 sampler before v2 existed (computed with the
/// code of commit ef8f35d on this fixture): v1 must keep drawing exactly
/// these, so old checkpoints evaluate on the samples they were trained on.
const V1_NEGATIVES: [u64; 100] = [
    27, 38, 16, 24, 11, 5, 11, 31, 30, 9, 20, 36, 38, 23, 28, 22, 6, 17, 3, 6, 12, 27, 3, 1, 10,
    33, 26, 27, 26, 3, 8, 8, 30, 27, 16, 2, 35, 25, 30, 32, 1, 32, 37, 27, 17, 34, 22, 38, 8, 24,
    14, 17, 5, 5, 26, 31, 27, 17, 1, 24, 13, 20, 6, 11, 18, 9, 12, 15, 25, 33, 16, 23, 24, 37, 36,
    15, 18, 7, 39, 13, 30, 0, 4, 9, 32, 20, 17, 6, 34, 27, 1, 24, 33, 31, 17, 18, 0, 14, 10, 14,
];

#[test]
fn protocol_v1_draws_what_it_always_drew() {
    let (_d, index) = index_with(&[(1, 45), (2, 25), (4, 90)]);
    let v1 = Protocol {
        version: 1,
        ..Protocol::default()
    };
    let (samples, _) = build_samples(&index.snapshot(), &v1).unwrap();
    let negs: Vec<u64> = samples
        .iter()
        .filter(|s| s.label == 0)
        .map(|s| s.target.item_id)
        .collect();
    assert_eq!(negs, V1_NEGATIVES);
}

#[test]
fn settings_without_a_version_read_as_v1() {
    let p: Protocol = serde_json::from_str(r#"{"seed": 42}"#).unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(Protocol::default().version, PROTOCOL_VERSION);
    let bad = Protocol {
        version: 9,
        ..Protocol::default()
    };
    let (_d, index) = index_with(&[(1, 30)]);
    let err = build_samples(&index.snapshot(), &bad).unwrap_err();
    assert!(err.to_string().contains("versions 1 and 2"), "{err}");
}

/// Users with long histories over a catalog of 300 items (categories
/// `item % 7`), skewed so that popular items are often already seen.
fn wide_index() -> (tempfile::TempDir, BehaviorIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index =
        BehaviorIndex::create(dir.path(), &DatasetMapping::preset("taobao").unwrap()).unwrap();
    let mut batch = Vec::new();
    for user in 1..=6u64 {
        for i in 0..120u64 {
            // Half the behaviors on the 20 most popular items (repeats),
            // half spread over the catalog.
            let item = if i % 2 == 0 {
                (i / 2 + user) % 20
            } else {
                (i * 37 + user * 11) % 300
            };
            batch.push(NewBehavior {
                user_id: user,
                item_id: item,
                features: ItemFeatures::with_categories(vec![item % 7]),
                behavior_type: 0,
                timestamp: 1000 + i as i64,
            });
        }
    }
    index.append(&batch).unwrap();
    (dir, index)
}

/// The items of `user`'s history strictly before `seq`.
fn seen_before(snap: &Snapshot, user: u64, seq: u32) -> HashSet<u64> {
    snap.history(user)
        .newest(&AsOf::seq(seq), usize::MAX)
        .iter()
        .map(|b| b.item_id)
        .collect()
}

#[test]
fn v2_negatives_are_never_in_the_users_past_and_new_item_marks_exactly_new_positives() {
    let (_d, index) = wide_index();
    let snap = index.snapshot();
    let (samples, counts) = build_samples(&snap, &Protocol::default()).unwrap();
    let mut new_positives = 0;
    for pair in samples.chunks(2) {
        let (pos, neg) = (&pair[0], &pair[1]);
        let seen = seen_before(&snap, pos.user_id, pos.as_of_seq);
        assert!(
            !seen.contains(&neg.target.item_id),
            "negative {} of user {} at seq {} is in the history",
            neg.target.item_id,
            pos.user_id,
            pos.as_of_seq
        );
        assert_ne!(neg.target.item_id, pos.target.item_id);
        assert_eq!(pos.new_item, !seen.contains(&pos.target.item_id));
        assert_eq!(
            pos.new_item, neg.new_item,
            "a negative follows its positive"
        );
        new_positives += pos.new_item as u64;
    }
    assert_eq!(counts.new_item_positives, new_positives);
    // The fixture has both kinds of positives, so the slice is a real test.
    assert!(new_positives > 0 && new_positives < counts.positives);
    // v1 on the same fixture does draw seen items: the exclusion is v2's.
    let v1 = Protocol {
        version: 1,
        ..Protocol::default()
    };
    let (old, _) = build_samples(&snap, &v1).unwrap();
    assert!(old
        .chunks(2)
        .any(|p| seen_before(&snap, p[0].user_id, p[0].as_of_seq).contains(&p[1].target.item_id)));
}

#[test]
fn hard_negatives_share_the_positives_category() {
    let (_d, index) = wide_index();
    let snap = index.snapshot();
    let hard = Protocol {
        negatives: Negatives::SameCategory,
        ..Protocol::default()
    };
    let (samples, counts) = build_samples(&snap, &hard).unwrap();
    assert_eq!(
        counts.category_fallbacks, 0,
        "every category has unseen items"
    );
    for pair in samples.chunks(2) {
        let (pos, neg) = (&pair[0], &pair[1]);
        assert_eq!(
            neg.target.features.categories,
            pos.target.features.categories
        );
        assert!(!seen_before(&snap, pos.user_id, pos.as_of_seq).contains(&neg.target.item_id));
    }
    // Same split and as-of points as the main protocol.
    let (main, _) = build_samples(&snap, &Protocol::default()).unwrap();
    let key = |s: &Sample| (s.user_id, s.as_of_seq, s.split, s.label);
    assert_eq!(
        samples.iter().map(key).collect::<Vec<_>>(),
        main.iter().map(key).collect::<Vec<_>>()
    );
}

#[test]
fn same_category_falls_back_when_the_category_is_exhausted() {
    let f = |c: u64| ItemFeatures::with_categories(vec![c]);
    let sampler = ItemSampler::from_counts(vec![(1, 5, f(0)), (2, 5, f(0)), (3, 5, f(1))]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let seen: HashSet<u64> = [2].into();
    // Category 0 holds 1 (the positive) and 2 (seen): nothing eligible.
    assert!(sampler
        .draw_same_category(&mut rng, &[0], 1, &seen)
        .is_none());
    assert_eq!(sampler.draw_unseen(&mut rng, 1, &seen).unwrap().0, 3);
    // Every item seen: nothing at all.
    let all: HashSet<u64> = [2, 3].into();
    assert!(sampler.draw_unseen(&mut rng, 1, &all).is_none());
}

#[test]
fn same_category_draw_is_popularity_weighted_over_the_union() {
    // Item 10 carries both of the positive's genres: through the 1/k
    // acceptance it must be drawn by its own weight, not twice it.
    let g = |c: &[u64]| ItemFeatures::with_categories(c.to_vec());
    let sampler = ItemSampler::from_counts(vec![
        (10, 2, g(&[0, 1])),
        (11, 1, g(&[0])),
        (12, 1, g(&[1])),
        (13, 50, g(&[2])),
    ]);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let none = HashSet::new();
    let mut hits: HashMap<u64, u32> = HashMap::new();
    let draws = 40_000;
    for _ in 0..draws {
        let pick = sampler
            .draw_same_category(&mut rng, &[0, 1], 99, &none)
            .unwrap();
        *hits.entry(pick.0).or_default() += 1;
    }
    assert_eq!(hits.get(&13), None, "item 13 is in neither genre");
    // Expected shares 2/4, 1/4, 1/4; 40k seeded draws are within 1.5 points.
    let share = |i: u64| hits[&i] as f64 / draws as f64;
    assert!((share(10) - 0.5).abs() < 0.015, "{hits:?}");
    assert!((share(11) - 0.25).abs() < 0.015, "{hits:?}");
    assert!((share(12) - 0.25).abs() < 0.015, "{hits:?}");
}
