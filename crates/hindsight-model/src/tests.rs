//! Unit tests over small seeded synthetic examples.

use std::path::Path;
use std::sync::Arc;

use hindsight_core::{Behavior, ItemFeatures, Target};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::trained::Net;
use crate::*;

const CATEGORIES: u64 = 10;
const ITEMS: u64 = 200;

fn features(item: u64) -> ItemFeatures {
    // A second "genre" on some items exercises multi-valued pooling.
    let mut cats = vec![item % CATEGORIES];
    if item.is_multiple_of(7) {
        cats.push(CATEGORIES + item % 3);
    }
    let mut f = ItemFeatures::with_categories(cats);
    if item.is_multiple_of(5) {
        f.tags = vec![item % 4, 10 + item % 2];
    }
    f
}

fn behavior(user: u64, seq: u32, item: u64, ts: i64) -> Behavior {
    Behavior {
        user_id: user,
        seq,
        item_id: item,
        features: features(item),
        behavior_type: (item % 3) as u8,
        timestamp: ts,
    }
}

/// Label 1 exactly when the target's category appears in the history.
fn synthetic(count: usize, history: usize, seed: u64) -> Vec<Example> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let user = (i % 50) as u64;
            let now = 1_000_000 + i as i64 * 100;
            let len = rng.random_range(1..=history);
            let hist: Vec<Behavior> = (0..len)
                .map(|s| {
                    let item = rng.random_range(0..ITEMS);
                    behavior(user, s as u32, item, now - rng.random_range(1..500_000))
                })
                .collect();
            let seen: Vec<u64> = hist.iter().map(|b| b.item_id % CATEGORIES).collect();
            // With every category seen no negative exists: the example is positive.
            let positive = rng.random_bool(0.5) || (0..CATEGORIES).all(|c| seen.contains(&c));
            let item = loop {
                let item = rng.random_range(0..ITEMS);
                if seen.contains(&(item % CATEGORIES)) == positive {
                    break item;
                }
            };
            // Shuffle the history: the crate must sort by seq itself.
            let mut hist = hist;
            hist.reverse();
            Example {
                user_id: user,
                label: u8::from(positive),
                target: Target {
                    item_id: item,
                    features: features(item),
                },
                timestamp: now,
                history: hist,
            }
        })
        .collect()
}

fn small_config(kind: ModelKind) -> ModelConfig {
    ModelConfig {
        kind,
        embedding_dim: 8,
        transformer_dim: 16,
        transformer_heads: 2,
        mlp_hidden: vec![32, 16],
        attention_hidden: vec![16],
        aux_hidden: vec![16],
        batch_size: 64,
        epochs: 3,
        ..ModelConfig::default()
    }
}

const KINDS: [ModelKind; 5] = ModelKind::ALL;

fn cpu_opts(n: usize, seed: u64) -> TrainOptions {
    TrainOptions {
        device: Device::Cpu,
        n,
        seed: Some(seed),
        progress: None,
    }
}

#[test]
fn tiny_forward_pass() {
    let examples = synthetic(4, 6, 1);
    let vocab = FeatureVocab::build(&examples);
    for kind in KINDS {
        let net = Net::new(&small_config(kind), &vocab, tch::Device::Cpu);
        let mut batch = Batch::new(&examples, &vocab, 8, tch::Device::Cpu).unwrap();
        // The history axis is as wide as the longest history, not N = 8.
        let longest = examples.iter().map(|e| e.history.len()).max().unwrap() as i64;
        assert!(longest < 8);
        assert_eq!(batch.history_items.size(), [4, longest]);
        assert_eq!(batch.history_categories.size()[..2], [4, longest]);
        batch.sample_negatives(&mut ChaCha8Rng::seed_from_u64(0));
        let out = net.model.forward_t(&batch, true);
        assert_eq!(out.logits.size(), [4], "{kind}");
        let logits = Vec::<f32>::try_from(&out.logits).unwrap();
        assert!(logits.iter().all(|x| x.is_finite()), "{kind}: {logits:?}");
        assert_eq!(out.aux_loss.is_some(), kind == ModelKind::Dien, "{kind}");
        let eval = net.model.forward(&batch, false);
        assert_eq!(eval.size(), [4]);
    }
}

