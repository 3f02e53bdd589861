use hindsight_core::ItemFeatures;
use hindsight_index::NewBehavior;
use hindsight_logs::DatasetMapping;
use hindsight_model::{Device, ModelKind};

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
