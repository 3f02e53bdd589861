use hindsight_core::{ItemFeatures, Target};
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;

use super::*;

/// Tables of dimension 2 + 2 (item part, category part, no tags).
fn tables() -> FeatureTables {
    FeatureTables {
        combine: FeatureCombine::Concat,
        item_oov: vec![0.5, -0.5],
        categories: FeatureTable {
            ids: vec![10, 20],
            rows: vec![1.0, 0.0, 0.0, 1.0],
            oov: vec![-1.0, -1.0],
        },
        tags: None,
        max_categories: 2,
        max_tags: 1,
    }
}

fn model() -> ModelRef {
    ModelRef {
        path: "models/x".into(),
        kind: "din".into(),
        weights_sha256: "ab".repeat(32),
        representation: "test".into(),
    }
}

fn index_ref() -> IndexRef {
    IndexRef {
        mapping_name: "taobao".into(),
        created_at: 1,
        id: "0".repeat(32),
    }
}

fn store_of(ids: Vec<u64>, vectors: Vec<f32>) -> EmbeddingStore {
    EmbeddingStore::build(
        ids,
        vectors,
        4,
        tables(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap()
}

fn sample_store() -> EmbeddingStore {
    let ids = vec![7, 3, 5];
    let vectors = vec![
        1.0, 2.0, 3.0, 4.0, //
        -1.0, 0.5, 0.0, 2.0, //
        0.1, 0.2, -0.3, 0.4,
    ];
    store_of(ids, vectors)
}

#[test]
fn rows_are_sorted_by_item_and_keep_their_vectors() {
    let s = sample_store();
    assert_eq!(s.ids(), &[3, 5, 7]);
    assert_eq!(s.vector(s.row(7).unwrap()), &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(s.vector(s.row(3).unwrap()), &[-1.0, 0.5, 0.0, 2.0]);
    assert_eq!(s.row(4), None);
    for &id in s.ids() {
        let r = s.row(id).unwrap();
        assert_eq!(s.eta_code(r), s.eta_of(s.vector(r)));
        assert_eq!(s.sdim_code(r), s.sdim_of(s.vector(r)));
    }
}

#[test]
fn unseen_items_get_the_vector_of_their_features() {
    let s = sample_store();
    // Two known categories: their mean.
    let v = s.features_vector(&ItemFeatures::with_categories(vec![10, 20]));
    assert_eq!(v, vec![0.5, -0.5, 0.5, 0.5]);
    // An unknown category takes the OOV row; none gives zeros.
    assert_eq!(
        s.features_vector(&ItemFeatures::with_categories(vec![99])),
        vec![0.5, -0.5, -1.0, -1.0]
    );
    assert_eq!(
        s.features_vector(&ItemFeatures::default()),
        vec![0.5, -0.5, 0.0, 0.0]
    );
    // At most max_categories are averaged.
    assert_eq!(
        s.features_vector(&ItemFeatures::with_categories(vec![10, 20, 30])),
        vec![0.5, -0.5, 0.5, 0.5]
    );
    let t = s.target(&Target {
        item_id: 1000,
        features: ItemFeatures::with_categories(vec![10]),
    });
    assert!(!t.known);
    assert_eq!(t.vector, vec![0.5, -0.5, 1.0, 0.0]);
    assert_eq!(t.eta, s.eta_of(&t.vector));
    let k = s.target(&Target {
        item_id: 5,
        features: ItemFeatures::default(),
    });
    assert!(k.known);
    assert_eq!(k.vector, vec![0.1, 0.2, -0.3, 0.4]);
}

#[test]
fn codes_are_stable_across_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embeddings").join("store.hse");
    let s = sample_store();
    s.save(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), s.file_bytes());
    let l = EmbeddingStore::load(&path).unwrap();
    assert_eq!(l.meta(), s.meta());
    assert_eq!(l.ids(), s.ids());
    let probe = [0.3f32, -0.7, 0.2, 0.9];
    assert_eq!(l.eta_of(&probe), s.eta_of(&probe));
    assert_eq!(l.sdim_of(&probe), s.sdim_of(&probe));
    for &id in s.ids() {
        let (a, b) = (s.row(id).unwrap(), l.row(id).unwrap());
        assert_eq!(l.vector(b), s.vector(a));
        assert_eq!(l.eta_code(b), s.eta_code(a));
        assert_eq!(l.sdim_code(b), s.sdim_code(a));
        // Recomputed from the loaded planes: the same code.
        assert_eq!(l.eta_of(l.vector(b)), s.eta_code(a));
    }
    // A new store from the same seed hashes alike; another seed does not.
    let again = sample_store();
    assert_eq!(again.eta_of(&probe), s.eta_of(&probe));
    let other = EmbeddingStore::build(
        vec![1],
        vec![1.0; 4],
        4,
        tables(),
        HashSettings {
            seed: 7,
            ..HashSettings::default()
        },
        model(),
        index_ref(),
    )
    .unwrap();
    let many: Vec<[f32; 4]> = (0..20)
        .map(|i| [i as f32 - 10.0, 1.0, (i * i) as f32 * 0.1 - 3.0, 0.5])
        .collect();
    assert!(many.iter().any(|v| other.eta_of(v) != s.eta_of(v)));
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.hse");
    let missing = EmbeddingStore::load(&path).unwrap_err();
    assert!(matches!(missing, EmbeddingError::Missing(_)), "{missing}");
    assert!(missing.to_string().contains("hindsight embeddings attach"));

    sample_store().save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let at = b.len() / 2;
            b[at] ^= 0x40;
            b
        }),
        (
            "not ours",
            b"hello world, this is not an embeddings file at all!!".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = EmbeddingStore::load(&path).unwrap_err();
        assert!(
            matches!(err, EmbeddingError::Corrupt { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("attach them again"), "{err}");
    }
    // Another format version.
    let mut b = good.clone();
    b[8] = 9;
    std::fs::write(&path, &b).unwrap();
    let err = EmbeddingStore::load(&path).unwrap_err();
    assert!(
        matches!(err, EmbeddingError::Version { found: 9, .. }),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let err = EmbeddingStore::build(
        vec![1, 2],
        vec![0.0; 7],
        4,
        tables(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap_err();
    assert!(matches!(err, EmbeddingError::Dimension { .. }), "{err}");
    // The tables' representation must have the vectors' dimension.
    let err = EmbeddingStore::build(
        vec![1],
        vec![0.0; 5],
        5,
        tables(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("dimension 4"), "{err}");
    let err = EmbeddingStore::build(
        vec![1, 1],
        vec![0.0; 8],
        4,
        tables(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
    let err = EmbeddingStore::build(
        vec![1],
        vec![f32::NAN, 0.0, 0.0, 0.0],
        4,
        tables(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-finite"), "{err}");
    for hash in [
        HashSettings {
            eta_bits: 65,
            ..HashSettings::default()
        },
        HashSettings {
            sdim_rounds: 9,
            sdim_bits: 8,
            ..HashSettings::default()
        },
        HashSettings {
            sdim_bits: 0,
            ..HashSettings::default()
        },
    ] {
        let err = EmbeddingStore::build(
            vec![1],
            vec![0.0; 4],
            4,
            tables(),
            hash,
            model(),
            index_ref(),
        )
        .unwrap_err();
        assert!(matches!(err, EmbeddingError::InvalidInput(_)), "{err}");
    }
}

fn nb(user: u64, item: u64, cat: u64, ts: i64) -> NewBehavior {
    NewBehavior {
        user_id: user,
        item_id: item,
        features: ItemFeatures::with_categories(vec![cat]),
        behavior_type: 0,
        timestamp: ts,
    }
}

#[test]
fn a_store_belongs_to_its_index_and_appended_items_get_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = DatasetMapping::preset("taobao").unwrap();
    let index = BehaviorIndex::create(dir.path().join("a"), &mapping).unwrap();
    index
        .append(&[nb(1, 3, 10, 100), nb(1, 5, 20, 200), nb(2, 7, 10, 150)])
        .unwrap();
    let snap = index.refresh().unwrap();
    let mut store = sample_store();
    let ids = store.ids().to_vec();
    let vectors: Vec<f32> = ids
        .iter()
        .flat_map(|&id| store.vector(store.row(id).unwrap()).to_vec())
        .collect();
    store = EmbeddingStore::build(
        ids,
        vectors,
        4,
        tables(),
        HashSettings::default(),
        model(),
        IndexRef::of(&index),
    )
    .unwrap();
    store.save(&store_path(index.path())).unwrap();

    // Another index (same mapping, created later) refuses it.
    let other = BehaviorIndex::create(dir.path().join("b"), &mapping).unwrap();
    std::fs::create_dir_all(other.path().join("embeddings")).unwrap();
    std::fs::copy(store_path(index.path()), store_path(other.path())).unwrap();
    if IndexRef::of(&other).id != IndexRef::of(&index).id {
        let err = EmbeddingStore::open_for(&other).unwrap_err();
        assert!(matches!(err, EmbeddingError::WrongIndex { .. }), "{err}");
    }
    let missing = tempfile::tempdir().unwrap();
    let fresh = BehaviorIndex::create(missing.path().join("c"), &mapping).unwrap();
    assert!(matches!(
        Embeddings::open(&fresh).unwrap_err(),
        EmbeddingError::Missing(_)
    ));

    let emb = Embeddings::open(&index).unwrap();
    let w = emb.warm(&snap);
    assert_eq!(w.built, 0);
    assert_eq!(w.kept, snap.segments().len());
    // Append an item the store does not hold, in a new segment.
    index.append(&[nb(1, 99, 20, 300)]).unwrap();
    let snap = index.refresh().unwrap();
    let w = emb.warm(&snap);
    assert!(w.built >= 1, "{w:?}");
    assert_eq!(w.unknown_items, 1);
    let h = snap.history(1);
    let mut seen = 0;
    for run in h.runs() {
        let codes = emb.segment(run.seg);
        for doc in run.start..run.end {
            let item = run.seg.item(doc);
            let v = codes.vector(emb.store(), doc);
            let expected = match emb.store().row(item) {
                Some(r) => emb.store().vector(r).to_vec(),
                None => emb
                    .store()
                    .features_vector(&ItemFeatures::with_categories(vec![20])),
            };
            assert_eq!(v, &expected[..], "item {item}");
            assert_eq!(codes.eta()[doc as usize], emb.store().eta_of(v));
            assert_eq!(codes.sdim()[doc as usize], emb.store().sdim_of(v));
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
}

/// Summed tables (SASRec's item tower): an unseen item's vector is the
/// item OOV row plus the mean of its category rows plus the mean of its tag
/// rows; the choice survives save and load; widths that cannot be summed
/// are refused.
#[test]
fn summed_parts_make_sasrec_item_vectors() {
    let tables = FeatureTables {
        combine: FeatureCombine::Sum,
        item_oov: vec![0.5, -0.5],
        categories: FeatureTable {
            ids: vec![10, 20],
            rows: vec![1.0, 0.0, 0.0, 1.0],
            oov: vec![-1.0, -1.0],
        },
        tags: Some(FeatureTable {
            ids: vec![3],
            rows: vec![2.0, 4.0],
            oov: vec![0.0, 0.0],
        }),
        max_categories: 2,
        max_tags: 1,
    };
    let store = EmbeddingStore::build(
        vec![1],
        vec![9.0, 9.0],
        2,
        tables.clone(),
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap();
    let f = ItemFeatures {
        categories: vec![10, 20],
        tags: vec![3],
    };
    // [0.5, -0.5] + mean([1, 0], [0, 1]) + [2, 4]
    assert_eq!(store.features_vector(&f), vec![3.0, 4.0]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.hse");
    store.save(&path).unwrap();
    let back = EmbeddingStore::load(&path).unwrap();
    assert_eq!(back.meta().combine, FeatureCombine::Sum);
    assert_eq!(back.features_vector(&f), vec![3.0, 4.0]);
    let mut bad = tables;
    bad.item_oov = vec![0.5, -0.5, 1.0];
    let err = EmbeddingStore::build(
        vec![1],
        vec![9.0, 9.0, 9.0],
        3,
        bad,
        HashSettings::default(),
        model(),
        index_ref(),
    )
    .unwrap_err();
    assert!(matches!(err, EmbeddingError::Dimension { .. }), "{err}");
}

/// A version 1 file (written before `combine` existed) still loads, as
/// concatenated parts.
#[test]
fn version_one_files_load_as_concatenated() {
    let store = sample_store();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.hse");
    store.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + hlen]).unwrap();
    assert!(header.as_object_mut().unwrap().remove("combine").is_some());
    let header = serde_json::to_vec(&header).unwrap();
    let mut v1 = Vec::new();
    v1.extend_from_slice(&bytes[..8]);
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(header.len() as u32).to_le_bytes());
    v1.extend_from_slice(&header);
    v1.extend_from_slice(&bytes[16 + hlen..bytes.len() - 32]);
    let sum = <sha2::Sha256 as sha2::Digest>::digest(&v1);
    v1.extend_from_slice(&sum);
    std::fs::write(&path, &v1).unwrap();
    let back = EmbeddingStore::load(&path).unwrap();
    assert_eq!(back.meta().combine, FeatureCombine::Concat);
    assert_eq!(back.vector(0), store.vector(0));
    let f = ItemFeatures::with_categories(vec![10]);
    assert_eq!(back.features_vector(&f), store.features_vector(&f));
}

/// The narrow target lookups the strategies use give what `target` gives,
/// for a stored item and for one made from its features.
#[test]
fn narrow_target_lookups_agree_with_target() {
    let store = sample_store();
    for target in [
        Target {
            item_id: 5,
            features: ItemFeatures::with_categories(vec![10]),
        },
        Target {
            item_id: 99,
            features: ItemFeatures::with_categories(vec![20, 30]),
        },
    ] {
        let all = store.target(&target);
        assert_eq!(&store.target_vector(&target)[..], &all.vector[..]);
        assert_eq!(store.target_eta(&target), all.eta);
        assert_eq!(store.target_sdim(&target), all.sdim);
    }
}
