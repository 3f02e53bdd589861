use hindsight_core::{Behavior, ItemFeatures};
use hindsight_recall::{RecallSplit, UserSequence};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::data::{bce_negatives, build_vocab, Sampler, SeqBatch, Window};
use super::net::sampled_softmax_loss;
use super::train::rank_metrics;
use super::*;
use crate::{Device, FeatureVocab, ModelConfig, ModelError, ModelKind, TrainedModel};

const ITEMS: u64 = 30;

fn features(item: u64) -> ItemFeatures {
    let mut f = ItemFeatures::with_categories(vec![item % 5, 10 + item % 3]);
    f.tags = vec![item % 7];
    f
}

/// `users` users walking a cycle of `ITEMS` items (item `i` is followed by
/// `i + 1`), each from its own start: learnable, the next item is certain.
fn cyclic_split(users: u64, len: u64) -> RecallSplit {
    let users = (0..users)
        .map(|u| UserSequence {
            user: u + 1,
            behaviors: (0..len)
                .map(|k| {
                    let item = 100 + (u * 7 + k) % ITEMS;
                    Behavior {
                        user_id: u + 1,
                        seq: k as u32,
                        item_id: item,
                        features: features(item),
                        behavior_type: (k % 2) as u8,
                        timestamp: 1_000_000 + 60 * k as i64 + (k * k) as i64,
                    }
                })
                .collect(),
        })
        .collect();
    RecallSplit {
        users,
        catalog: (100..100 + ITEMS).map(|i| (i, features(i))).collect(),
        skipped_users: 0,
    }
}

fn small_config() -> SasRecConfig {
    SasRecConfig {
        dim: 16,
        heads: 2,
        blocks: 2,
        max_len: 8,
        dropout: 0.1,
        epochs: 3,
        batch_size: 16,
        loss: RecallLoss::SampledSoftmax { negatives: 8 },
        seed: 7,
        ..SasRecConfig::default()
    }
}

fn trained(cfg: &SasRecConfig) -> (TrainedRecall, RecallTrainReport) {
    TrainedRecall::train(&cyclic_split(40, 14), cfg, tch::Device::Cpu, |_| {}).unwrap()
}

#[test]
fn sampled_loss_matches_a_hand_computed_value() {
    let t = |v: &[f32], r: i64, c: i64| Tensor::from_slice(v).view([r, c]);
    // One position: h = (1, 0); positive (1, 0): s+ = 1; negatives
    // (0, 1) and (2, 0): s = 0, 2.
    let h = t(&[1.0, 0.0], 1, 2);
    let pos = t(&[1.0, 0.0], 1, 2);
    let neg = t(&[0.0, 1.0, 2.0, 0.0], 2, 2);
    let pos_ids = Tensor::from_slice(&[5i64]);
    let loss = sampled_softmax_loss(
        &h,
        &pos,
        &neg,
        &pos_ids,
        &Tensor::from_slice(&[6i64, 7]),
        None,
    )
    .double_value(&[]);
    let expected = (1f64.exp() + 0f64.exp() + 2f64.exp()).ln() - 1.0; // 1.4076
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    // The negative with the positive's id (7 -> 5 here) is masked out.
    let loss = sampled_softmax_loss(
        &h,
        &pos,
        &neg,
        &pos_ids,
        &Tensor::from_slice(&[6i64, 5]),
        None,
    )
    .double_value(&[]);
    let expected = (1f64.exp() + 0f64.exp()).ln() - 1.0;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    // The log-Q correction subtracts ln Q(id) from every logit.
    let log_q = Tensor::from_slice(&[0f32, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -0.5]);
    let loss = sampled_softmax_loss(
        &h,
        &pos,
        &neg,
        &pos_ids,
        &Tensor::from_slice(&[6i64, 7]),
        Some(&log_q),
    )
    .double_value(&[]);
    let (sp, s6, s7) = (1.0 + 1.0, 0.0 + 2.0, 2.0 + 0.5);
    let expected = (f64::exp(sp) + f64::exp(s6) + f64::exp(s7)).ln() - sp;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    // Two positions average.
    let h2 = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
    let pos2 = t(&[1.0, 0.0, 1.0, 0.0], 2, 2);
    let loss = sampled_softmax_loss(
        &h2,
        &pos2,
        &neg,
        &Tensor::from_slice(&[5i64, 5]),
        &Tensor::from_slice(&[6i64, 7]),
        None,
    )
    .double_value(&[]);
    let first = (1f64.exp() + 1.0 + 2f64.exp()).ln() - 1.0;
    let second = (1.0 + 1f64.exp() + 1.0f64).ln() - 0.0;
    assert!((loss - (first + second) / 2.0).abs() < 1e-5, "{loss}");
}

