use hindsight_core::ItemFeatures;
use hindsight_index::NewBehavior;
use hindsight_logs::DatasetMapping;
use hindsight_model::{Device, ModelConfig, ModelKind, TrainOptions, TrainedModel};

use super::*;

/// Users whose label is learnable: they revisit a few categories.
fn index() -> (tempfile::TempDir, BehaviorIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index =
        BehaviorIndex::create(dir.path(), &DatasetMapping::preset("taobao").unwrap()).unwrap();
    let mut batch = Vec::new();
    for user in 1..=30u64 {
        for i in 0..60u64 {
            let cat = user % 4 + (i % 2) * 10;
            let item = cat * 100 + (i * 7 + user) % 13;
            batch.push(NewBehavior {
                user_id: user,
                item_id: item,
                features: ItemFeatures::with_categories(vec![cat]),
                behavior_type: 0,
                timestamp: 1_000 + i as i64 * 60,
            });
        }
    }
    index.append(&batch).unwrap();
    (dir, index)
}

#[test]
fn train_evaluate_save_load_through_the_engine() {
    let (dir, index) = index();
    let prepared =
        Prepared::new(&index, StrategyKind::SimHard, 10, Protocol::default(), 2).unwrap();
    let mut cfg = ModelConfig::new(ModelKind::Din);
    cfg.epochs = 2;
    let opts = TrainOptions {
        device: Device::Cpu,
        n: 10,
        ..TrainOptions::default()
    };
    let (model, report) = prepared.train(&cfg, opts).unwrap();
    assert!(!report.epochs.is_empty());
    let eval = prepared.evaluate(&model).unwrap();
    assert_eq!(eval.all.samples as u64, prepared.counts.test);
    assert!(eval.all.auc.is_some() && eval.all.logloss.is_some());
    assert_eq!(
        eval.long_history.samples, 0,
        "no history is longer than 200 here"
    );
    // Settings travel with the checkpoint.
    model.save(dir.path().join("m")).unwrap();
    let loaded = TrainedModel::load(dir.path().join("m"), Device::Cpu).unwrap();
    let s = RetrievalSettings::of(&loaded).unwrap();
    assert_eq!(
        (s.strategy, s.n, s.mapping.as_str()),
        (StrategyKind::SimHard, 10, "taobao")
    );
    s.check_index(&index).unwrap();
    assert_eq!(prepared.evaluate(&loaded).unwrap().all.auc, eval.all.auc);
    // Other retrieval settings are refused.
    let other = Prepared::new(&index, StrategyKind::Recent, 10, Protocol::default(), 1).unwrap();
    let err = other.evaluate(&loaded).unwrap_err().to_string();
    assert!(err.contains("trained with sim-hard"), "{err}");
}

fn target(item: u64, cat: u64) -> hindsight_core::Target {
    hindsight_core::Target {
        item_id: item,
        features: ItemFeatures::with_categories(vec![cat]),
    }
}

fn input(user: u64, targets: &[hindsight_core::Target]) -> ScoreInput<'_> {
    ScoreInput {
        user_id: user,
        targets,
        as_of: hindsight_core::AsOf::NOW,
        filter: Default::default(),
        strategy: None,
        n: None,
        timestamp: 10_000,
    }
}

#[test]
fn scorer_scores_candidates_in_one_pass_like_one_by_one() {
    let (_dir, index) = index();
    for kind in [
        ModelKind::Din,
        ModelKind::Dien,
        ModelKind::Atrank,
        ModelKind::Bst,
    ] {
        let prepared = Prepared::new(&index, StrategyKind::Ubr, 8, Protocol::default(), 1).unwrap();
        let mut cfg = ModelConfig::new(kind);
        cfg.epochs = 1;
        let opts = TrainOptions {
            device: Device::Cpu,
            n: 8,
            ..TrainOptions::default()
        };
        let (model, _) = prepared.train(&cfg, opts).unwrap();
        let saved = _dir.path().join(kind.as_str());
        model.save(&saved).unwrap();
        let scorer = Scorer::new(model, &index).unwrap();
        let replicated = Scorer::load(&saved, Device::Cpu, &index, 3).unwrap();
        assert_eq!(replicated.replicas(), 3);
        let snap = index.snapshot();
        // A duplicate candidate and an item no one has seen are scored too.
        let targets = [
            target(101, 1),
            target(1, 11),
            target(101, 1),
            target(999_999, 77),
        ];
        let all = scorer.score(&snap, &input(5, &targets)).unwrap();
        assert_eq!(all.scores.len(), 4);
        assert_eq!(all.history_len, 60);
        assert!(all
            .scores
            .iter()
            .all(|p| p.is_finite() && *p > 0.0 && *p < 1.0));
        assert_eq!(all.scores[0], all.scores[2], "duplicates score alike");
        assert!(all.retrieved.iter().all(|r| r.len() == 8));
        for (i, t) in targets.iter().enumerate() {
            let one = scorer
                .score(&snap, &input(5, std::slice::from_ref(t)))
                .unwrap();
            assert!((one.scores[0] - all.scores[i]).abs() < 1e-5, "{kind:?}");
        }
        // A user without history: cold start, not an error.
        let cold = scorer.score(&snap, &input(12345, &targets)).unwrap();
        assert_eq!(cold.history_len, 0);
        assert!(cold.retrieved.iter().all(Vec::is_empty));
        assert!(cold.scores.iter().all(|p| p.is_finite()));
        // N above the model's, or nothing to score, is refused.
        let mut big = input(5, &targets);
        big.n = Some(9);
        let err = scorer.score(&snap, &big).unwrap_err().to_string();
        assert!(err.contains("between 1 and 8"), "{err}");
        assert!(scorer.score(&snap, &input(5, &[])).is_err());
        // A smaller N and another strategy are allowed.
        let mut small = input(5, &targets);
        small.n = Some(3);
        small.strategy = Some(StrategyKind::Recent);
        let s = scorer.score(&snap, &small).unwrap();
        assert!(s.retrieved.iter().all(|r| r.len() == 3));
    }
}