#[test]
fn batch_sorts_truncates_and_pads() {
    let mut ex = synthetic(1, 1, 3).remove(0);
    ex.history = (0..5)
        .rev()
        .map(|s| behavior(1, s, 10 + u64::from(s), 100))
        .collect();
    let vocab = FeatureVocab::build(std::slice::from_ref(&ex));
    let batch = Batch::new(std::slice::from_ref(&ex), &vocab, 3, tch::Device::Cpu).unwrap();
    // The 3 largest seqs (items 12, 13, 14), oldest first.
    let items = Vec::<i64>::try_from(batch.history_items.view([-1])).unwrap();
    assert_eq!(items, vec![vocab.item(12), vocab.item(13), vocab.item(14)]);
    let padded = Batch::new(std::slice::from_ref(&ex), &vocab, 8, tch::Device::Cpu).unwrap();
    // Padded only to the longest history of the batch.
    let mask = Vec::<f32>::try_from(padded.mask.view([-1])).unwrap();
    assert_eq!(mask, vec![1., 1., 1., 1., 1.]);
    assert_eq!((padded.n(), padded.lengths.int64_value(&[0])), (5, 5));
    let mut short = ex.clone();
    short.history.truncate(2);
    let two = Batch::new(&[ex.clone(), short], &vocab, 8, tch::Device::Cpu).unwrap();
    let mask = Vec::<f32>::try_from(two.mask.view([-1])).unwrap();
    assert_eq!(mask, vec![1., 1., 1., 1., 1., 1., 1., 0., 0., 0.]);
    let mut cold = ex.clone();
    cold.history.clear();
    let empty = Batch::new(&[cold], &vocab, 8, tch::Device::Cpu).unwrap();
    assert_eq!(
        empty.n(),
        1,
        "an empty history still has one (padding) slot"
    );
    assert!(Batch::new(&[], &vocab, 8, tch::Device::Cpu).is_err());
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn padding_does_not_change_scores() {
    let examples = synthetic(6, 9, 2);
    let vocab = FeatureVocab::build(&examples);
    // DIEN also without the sum-pooled history (the paper's figure 2).
    let paper_dien = ModelConfig {
        dien_sum_pooling: false,
        ..small_config(ModelKind::Dien)
    };
    let configs = KINDS.map(small_config).into_iter().chain([paper_dien]);
    for cfg in configs {
        let kind = format!("{} (sum pooling {})", cfg.kind, cfg.dien_sum_pooling);
        let short = TrainedModel::init(cfg.clone(), vocab.clone(), 10, Device::Cpu).unwrap();
        let long = TrainedModel::init(cfg, vocab.clone(), 50, Device::Cpu).unwrap();
        let a = short.score(&examples).unwrap();
        let b = long.score(&examples).unwrap();
        assert_close(&a, &b, &format!("{kind}: N=10 vs N=50"));
        // Alone or in a batch with longer histories: the same score.
        let alone: Vec<f32> = examples
            .iter()
            .flat_map(|e| long.score(std::slice::from_ref(e)).unwrap())
            .collect();
        assert_close(&alone, &b, &format!("{kind}: alone vs batched"));
    }
}

/// ATRank projects each behavior with its own type's matrix: the same
/// history with one behavior's type changed scores differently; BST embeds
/// the type in the behavior's token.
#[test]
fn changing_a_behavior_type_changes_atrank_and_bst_scores() {
    let mut examples = synthetic(6, 9, 22);
    for e in &mut examples {
        for b in &mut e.history {
            b.behavior_type = 0;
        }
    }
    let mut changed = examples.clone();
    changed[0].history[0].behavior_type = 2;
    // The vocabulary knows both types.
    let vocab = FeatureVocab::build(&[examples.clone(), changed.clone()].concat());
    for kind in [ModelKind::Atrank, ModelKind::Bst] {
        let model = TrainedModel::init(small_config(kind), vocab.clone(), 10, Device::Cpu).unwrap();
        let a = model.score(&examples).unwrap();
        let b = model.score(&changed).unwrap();
        assert!((a[0] - b[0]).abs() > 1e-7, "{kind}: {} vs {}", a[0], b[0]);
        // The other examples are untouched.
        assert_eq!(a[1..], b[1..], "{kind}");
    }
    // ATRank's projection is per type: with two types' rows made equal,
    // the change no longer shows (the type reaches ATRank only there).
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let atrank = Atrank::new(&vs.root(), &small_config(ModelKind::Atrank), &vocab);
    let batch = |ex: &[Example]| Batch::new(ex, &vocab, 10, tch::Device::Cpu).unwrap();
    let score = |ex: &[Example]| Vec::<f32>::try_from(atrank.forward(&batch(ex), false)).unwrap();
    assert_ne!(score(&examples)[0], score(&changed)[0]);
    let (t0, t2) = (vocab.behavior_type(0), vocab.behavior_type(2));
    tch::no_grad(|| {
        let vars = vs.variables();
        let dim = 16;
        for name in ["type_projection.weight", "type_projection.bias"] {
            let w = &vars[name];
            let src = w.narrow(0, t0 * dim, dim).copy();
            w.narrow(0, t2 * dim, dim).copy_(&src);
        }
    });
    assert_eq!(score(&examples)[0], score(&changed)[0]);
}

#[test]
fn dien_aux_loss_reaches_the_extractor() {
    let examples = synthetic(8, 6, 4);
    let vocab = FeatureVocab::build(&examples);
    let cfg = small_config(ModelKind::Dien);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let dien = Dien::new(&vs.root(), &cfg, &vocab);
    let mut batch = Batch::new(&examples, &vocab, 6, tch::Device::Cpu).unwrap();
    assert!(dien.forward_t(&batch, true).aux_loss.is_none());
    batch.sample_negatives(&mut ChaCha8Rng::seed_from_u64(9));
    let aux = dien
        .forward_t(&batch, true)
        .aux_loss
        .expect("aux loss with negatives");
    assert!(aux.double_value(&[]) > 0.0);
    aux.backward();
    for w in [&dien.extractor.input.weight, &dien.extractor.hidden.weight] {
        let g = w.grad();
        assert!(g.defined(), "no gradient on the extractor GRU");
        assert!(g.abs().sum(tch::Kind::Float).double_value(&[]) > 0.0);
    }
}

#[test]
fn din_learns_a_synthetic_task() {
    let train_set = synthetic(1600, 12, 5);
    let valid_set = synthetic(400, 12, 6);
    let mut cfg = small_config(ModelKind::Din);
    cfg.epochs = 8;
    cfg.patience = 0;
    cfg.learning_rate = 5e-3;
    let mut events = 0usize;
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = counter.clone();
    let opts = TrainOptions {
        progress: Some(Box::new(move |_| {
            c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })),
        ..cpu_opts(12, 7)
    };
    let (_model, report) = train(&cfg, &train_set, &valid_set, opts).unwrap();
    println!("{report:#?}");
    events += counter.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(report.epochs.len(), 8);
    assert_eq!(events, 8 * (1600 / 64) + 8);
    let first = report.epochs[0].train_loss;
    let last = report.epochs[7].train_loss;
    assert!(last < first * 0.8, "loss did not fall: {first} -> {last}");
    let auc = report.best_valid_auc.unwrap();
    assert!(auc > 0.8, "valid auc {auc}");
    assert!(report.epochs.iter().all(|e| e.samples_per_sec > 0.0));
}

#[test]
fn training_is_deterministic_given_a_seed() {
    let train_set = synthetic(300, 8, 8);
    let valid_set = synthetic(100, 8, 9);
    let test_set = synthetic(50, 8, 10);
    for kind in [
        ModelKind::Din,
        ModelKind::Dien,
        ModelKind::Atrank,
        ModelKind::Bst,
    ] {
        let mut cfg = small_config(kind);
        cfg.epochs = 2;
        let run = |seed| {
            let (m, r) = train(&cfg, &train_set, &valid_set, cpu_opts(8, seed)).unwrap();
            (
                m.score(&test_set).unwrap(),
                r.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
            )
        };
        let (a, la) = run(11);
        let (b, lb) = run(11);
        assert_eq!(a, b, "{kind}: scores differ between identical runs");
        assert_eq!(la, lb, "{kind}: losses differ between identical runs");
        let (c, _) = run(12);
        assert_ne!(a, c, "{kind}: another seed gives the same model");
    }
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let train_set = synthetic(200, 6, 20);
    // A validation set with random labels: AUC wanders around 0.5.
    let mut valid_set = synthetic(100, 6, 21);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for e in &mut valid_set {
        e.label = u8::from(rng.random_bool(0.5));
    }
    let labels: Vec<u8> = valid_set.iter().map(|e| e.label).collect();
    for metric in [StopMetric::Auc, StopMetric::AucMinusLogloss] {
        let mut cfg = small_config(ModelKind::SumPool);
        cfg.epochs = 30;
        cfg.patience = 1;
        cfg.stop_metric = metric;
        let (model, report) = train(&cfg, &train_set, &valid_set, cpu_opts(6, 1)).unwrap();
        assert!(report.stopped_early, "{metric:?}");
        let score = |e: &EpochReport| metric.score(e.valid_auc, e.valid_logloss);
        let kept = &report.epochs[report.best_epoch - 1];
        assert!(
            report.epochs.iter().all(|e| score(e) <= score(kept)),
            "{metric:?}: epoch {} is not the best",
            kept.epoch
        );
        // The model has the kept epoch's weights.
        let probs = model.score(&valid_set).unwrap();
        let auc = hindsight_core::metrics::auc(&probs, &labels).unwrap();
        let logloss = hindsight_core::metrics::logloss(&probs, &labels);
        assert!(
            (auc - kept.valid_auc.unwrap()).abs() < 1e-9,
            "{metric:?}: restored weights give AUC {auc}, the kept epoch had {:?}",
            kept.valid_auc
        );
        assert!((logloss - kept.valid_logloss).abs() < 1e-6, "{metric:?}");
    }
}

#[test]
fn training_errors_are_clear() {
    let data = synthetic(20, 4, 12);
    let cfg = small_config(ModelKind::Din);
    let err = train(&cfg, &[], &data, cpu_opts(4, 1)).unwrap_err();
    assert!(
        matches!(err, ModelError::EmptySplit { split: "train" }),
        "{err}"
    );
    let err = train(&cfg, &data, &[], cpu_opts(4, 1)).unwrap_err();
    assert!(err.to_string().contains("valid split is empty"), "{err}");
    let mut huge = cfg.clone();
    huge.learning_rate = 10.0;
    let err = train(&huge, &data, &data, cpu_opts(4, 1)).unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)), "{err}");
    let err = train(
        &cfg,
        &data,
        &data,
        TrainOptions {
            n: 0,
            ..cpu_opts(4, 1)
        },
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)), "{err}");

    // A diverged network (a NaN weight) is an error, not a panic.
    let vocab = FeatureVocab::build(&data);
    let net = Net::new(&cfg, &vocab, tch::Device::Cpu);
    tch::no_grad(|| {
        let mut w = net.vs.variables()["mlp.out.bias"].shallow_clone();
        let _ = w.fill_(f64::NAN);
    });
    let err = crate::train::fit(&cfg, &vocab, &net, &data, &data, &mut cpu_opts(4, 1)).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::NonFiniteLoss {
                epoch: 1,
                batch: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("lower the learning rate"));
}

