//! Integrity of checkpoints: the weights checksum, non-finite weights and
//! the probe batch.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use hindsight_core::{Behavior, ItemFeatures, Target};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::*;

fn examples(count: usize) -> Vec<Example> {
    (0..count)
        .map(|i| {
            let item = |k: usize| (k * 7 + i) as u64 % 300;
            Example {
                user_id: (i % 20) as u64,
                label: (i % 2) as u8,
                target: Target {
                    item_id: item(0),
                    features: ItemFeatures::with_categories(vec![item(0) % 10]),
                },
                timestamp: 1_000_000 + i as i64,
                history: (0..5)
                    .map(|s| Behavior {
                        user_id: (i % 20) as u64,
                        seq: s as u32,
                        item_id: item(s + 1),
                        features: ItemFeatures::with_categories(vec![item(s + 1) % 10]),
                        behavior_type: (s % 3) as u8,
                        timestamp: 999_000 + s as i64,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// An untrained DIN checkpoint in `dir` (weights well over 50 KB), and
/// the examples its vocabulary was built from.
fn saved(dir: &Path) -> (TrainedModel, Vec<Example>) {
    let ex = examples(100);
    let cfg = ModelConfig {
        kind: ModelKind::Din,
        embedding_dim: 64,
        mlp_hidden: vec![128, 64],
        attention_hidden: vec![32],
        ..ModelConfig::default()
    };
    let model = TrainedModel::init(cfg, FeatureVocab::build(&ex), 5, Device::Cpu).unwrap();
    model.save(dir).unwrap();
    (model, ex)
}

fn config_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE)).unwrap()).unwrap()
}

fn write_config(dir: &Path, json: &serde_json::Value) {
    std::fs::write(dir.join(CONFIG_FILE), json.to_string()).unwrap();
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites every weight tensor with `f`, recording the new file's sha256
/// (as a save of those weights would).
fn rewrite_weights(dir: &Path, f: impl Fn(&Tensor) -> Tensor) {
    let path = dir.join(WEIGHTS_FILE);
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let t2 = f(&t);
            (n, t2)
        })
        .collect();
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let mut json = config_json(dir);
    json["weights_sha256"] = serde_json::Value::from(sha256(&path));
    write_config(dir, &json);
}

#[test]
fn save_records_the_weights_sha256_and_load_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ex) = saved(dir.path());
    let json = config_json(dir.path());
    assert_eq!(
        json["weights_sha256"].as_str().unwrap(),
        sha256(&dir.path().join(WEIGHTS_FILE))
    );
    let loaded = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.score(&ex).unwrap(), model.score(&ex).unwrap());
}

#[test]
fn random_bytes_in_the_weights_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let path = dir.path().join(WEIGHTS_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 100_000, "weights are {len} bytes");
    let mut x = 0x853c_49e6_748f_ea9bu64;
    let noise: Vec<u8> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(len / 2 - 25_000)).unwrap();
    f.write_all(&noise).unwrap();
    drop(f);
    let err = TrainedModel::load(dir.path(), Device::Cpu).unwrap_err();
    match &err {
        ModelError::WeightsChecksum {
            path: p,
            expected,
            found,
        } => {
            assert_eq!(p, &path);
            assert_ne!(expected, found);
        }
        other => panic!("expected WeightsChecksum, got {other}"),
    }
    assert!(err.to_string().contains("restore the checkpoint"), "{err}");
}

#[test]
fn nan_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    rewrite_weights(dir.path(), |t| t.full_like(f64::NAN));
    let err = TrainedModel::load(dir.path(), Device::Cpu).unwrap_err();
    match &err {
        ModelError::NonFiniteWeights { count, .. } => assert!(*count > 0),
        other => panic!("expected NonFiniteWeights, got {other}"),
    }
    // One infinite value in one tensor is enough.
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    rewrite_weights(dir.path(), |t| {
        let t = t.copy();
        if t.numel() > 3 {
            let _ = t.view(-1).get(3).fill_(f64::INFINITY);
        }
        t
    });
    let err = TrainedModel::load(dir.path(), Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::NonFiniteWeights { count: 1, .. }),
        "{err}"
    );
}

#[test]
fn finite_weights_that_score_non_finite_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    // Finite, but the forward pass overflows (inf - inf = NaN).
    rewrite_weights(dir.path(), |t| t.full_like(1e30));
    let err = TrainedModel::load(dir.path(), Device::Cpu).unwrap_err();
    match &err {
        ModelError::NonFiniteScores { count, total, .. } => {
            assert!(*count > 0 && *count <= *total, "{count} of {total}")
        }
        other => panic!("expected NonFiniteScores, got {other}"),
    }
}

#[test]
fn a_checkpoint_without_the_checksum_field_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ex) = saved(dir.path());
    let mut json = config_json(dir.path());
    let removed = json.as_object_mut().unwrap().remove("weights_sha256");
    assert!(removed.is_some());
    write_config(dir.path(), &json);
    let loaded = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(loaded.score(&ex).unwrap(), model.score(&ex).unwrap());
    // Saving it again records the checksum.
    loaded.save(dir.path()).unwrap();
    assert!(config_json(dir.path())["weights_sha256"].is_string());
}

#[test]
fn item_vectors_are_the_item_representation_and_the_tables_rebuild_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ex) = saved(dir.path());
    let model = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    let sha = model.weights_sha256().unwrap().to_owned();
    assert_eq!(sha.len(), 64);
    let dim = model.item_vector_dim();
    // DIN with tags: [item, mean category, mean tag], 64 each.
    assert_eq!(dim, 3 * 64);
    let known = ex[0].target.clone();
    let unseen = Target {
        item_id: 987_654,
        features: ItemFeatures {
            categories: vec![1, 2, 424_242],
            tags: vec![],
        },
    };
    let v = model
        .item_vectors(&[known.clone(), unseen.clone()])
        .unwrap();
    assert_eq!(v.len(), 2 * dim);
    let t = model.item_feature_tables().unwrap();
    assert_eq!(t.part_dim, 64);
    // The unseen item: OOV item row, mean of its (first max_categories)
    // category rows (an unknown one takes the OOV row), no tags: zeros.
    let cats: Vec<&[f32]> = unseen
        .features
        .categories
        .iter()
        .take(t.max_categories.max(1))
        .map(|c| match t.category_ids.iter().position(|x| x == c) {
            Some(p) => &t.category_rows[p * 64..(p + 1) * 64],
            None => &t.category_oov[..],
        })
        .collect();
    let mut want = t.item_oov.clone();
    want.extend((0..64).map(|j| cats.iter().map(|r| r[j]).sum::<f32>() / cats.len() as f32));
    want.extend(std::iter::repeat_n(0.0, 64));
    let got = &v[dim..];
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-6, "max difference {diff}");
    // The known item's vector differs from the unseen one's item part.
    assert_ne!(&v[..64], &t.item_oov[..]);
}