#[test]
fn rank_metrics_match_hand_computed_values() {
    let users = Tensor::from_slice(&[1f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let items = Tensor::from_slice(&[2f32, 0.0, 1.0, 0.0, 0.0, 1.0]).view([3, 2]);
    // User 0, target item 1: one item scores higher (rank 1). User 1,
    // target item 2: first (rank 0); items 0 and 1 score 0 < 1.
    let (hr, ndcg) = rank_metrics(&users, &items, &[1, 2]).unwrap();
    assert!((hr - 1.0).abs() < 1e-12);
    let expected = (1.0 / 3f64.log2() + 1.0) / 2.0;
    assert!((ndcg - expected).abs() < 1e-9, "{ndcg} vs {expected}");
}

#[test]
fn causal_mask_hides_the_future_in_sasrec() {
    let cfg = small_config();
    let split = cyclic_split(4, 10);
    let vocab = build_vocab(&split, &cfg);
    let net = checkpoint::RecallNet::new(&cfg, &vocab, tch::Device::Cpu).unwrap();
    let seq = split.users[0].behaviors.clone();
    let mut changed = seq.clone();
    let last = changed.len() - 1;
    changed[last].item_id = 120;
    changed[last].features = features(120);
    changed[last].behavior_type = 1;
    let out = |s: &[Behavior]| {
        let w = Window::last(s, cfg.max_len);
        let batch = SeqBatch::new(&vocab, &[w], cfg.max_len, false, tch::Device::Cpu);
        tch::no_grad(|| net.net.encode(&batch, false).unwrap())
    };
    let (a, b) = (out(&seq), out(&changed));
    let l = a.size()[1];
    let diff_early = (a.narrow(1, 0, l - 1) - b.narrow(1, 0, l - 1))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff_early < 1e-6, "{diff_early}");
    let diff_last = (a.select(1, l - 1) - b.select(1, l - 1))
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff_last > 1e-4, "{diff_last}");
}