fn checkpoint(kind: ModelKind, dir: &Path) -> (TrainedModel, Vec<Example>) {
    let train_set = synthetic(200, 6, 13);
    let valid_set = synthetic(60, 6, 14);
    let mut cfg = small_config(kind);
    cfg.epochs = 1;
    let (mut model, _) = train(&cfg, &train_set, &valid_set, cpu_opts(6, 2)).unwrap();
    model.set_retrieval(serde_json::json!({"strategy": "sim-hard", "n": 6}));
    model.save(dir).unwrap();
    (model, valid_set)
}

#[test]
fn save_then_load_gives_identical_scores() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let (model, examples) = checkpoint(kind, dir.path());
        let loaded = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
        assert_eq!(loaded.config(), model.config());
        assert_eq!(loaded.vocab(), model.vocab());
        assert_eq!(loaded.n(), 6);
        assert_eq!(loaded.retrieval()["strategy"], "sim-hard");
        assert_eq!(
            loaded.score(&examples).unwrap(),
            model.score(&examples).unwrap(),
            "{kind}"
        );
    }
}

/// A DIEN checkpoint written before `dien_sum_pooling` existed (no such
/// field in its config.json) loads with the architecture it was trained
/// with.
#[test]
fn dien_checkpoint_without_the_sum_pooling_field_loads() {
    let dir = tempfile::tempdir().unwrap();
    let train_set = synthetic(120, 6, 13);
    let valid_set = synthetic(40, 6, 14);
    let cfg = ModelConfig {
        dien_sum_pooling: false,
        epochs: 1,
        ..small_config(ModelKind::Dien)
    };
    let (model, _) = train(&cfg, &train_set, &valid_set, cpu_opts(6, 2)).unwrap();
    model.save(dir.path()).unwrap();
    let path = dir.path().join(CONFIG_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let removed = json["model"]
        .as_object_mut()
        .unwrap()
        .remove("dien_sum_pooling");
    assert_eq!(removed, Some(serde_json::json!(false)));
    std::fs::write(&path, json.to_string()).unwrap();
    let loaded = TrainedModel::load(dir.path(), Device::Cpu).unwrap();
    assert!(!loaded.config().dien_sum_pooling);
    assert_eq!(
        loaded.score(&valid_set).unwrap(),
        model.score(&valid_set).unwrap()
    );
}

#[test]
fn load_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = TrainedModel::load(&missing, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingCheckpoint(_)), "{err}");

    let din = dir.path().join("din");
    checkpoint(ModelKind::Din, &din);
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in [CONFIG_FILE, WEIGHTS_FILE] {
            std::fs::copy(din.join(f), to.join(f)).unwrap();
        }
        to
    };

    let no_weights = copy("no-weights");
    std::fs::remove_file(no_weights.join(WEIGHTS_FILE)).unwrap();
    let err = TrainedModel::load(&no_weights, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::MissingFile(_)), "{err}");

    let bad_config = copy("bad-config");
    std::fs::write(bad_config.join(CONFIG_FILE), b"{ not json").unwrap();
    let err = TrainedModel::load(&bad_config, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::CorruptConfig { .. }), "{err}");

    let bad_weights = copy("bad-weights");
    std::fs::write(bad_weights.join(WEIGHTS_FILE), b"garbage").unwrap();
    let err = TrainedModel::load(&bad_weights, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::CorruptWeights { .. }), "{err}");

    // Weights of another model (DIEN) under DIN's config.
    let mismatch = copy("mismatch");
    let dien = dir.path().join("dien");
    checkpoint(ModelKind::Dien, &dien);
    std::fs::copy(dien.join(WEIGHTS_FILE), mismatch.join(WEIGHTS_FILE)).unwrap();
    let err = TrainedModel::load(&mismatch, Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::WeightsMismatch { .. }), "{err}");
    assert!(err.to_string().contains("save the model again"));
}

