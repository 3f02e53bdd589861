use hindsight_core::ItemFeatures;
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use hindsight_retrieval::{Retriever, StrategyKind};

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
    for kind in StrategyKind::ALL {
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