#[test]
fn a_user_vector_does_not_depend_on_padding_or_batch_mates() {
    let (model, _) = trained(&SasRecConfig {
        epochs: 1,
        ..small_config()
    });
    let split = cyclic_split(3, 12);
    let short = &split.users[0].behaviors[..3];
    let mut long = split.users[1].behaviors.clone();
    // A batch mate with more categories and tags widens the feature
    // columns of the batch.
    long[0].features.categories = vec![1, 2, 3, 4, 10, 11];
    long[0].features.tags = vec![1, 2, 3, 4, 5];
    let alone = model.user_vectors(&[short]).unwrap();
    let together = model.user_vectors(&[&long, short]).unwrap();
    let d = model.dim();
    assert_eq!(together.len(), 2 * d);
    for (x, y) in alone.iter().zip(&together[d..]) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    let err = model.user_vectors(&[&[]]).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn training_learns_the_next_item_with_every_loss() {
    for loss in [
        RecallLoss::SampledSoftmax { negatives: 8 },
        RecallLoss::FullSoftmax,
        RecallLoss::Bce,
    ] {
        let cfg = SasRecConfig {
            loss,
            epochs: 30,
            patience: 0,
            lr: 5e-3,
            ..small_config()
        };
        let mut epochs = 0;
        let (_model, report) =
            TrainedRecall::train(&cyclic_split(40, 14), &cfg, tch::Device::Cpu, |p| {
                if let RecallProgress::Epoch(_) = p {
                    epochs += 1;
                }
            })
            .unwrap();
        assert_eq!(epochs, 30);
        assert_eq!(report.epochs.len(), 30);
        assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
        // Chance is 10 of 30 items: the cycle is learnt well above that.
        assert!(
            report.best_valid_hr10 > 0.8,
            "{loss}: best HR@10 {} (epochs {:?})",
            report.best_valid_hr10,
            report
                .epochs
                .iter()
                .map(|e| e.valid_hr10)
                .collect::<Vec<_>>()
        );
        let first = report.epochs[0].train_loss;
        let last = report.epochs.last().unwrap().train_loss;
        assert!(last < first, "{loss}: loss {first} -> {last}");
        assert_eq!(report.train_users, 40);
        // Every transition of the 12 training behaviors, in windows of 8
        // and 3 predicted positions.
        assert_eq!(report.train_positions, 40 * 11);
        assert_eq!(report.catalog_items, ITEMS as usize);
    }
}

#[test]
fn save_and_load_give_identical_vectors() {
    let (model, _) = trained(&small_config());
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = TrainedRecall::load(dir.path(), tch::Device::Cpu).unwrap();
    assert_eq!(loaded.weights_sha256(), model.weights_sha256());
    assert_eq!(loaded.config(), model.config());
    let split = cyclic_split(3, 12);
    let histories: Vec<&[Behavior]> = split.users.iter().map(|u| u.test_history()).collect();
    assert_eq!(
        model.user_vectors(&histories).unwrap(),
        loaded.user_vectors(&histories).unwrap()
    );
    let mut items = split.catalog.clone();
    items.push((999_999, features(3)));
    assert_eq!(
        model.item_vectors(&items).unwrap(),
        loaded.item_vectors(&items).unwrap()
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kind"], "sasrec");
    assert_eq!(config["weights_sha256"], model.weights_sha256());
}

#[test]
fn an_unseen_item_gets_a_finite_vector_from_its_features() {
    let (model, _) = trained(&small_config());
    let unseen = [
        (5_000_001, features(1)),
        (5_000_002, features(2)),
        (5_000_003, ItemFeatures::default()),
        // Unknown categories and tags as well.
        (5_000_004, {
            let mut f = ItemFeatures::with_categories(vec![77_777]);
            f.tags = vec![88_888];
            f
        }),
    ];
    let v = model.item_vectors(&unseen).unwrap();
    let d = model.dim();
    assert_eq!(v.len(), 4 * d);
    assert!(v.iter().all(|x| x.is_finite()));
    // The features make the difference: two unseen ids with other
    // features get other vectors.
    assert_ne!(&v[..d], &v[d..2 * d]);
    // An unseen id with a known item's features: the OOV row instead of
    // the item's own, the same feature part.
    let known = model.item_vectors(&[(101, features(1))]).unwrap();
    assert_ne!(&known[..], &v[..d]);
}

#[test]
fn a_ctr_loader_refuses_a_sasrec_checkpoint_and_back() {
    let (model, _) = trained(&SasRecConfig {
        epochs: 1,
        ..small_config()
    });
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let err = TrainedModel::load(dir.path(), Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::RecallModel { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("is a recall model (SASRec); use it with `recommend --model`, rank with a CTR model via --rank-with"),
        "{msg}"
    );
    let ctr_dir = tempfile::tempdir().unwrap();
    let ctr = TrainedModel::init(
        ModelConfig::new(ModelKind::SumPool),
        FeatureVocab::default(),
        4,
        Device::Cpu,
    )
    .unwrap();
    ctr.save(ctr_dir.path()).unwrap();
    let err = TrainedRecall::load(ctr_dir.path(), tch::Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotARecallModel { .. }), "{err}");
    assert!(err.to_string().contains("sum_pool"), "{err}");
    assert!(err.to_string().contains("--model sasrec"), "{err}");
}

#[test]
fn a_damaged_checkpoint_is_refused() {
    let (model, _) = trained(&SasRecConfig {
        epochs: 1,
        ..small_config()
    });
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let weights = dir.path().join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x40;
    std::fs::write(&weights, &bytes).unwrap();
    let err = TrainedRecall::load(dir.path(), tch::Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::WeightsChecksum { .. }), "{err}");
    let err = TrainedRecall::load(&dir.path().join("nope"), tch::Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingCheckpoint(_)), "{err}");
}