#[test]
fn scoring_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TrainedModel>();
    let examples = synthetic(40, 8, 15);
    let vocab = FeatureVocab::build(&examples);
    let model =
        Arc::new(TrainedModel::init(small_config(ModelKind::Din), vocab, 8, Device::Cpu).unwrap());
    let expected = model.score(&examples).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (m, ex) = (model.clone(), examples.clone());
            std::thread::spawn(move || m.score(&ex).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
    // Unknown ids and an empty history score without trouble.
    let mut odd = examples[0].clone();
    odd.target.item_id = 999_999;
    odd.history.clear();
    assert!(model.score(&[odd]).unwrap()[0].is_finite());
    assert!(model.score(&[]).unwrap().is_empty());
}

/// Training throughput (forward, backward and Adam step) of every model,
/// batch 256, N = 50, full histories, one thread:
/// `cargo test -p hindsight-model --release -- --ignored --nocapture train_step_throughput`.
/// Prints the median and p99 of 20 steps after 3 warm-up steps.
#[test]
#[ignore = "a measurement, not a check"]
fn train_step_throughput() {
    use tch::nn::OptimizerConfig;
    tch::set_num_threads(1);
    let mut examples = synthetic(256, 50, 17);
    for (i, e) in examples.iter_mut().enumerate() {
        let len = e.history.len() as u32;
        e.history.extend(
            (len..50).map(|s| behavior(e.user_id, s, (i as u64 * 31 + u64::from(s)) % ITEMS, 0)),
        );
    }
    let vocab = FeatureVocab::build(&examples);
    println!("model | median ms/step | p99 ms/step | samples/s (median)");
    for kind in KINDS {
        let cfg = ModelConfig::new(kind);
        let net = Net::new(&cfg, &vocab, tch::Device::Cpu);
        let mut opt = tch::nn::Adam::default().build(&net.vs, 1e-3).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut times = Vec::new();
        for step in 0..23 {
            let mut batch = Batch::new(&examples, &vocab, 50, tch::Device::Cpu).unwrap();
            batch.sample_negatives(&mut rng);
            let start = std::time::Instant::now();
            let out = net.model.forward_t(&batch, true);
            let mut loss = out.logits.binary_cross_entropy_with_logits(
                &batch.labels,
                None::<&tch::Tensor>,
                None::<&tch::Tensor>,
                tch::Reduction::Mean,
            );
            if let Some(aux) = out.aux_loss {
                loss += aux;
            }
            opt.backward_step(&loss);
            if step >= 3 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).min(times.len()) - 1];
        println!(
            "{kind} | {:.1} | {:.1} | {:.0}",
            median * 1e3,
            p99 * 1e3,
            256.0 / median
        );
    }
}

