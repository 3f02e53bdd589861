//! `POST /v1/recommend` in process: a small SASRec trained on the test
//! index, its ANN, the CTR model of the other tests ranking.

use axum::http::StatusCode;
use hindsight_engine::catalog_of;
use hindsight_index::BehaviorIndex;
use hindsight_model::{RecallLoss, SasRecConfig, TrainedRecall};
use hindsight_recall::{AnnIndex, AnnParams, RecallSplit};
use serde_json::{json, Value};

use super::*;
use crate::tests::{build_index, code, save_model, App};

/// Trains a small SASRec on the index at `index` and saves it (with its
/// ANN index in `dir/ann` when `ann`) to `dir`.
fn save_recall_model(index: &std::path::Path, dir: &std::path::Path, seed: u64, ann: bool) {
    let index = BehaviorIndex::open_read_only(index).unwrap();
    let snapshot = index.snapshot();
    let split = RecallSplit::leave_last_out(&snapshot, 3).unwrap();
    let cfg = SasRecConfig {
        dim: 16,
        heads: 2,
        blocks: 1,
        max_len: 10,
        epochs: 2,
        batch_size: 16,
        loss: RecallLoss::SampledSoftmax { negatives: 8 },
        seed,
        ..SasRecConfig::default()
    };
    let (model, _) = TrainedRecall::train(
        &split,
        &cfg,
        hindsight_model::Device::Cpu.resolve().unwrap(),
        |_| {},
    )
    .unwrap();
    model.save(dir).unwrap();
    if ann {
        let catalog = catalog_of(&snapshot);
        let ids: Vec<u64> = catalog.iter().map(|(i, _)| *i).collect();
        let vectors = hindsight_engine::catalog_vectors(&model, &catalog).unwrap();
        AnnIndex::build(
            &ids,
            &vectors,
            model.dim(),
            AnnParams::default(),
            model.weights_sha256(),
        )
        .unwrap()
        .save(&dir.join("ann"))
        .unwrap();
    }
}

/// An app serving the DIN of the other tests and a SASRec with its ANN.
fn app_with_recall() -> App {
    let dir = tempfile::tempdir().unwrap();
    build_index(&dir.path().join("index"));
    save_model(&dir.path().join("model"), "taobao", 10);
    save_recall_model(
        &dir.path().join("index"),
        &dir.path().join("recall"),
        1,
        true,
    );
    let cfg = ServerConfig {
        index: dir.path().join("index"),
        model: dir.path().join("model"),
        recall_model: Some(dir.path().join("recall")),
        device: "cpu".into(),
        workers: 2,
        ..ServerConfig::default()
    };
    let state = AppState::open(cfg).unwrap();
    App { dir, state }
}

fn items(r: &Value) -> Vec<u64> {
    r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_u64().unwrap())
        .collect()
}

/// The items of user `user` in the test index (see `build_index`).
fn history_items(user: u64) -> std::collections::HashSet<u64> {
    (0..60u64)
        .map(|i| {
            let cat = user % 4 + (i % 2) * 10;
            cat * 100 + (i * 7 + user) % 13
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommends_unseen_items_best_first_and_ranks_them_when_asked() {
    let app = app_with_recall();
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 5, "k": 5}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let got = items(&r);
    assert_eq!(got.len(), 5);
    assert_eq!(r["search"], "ann");
    assert_eq!(r["cold_start"], false);
    assert_eq!(r["history_len"], 60);
    let seen = history_items(5);
    assert!(
        got.iter().all(|i| !seen.contains(i)),
        "{got:?} holds a seen item"
    );
    let recall: Vec<f64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["recall_score"].as_f64().unwrap())
        .collect();
    assert!(recall.windows(2).all(|w| w[0] >= w[1]), "{recall:?}");
    assert!(r["items"][0].get("score").is_none());

    // Seen items allowed: the user's own items may come back.
    let (s, r) = app
        .post(
            "/v1/recommend",
            json!({"user_id": 5, "k": 40, "exclude_seen": false}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(items(&r).len(), 40);

    // Ranked: every item has a click probability, sorted by it.
    let (s, r) = app
        .post(
            "/v1/recommend",
            json!({"user_id": 5, "k": 4, "rank": true, "candidates": 12}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ranked_by"], "din");
    let scores: Vec<f64> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 4);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(items(&r).iter().all(|i| !seen.contains(i)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_gets_popular_items_flagged_cold_start() {
    let app = app_with_recall();
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 999, "k": 3}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["cold_start"], true);
    assert_eq!(r["history_len"], 0);
    assert_eq!(items(&r).len(), 3);
    // As of a user's first behavior, they have no history either.
    let (s, r) = app
        .post(
            "/v1/recommend",
            json!({"user_id": 5, "k": 3, "as_of": {"seq": 0}}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["cold_start"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_recommend_requests_are_client_errors() {
    let app = app_with_recall();
    for (body, status, expected) in [
        (
            json!({"user_id": 5, "k": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k_out_of_range",
        ),
        (
            json!({"user_id": 5, "k": 1001}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k_out_of_range",
        ),
        (
            json!({"user_id": 5, "k": 5, "candidates": 10}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "candidates_without_rank",
        ),
        (
            json!({"user_id": 5, "k": 5, "rank": true, "candidates": 5000}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "candidates_out_of_range",
        ),
        (
            json!({"user_id": 1u64 << 50, "k": 5}),
            StatusCode::BAD_REQUEST,
            "user_id_out_of_range",
        ),
    ] {
        let (s, r) = app.post("/v1/recommend", body.to_string()).await;
        assert_eq!(s, status, "{body} -> {r}");
        if expected != "user_id_out_of_range" {
            assert_eq!(code(&r), expected, "{body} -> {r}");
        }
    }
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 5, "kk": 5}).to_string())
        .await;
    assert!(s.is_client_error(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_recall_model_recommend_is_a_conflict_until_one_is_loaded() {
    let app = App::new(|_| {});
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 5}).to_string())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert_eq!(code(&r), "no_recall_model");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--recall-model"));

    // A recall model without an ANN is searched exactly after a reload.
    let recall = app.dir.path().join("recall");
    save_recall_model(&app.dir.path().join("index"), &recall, 2, false);
    let (s, r) = app
        .post(
            "/v1/admin/reload",
            json!({"recall_model": recall}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["recall_model"], recall.display().to_string());
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 5, "k": 3}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["search"], "exact");
    assert_eq!(items(&r).len(), 3);

    // An ANN built from another checkpoint is refused; the old pair serves on.
    let other = app.dir.path().join("other");
    save_recall_model(&app.dir.path().join("index"), &other, 3, true);
    std::fs::rename(other.join("ann"), recall.join("ann")).unwrap();
    let (s, r) = app
        .post(
            "/v1/admin/reload",
            json!({"recall_model": recall}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checkpoint"),
        "{r}"
    );
    let (s, r) = app
        .post("/v1/recommend", json!({"user_id": 5, "k": 3}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["search"], "exact");
}