#[test]
fn grid_runs_in_plan_order_reports_progress_and_trains_like_train() {
    use crate::grid::{Grid, GridEvent, GridSpec};
    use std::sync::{Arc, Mutex};

    hindsight_model::set_cpu_threads(1);
    let (_dir, index) = index();
    let spec = GridSpec {
        strategies: vec![StrategyKind::Recent, StrategyKind::SimHard],
        models: vec![ModelKind::SumPool],
        n: 8,
        din_small_n: 4,
        full_history_n: 0,
        seeds: vec![5, 6],
        epochs: Some(1),
        device: Device::Cpu,
        threads: 1,
        ..GridSpec::default()
    };
    #[derive(Default)]
    struct Seen {
        retrieving: Vec<(StrategyKind, usize)>,
        runs: Vec<(usize, usize)>,
        batches: usize,
        epochs: usize,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let mut grid = Grid::new(
        &index,
        spec.clone(),
        Box::new(move |e| {
            let mut s = s.lock().unwrap();
            match e {
                GridEvent::Retrieving { strategy, n } => s.retrieving.push((*strategy, *n)),
                GridEvent::Run {
                    position, total, ..
                } => s.runs.push((*position, *total)),
                GridEvent::Train(TrainProgress::Batch { .. }) => s.batches += 1,
                GridEvent::Train(TrainProgress::Epoch(_)) => s.epochs += 1,
            }
        }),
    )
    .unwrap();
    let plan = grid.runs().to_vec();
    assert_eq!(plan, spec.runs());
    assert!(grid.samples().is_none());
    let mut results = Vec::new();
    while let Some(r) = grid.run_next().unwrap() {
        results.push(r);
    }
    assert_eq!(results.len(), 8);
    let counts = grid.samples().expect("known after the first run").clone();
    for (r, run) in results.iter().zip(&plan) {
        assert_eq!(r.run, *run);
        assert_eq!(
            (r.row.strategy.as_str(), r.row.n, r.row.model.as_str()),
            (run.strategy.as_str(), run.n, run.model.as_str())
        );
        assert_eq!(r.row.epochs, 1);
        assert_eq!((r.row.seed, r.model.config().seed), (run.seed, run.seed));
        assert_eq!(r.row.eval.all.samples as u64, counts.test);
        let settings = RetrievalSettings::of(&r.model).unwrap();
        assert_eq!((settings.strategy, settings.n), (run.strategy, run.n));
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(
            s.retrieving,
            vec![
                (StrategyKind::Recent, 8),
                (StrategyKind::SimHard, 8),
                (StrategyKind::Recent, 4),
                (StrategyKind::SimHard, 4),
            ]
        );
        assert_eq!(s.runs, (0..8).map(|p| (p, 8)).collect::<Vec<_>>());
        assert_eq!(s.epochs, 8);
        assert!(s.batches >= 8);
    }
    // Two seeds: the same samples, two different models.
    assert_eq!(
        results[0].row.eval.all.samples,
        results[1].row.eval.all.samples
    );
    assert_ne!(
        results[0].row.eval.all.logloss,
        results[1].row.eval.all.logloss
    );
    // The first run is what `train` + `evaluate` give on the same samples.
    let prepared = Prepared::new(&index, StrategyKind::Recent, 8, Protocol::default(), 1).unwrap();
    let mut cfg = spec.config(ModelKind::SumPool).unwrap();
    cfg.seed = 5;
    let (model, _) = prepared
        .train_with_progress(&cfg, Device::Cpu, |_| {})
        .unwrap();
    let eval = prepared.evaluate(&model).unwrap();
    assert_eq!(eval.all.auc, results[0].row.eval.all.auc);
    assert_eq!(eval.all.logloss, results[0].row.eval.all.logloss);
}

/// Saves a store of made-up vectors (dimension 4) for every item of
/// `index`, as if attached from the checkpoint whose weights hash to `sha`.
fn attach_made_up(index: &BehaviorIndex, sha: &str) {
    use hindsight_embeddings::{
        store_path, EmbeddingStore, FeatureCombine, FeatureTable, FeatureTables, HashSettings,
        IndexRef, ModelRef,
    };
    let mut items = std::collections::BTreeSet::new();
    index.snapshot().for_each_item(|i, _| {
        items.insert(i);
    });
    let ids: Vec<u64> = items.into_iter().collect();
    let vectors = ids
        .iter()
        .flat_map(|&i| {
            let c = (i / 100) as f32;
            [c.sin(), c.cos(), (i % 13) as f32 / 13.0 - 0.5, 0.1]
        })
        .collect();
    let store = EmbeddingStore::build(
        ids,
        vectors,
        4,
        FeatureTables {
            combine: FeatureCombine::Concat,
            // Large, so that an unseen item's vector is its own best match.
            item_oov: vec![0.0, 3.0],
            categories: FeatureTable {
                ids: vec![],
                rows: vec![],
                oov: vec![0.3, -0.2],
            },
            tags: None,
            max_categories: 1,
            max_tags: 1,
        },
        HashSettings::default(),
        ModelRef {
            path: format!("models/{sha}"),
            kind: "din".into(),
            weights_sha256: sha.into(),
            representation: "made up".into(),
        },
        IndexRef::of(index),
    )
    .unwrap();
    store.save(&store_path(index.path())).unwrap();
}

#[test]
fn embedding_retrieval_is_recorded_checked_when_serving_and_sees_appends() {
    let (dir, index) = index();
    // No embeddings attached: a clear error before any retrieval.
    let err = Prepared::new(&index, StrategyKind::Eta, 10, Protocol::default(), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("hindsight embeddings attach"), "{err}");
    attach_made_up(&index, "aaaa");
    let prepared = Prepared::new(&index, StrategyKind::Eta, 10, Protocol::default(), 1).unwrap();
    let used = prepared.settings.embeddings.clone().unwrap();
    assert_eq!(used.weights_sha256, "aaaa");
    prepared.check_retrieval_model("aaaa", "m").unwrap();
    let err = prepared
        .check_retrieval_model("bbbb", "m")
        .unwrap_err()
        .to_string();
    assert!(err.contains("attach them first"), "{err}");
    let mut cfg = ModelConfig::new(ModelKind::Din);
    cfg.epochs = 1;
    let opts = TrainOptions {
        device: Device::Cpu,
        n: 10,
        ..TrainOptions::default()
    };
    let (model, _) = prepared.train(&cfg, opts).unwrap();
    model.save(dir.path().join("m")).unwrap();
    let scorer = Scorer::load(dir.path().join("m"), Device::Cpu, &index, 1).unwrap();
    assert!(scorer.embeddings().is_some());
    assert_eq!(
        RetrievalSettings::of(scorer.model()).unwrap().embeddings,
        Some(used)
    );

    // Appended behaviors are retrievable at once, also on items the store
    // does not hold (their features' vector).
    index
        .append(&[NewBehavior {
            user_id: 1,
            item_id: 777_777,
            features: ItemFeatures::with_categories(vec![55]),
            behavior_type: 0,
            timestamp: 50_000,
        }])
        .unwrap();
    let snap = index.refresh().unwrap();
    let targets = [target(777_777, 55)];
    for strategy in [StrategyKind::Eta, StrategyKind::SimSoft, StrategyKind::Sdim] {
        let mut request = input(1, &targets);
        request.strategy = Some(strategy);
        let scored = scorer.score(&snap, &request).unwrap();
        let newest = scored.retrieved[0].iter().map(|r| r.behavior.seq).max();
        assert_eq!(newest, Some(60), "{strategy}: the appended behavior");
    }

    // Other embeddings attached (another checkpoint): serving refuses.
    attach_made_up(&index, "bbbb");
    let err = Scorer::load(dir.path().join("m"), Device::Cpu, &index, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attach the model's retrieval checkpoint again"),
        "{err}"
    );
    let fresh = Prepared::new(&index, StrategyKind::Eta, 10, Protocol::default(), 1).unwrap();
    let loaded = TrainedModel::load(dir.path().join("m"), Device::Cpu).unwrap();
    let err = fresh.evaluate(&loaded).unwrap_err().to_string();
    assert!(
        err.contains("attach the model's retrieval checkpoint again"),
        "{err}"
    );
}