/// Forward throughput of DIN, batch 1024, N = 50, on the CPU:
/// `cargo test -p hindsight-model --release -- --ignored --nocapture din_forward_throughput`.
#[test]
#[ignore = "a measurement, not a check"]
fn din_forward_throughput() {
    for kind in KINDS {
        // Full histories of 50 behaviors.
        let mut examples = synthetic(1024, 50, 16);
        for (i, e) in examples.iter_mut().enumerate() {
            let len = e.history.len() as u32;
            e.history.extend(
                (len..50)
                    .map(|s| behavior(e.user_id, s, (i as u64 * 31 + u64::from(s)) % ITEMS, 0)),
            );
        }
        let vocab = FeatureVocab::build(&examples);
        let model = TrainedModel::init(ModelConfig::new(kind), vocab, 50, Device::Auto).unwrap();
        let batch = model.batch(&examples).unwrap();
        for _ in 0..3 {
            model.score_batch(&batch).unwrap();
        }
        let runs = 20;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            model.score_batch(&batch).unwrap();
        }
        let secs = start.elapsed().as_secs_f64() / runs as f64;
        println!(
            "{kind} forward, batch 1024, N=50, {}: {:.2} ms/batch, {:.0} samples/s ({} threads)",
            device_name(model.device()),
            secs * 1e3,
            1024.0 / secs,
            tch::get_num_threads()
        );
    }
}