#[test]
fn non_finite_weights_are_refused() {
    let (model, _) = trained(&SasRecConfig {
        epochs: 1,
        ..small_config()
    });
    let dir = tempfile::tempdir().unwrap();
    {
        let net = model.net.lock().unwrap();
        tch::no_grad(|| {
            let vars = net.vs.variables();
            let _ = vars["item"].shallow_clone().fill_(f64::NAN);
        });
    }
    model.save(dir.path()).unwrap();
    let err = TrainedRecall::load(dir.path(), tch::Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NonFiniteWeights { .. }), "{err}");
}

#[test]
fn too_many_negatives_is_a_clear_error() {
    let cfg = SasRecConfig {
        loss: RecallLoss::SampledSoftmax { negatives: 500 },
        ..small_config()
    };
    let err =
        TrainedRecall::train(&cyclic_split(10, 8), &cfg, tch::Device::Cpu, |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--negatives 500") && msg.contains("30 items"),
        "{msg}"
    );
    let err = SasRecConfig {
        heads: 3,
        ..small_config()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("--heads"), "{err}");
    assert!(RecallLoss::parse("hinge", 1)
        .unwrap_err()
        .to_string()
        .contains("bce"));
    assert_eq!(
        RecallLoss::parse("full-softmax", 1).unwrap(),
        RecallLoss::FullSoftmax
    );
}

#[test]
fn popularity_sampling_trains_and_draws_in_range() {
    let counts = [0u64, 0, 10, 0, 5];
    let sampler = Sampler::popularity(&counts, tch::Device::Cpu);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let draws = sampler.draw_many(2000, &mut rng);
    assert!(draws.iter().all(|&d| (2..5).contains(&d)));
    let frequent = draws.iter().filter(|&&d| d == 2).count();
    let rare = draws.iter().filter(|&&d| d == 3).count();
    assert!(frequent > 5 * rare, "{frequent} vs {rare}");
    let q = Vec::<f32>::try_from(sampler.log_q.as_ref().unwrap().exp()).unwrap();
    assert!((q[2..].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let cfg = SasRecConfig {
        sampling: NegativeSampling::Popularity,
        epochs: 2,
        ..small_config()
    };
    let (_, report) = trained(&cfg);
    assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
}

proptest! {
    #[test]
    fn bce_negatives_never_equal_their_positive(
        targets in proptest::collection::vec(0i64..6, 1..40),
        seed in 0u64..1000,
    ) {
        let sampler = Sampler::uniform(6);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let targets: Vec<i64> = targets.into_iter().map(|t| if t == 1 { 0 } else { t }).collect();
        let neg = bce_negatives(&targets, &sampler, &mut rng);
        for (t, n) in targets.iter().zip(&neg) {
            if *t == 0 {
                prop_assert_eq!(*n, 0);
            } else {
                prop_assert!(*n != *t && (2..6).contains(n));
            }
        }
    }
}

#[test]
fn item_tower_pools_features_on_padding_zero() {
    // Items given with many categories and with none: all finite and the
    // padding columns do not count.
    let (model, _) = trained(&SasRecConfig {
        epochs: 1,
        ..small_config()
    });
    let one = model.item_vectors(&[(101, features(1))]).unwrap();
    let with_wide = model
        .item_vectors(&[
            (101, features(1)),
            (102, {
                let mut f = ItemFeatures::with_categories(vec![0, 1, 2, 3, 4, 10, 11, 12]);
                f.tags = (0..7).collect();
                f
            }),
        ])
        .unwrap();
    for (a, b) in one.iter().zip(&with_wide) {
        assert!((a - b).abs() < 1e-6);
    }
}
