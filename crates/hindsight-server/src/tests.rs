//! In-process tests of the router (`oneshot`): every route, every client
//! mistake, limits, authentication, reload.

use axum::body::Body;
use axum::http::{Request, StatusCode};
#[cfg(feature = "model")]
use hindsight_engine::RetrievalSettings;
use hindsight_index::BehaviorIndex;
use hindsight_logs::DatasetMapping;
#[cfg(feature = "model")]
use hindsight_model::{Device, FeatureVocab, ModelConfig, ModelKind, TrainedModel};
#[cfg(feature = "model")]
use hindsight_retrieval::StrategyKind;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

/// 30 users (ids 1..=30) with 60 behaviors each over items `cat*100 + k`,
/// ingested from a taobao-format log (so behavior type names are known).
pub(crate) fn build_index(path: &std::path::Path) {
    use std::io::Write;
    let index = BehaviorIndex::create(path, &DatasetMapping::preset("taobao").unwrap()).unwrap();
    let csv = path.with_extension("csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    for user in 1..=30u64 {
        for i in 0..60u64 {
            let cat = user % 4 + (i % 2) * 10;
            let item = cat * 100 + (i * 7 + user) % 13;
            let kind = if i % 4 == 3 { "buy" } else { "pv" };
            writeln!(f, "{user},{item},{cat},{kind},{}", 1_000 + i * 60).unwrap();
        }
    }
    drop(f);
    let mapping = DatasetMapping::preset("taobao").unwrap();
    hindsight_index::ingest(&index, &mapping, &csv, &Default::default(), &mut |_| {}).unwrap();
}

/// An untrained DIN (the API does not care about accuracy) recording the
/// given dataset mapping.
#[cfg(feature = "model")]
pub(crate) fn save_model(dir: &std::path::Path, mapping: &str, n: usize) {
    let mut model = TrainedModel::init(
        ModelConfig::new(ModelKind::Din),
        FeatureVocab::build(&[]),
        n,
        Device::Cpu,
    )
    .unwrap();
    let settings = RetrievalSettings {
        strategy: StrategyKind::Ubr,
        n,
        mapping: mapping.into(),
        protocol: Default::default(),
        index_behaviors: 1800,
        embeddings: None,
    };
    model.set_retrieval(serde_json::to_value(settings).unwrap());
    model.save(dir).unwrap();
}

pub(crate) struct App {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) state: Arc<AppState>,
}

impl App {
    pub(crate) fn new(tweak: impl FnOnce(&mut ServerConfig)) -> App {
        let dir = tempfile::tempdir().unwrap();
        build_index(&dir.path().join("index"));
        #[cfg(feature = "model")]
        save_model(&dir.path().join("model"), "taobao", 10);
        let mut cfg = ServerConfig {
            index: dir.path().join("index"),
            model: dir.path().join("model"),
            device: "cpu".into(),
            workers: 2,
            ..ServerConfig::default()
        };
        tweak(&mut cfg);
        let state = AppState::open(cfg).unwrap();
        App { dir, state }
    }

    pub(crate) async fn call(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body, headers)
    }

    pub(crate) async fn post(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let req = Request::post(path).body(body.into()).unwrap();
        let (s, b, _) = self.call(req).await;
        (s, b)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, b, _) = self
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await;
        (s, b)
    }
}

pub(crate) fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_in_candidate_order_with_explain() {
    let app = App::new(|_| {});
    let body = json!({
        "user_id": 5,
        "candidates": [{"item_id": 101}, {"item_id": 1, "category_id": 11}, {"item_id": 101}, {"item_id": 987654321}],
        "explain": true,
        "timestamp": 5000
    });
    let (s, r) = app.post("/v1/score", body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let scores = r["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 4);
    assert!(scores
        .iter()
        .all(|p| (0.0..=1.0).contains(&p.as_f64().unwrap())));
    assert_eq!(scores[0], scores[2], "duplicate candidates score alike");
    assert_eq!(
        (r["model"].as_str(), r["strategy"].as_str(), r["n"].as_u64()),
        (Some("din"), Some("ubr"), Some(10))
    );
    assert_eq!(r["history_len"], 60);
    let explain = r["explain"].as_array().unwrap();
    // Item 101's category (1) was looked up in the index; its first
    // retrieved behavior is an exact item match.
    assert_eq!(explain[0]["categories"], json!([1]));
    assert_eq!(explain[0]["behaviors"][0]["item_id"], 101);
    assert_eq!(explain[1]["categories"], json!([11]));
    assert_eq!(
        explain[3]["categories"],
        json!([]),
        "an unseen item has no features"
    );
    assert!(explain
        .iter()
        .all(|e| e["behaviors"].as_array().unwrap().len() == 10));

    // as_of, n and strategy are honoured.
    let body = json!({"user_id": 5, "candidates": [{"item_id": 101}], "as_of": {"seq": 7}, "n": 3, "strategy": "recent", "explain": true});
    let (s, r) = app.post("/v1/score", body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let seqs: Vec<u64> = r["explain"][0]["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6, 5, 4]);
    assert_eq!(r["strategy"], "recent");

    // An unknown user is a cold start, not an error.
    let (s, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 777, "candidates": [{"item_id": 101}]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["history_len"], 0);
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_mistake_gets_a_precise_4xx() {
    let app = App::new(|c| c.max_candidates = 3);
    let big = "x".repeat(3 << 20);
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("malformed json", "{\"user_id\": 1,".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("not json", "user=1".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("empty body", String::new(), StatusCode::BAD_REQUEST, "empty_body"),
        ("unknown field", json!({"user_id": 1, "candidates": [{"item_id": 1}], "explian": true}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("unknown candidate field", json!({"user_id": 1, "candidates": [{"item": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("wrong type", json!({"user_id": "1", "candidates": [{"item_id": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("missing field", json!({"candidates": [{"item_id": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("negative id", json!({"user_id": -1, "candidates": [{"item_id": 1}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("id beyond u64", "{\"user_id\": 18446744073709551616, \"candidates\": [{\"item_id\": 1}]}".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("user id beyond the index", json!({"user_id": 1u64 << 41, "candidates": [{"item_id": 1}]}).to_string(), StatusCode::BAD_REQUEST, "invalid_user_id"),
        ("negative item id", json!({"user_id": 1, "candidates": [{"item_id": -5}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("empty candidates", json!({"user_id": 1, "candidates": []}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "empty_candidates"),
        ("too many candidates", json!({"user_id": 1, "candidates": [{"item_id": 1}, {"item_id": 2}, {"item_id": 3}, {"item_id": 4}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "too_many_candidates"),
        ("unknown strategy", json!({"user_id": 1, "candidates": [{"item_id": 1}], "strategy": "best"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_strategy"),
        ("n above the model's", json!({"user_id": 1, "candidates": [{"item_id": 1}], "n": 11}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("n zero", json!({"user_id": 1, "candidates": [{"item_id": 1}], "n": 0}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("category name on a numeric index", json!({"user_id": 1, "candidates": [{"item_id": 1, "category_id": "shoes"}]}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_name"),
        ("body too large", big, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
    ];
    for (what, body, status, want) in cases {
        let (s, r) = app.post("/v1/score", body).await;
        assert_eq!((s, code(&r)), (status, want), "{what}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    // Appends.
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty", json!({"behaviors": []}), "empty_behaviors"),
        (
            "unknown field",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "ts": 5}]}),
            "invalid_request",
        ),
        (
            "unknown type name",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "behavior_type": "like"}]}),
            "unknown_name",
        ),
        (
            "type id out of range",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "behavior_type": 300}]}),
            "unknown_name",
        ),
    ];
    for (what, body, want) in cases {
        let (s, r) = app.post("/v1/behaviors", body.to_string()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::UNPROCESSABLE_ENTITY, want),
            "{what}: {r}"
        );
    }
    // Values beyond `hindsight_core::limits`: 400 with the limit's code.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "user out of range",
            json!({"behaviors": [{"user_id": 1u64 << 41, "item_id": 1}]}),
            "invalid_user_id",
        ),
        (
            "negative timestamp",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": -3}]}),
            "invalid_timestamp",
        ),
    ];
    for (what, body, want) in cases {
        let (s, r) = app.post("/v1/behaviors", body.to_string()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, want),
            "{what}: {r}"
        );
    }
    // Reads and routing.
    let (s, r) = app.get("/v1/users/abc/behaviors").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_user_id")
    );
    let (s, r) = app.get("/v1/users/-1/behaviors").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_user_id")
    );
    let (s, r) = app.get("/v1/users/1/behaviors?limit=x").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query")
    );
    let (s, r) = app.get("/v1/users/1/behaviors?limit=5000").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "limit_too_large")
    );
    let (s, r) = app.get("/v1/users/1/behaviors?lmit=5").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query")
    );
    let (s, r) = app.get("/v2/score").await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, r) = app.get("/v1/score").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (s, r) = app.post("/v1/admin/reload", "{\"modle\": \"x\"}").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_behaviors_are_listed_and_retrieved_at_once() {
    let app = App::new(|_| {});
    let body = json!({"behaviors": [
        {"user_id": 5, "item_id": 4242, "category_id": 3, "behavior_type": "buy", "timestamp": 9000},
        {"user_id": 5, "item_id": 4243, "categories": [3], "timestamp": 9001},
        {"user_id": 900, "item_id": 101, "timestamp": 9002}
    ]});
    let (s, r) = app.post("/v1/behaviors", body.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].as_u64(), r["duplicates"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(r["index_behaviors"], 1803);
    // A retry adds nothing.
    let (_, r) = app.post("/v1/behaviors", body.to_string()).await;
    assert_eq!(
        (r["added"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    let (s, r) = app.get("/v1/users/5/behaviors?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["history_len"], 62);
    let b = &r["behaviors"];
    assert_eq!(
        (b[0]["item_id"].as_u64(), b[0]["seq"].as_u64()),
        (Some(4243), Some(61))
    );
    assert_eq!(b[0]["behavior_type"], "pv", "the default type is the first");
    assert_eq!(
        (b[1]["item_id"].as_u64(), b[1]["behavior_type"].as_str()),
        (Some(4242), Some("buy"))
    );
    // A new user's behavior took item 101's features from the index.
    let (_, r) = app.get("/v1/users/900/behaviors").await;
    assert_eq!(r["behaviors"][0]["categories"], json!([1]));
    // And scoring sees them: the exact item match comes first.
    let (_, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 5, "candidates": [{"item_id": 4242}], "explain": true}).to_string(),
        )
        .await;
    assert_eq!(r["explain"][0]["behaviors"][0]["item_id"], 4242, "{r}");
    assert_eq!(r["explain"][0]["categories"], json!([3]));

    // Metrics saw all of it.
    let (s, text) = app.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains(
            r#"hindsight_http_requests_total{method="POST",route="/v1/behaviors",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains("hindsight_index_behaviors 1803"), "{text}");
    assert!(text.contains("hindsight_behaviors_appended_total 3"));
    assert!(text.contains("hindsight_behaviors_duplicate_total 3"));
    assert!(text.contains("hindsight_score_batch_size_count 1"));
    assert!(text.contains("hindsight_commit_seconds_count 2"));
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_writes_and_optionally_reads() {
    let app = App::new(|c| c.token = Some(Secret::new("t0ken")));
    let append = json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}).to_string();
    let send = |auth: Option<&'static str>, path: &'static str, body: String| {
        let mut req = Request::post(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(Body::from(body)).unwrap()
    };
    let (s, r, h) = app.call(send(None, "/v1/behaviors", append.clone())).await;
    assert_eq!((s, code(&r)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(h["www-authenticate"], "Bearer");
    let (s, _, _) = app
        .call(send(Some("Bearer t0kem"), "/v1/behaviors", append.clone()))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = app
        .call(send(Some("t0ken"), "/v1/behaviors", append.clone()))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, r, _) = app
        .call(send(Some("Bearer t0ken"), "/v1/behaviors", append.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _, _) = app
        .call(send(None, "/v1/admin/reload", String::new()))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Auth is checked before the body: a bad body without a token is a 401.
    let (s, _, _) = app.call(send(None, "/v1/behaviors", "{".into())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Reads stay open unless auth_reads.
    let score = json!({"user_id": 1, "candidates": [{"item_id": 1}]}).to_string();
    let (s, _, _) = app.call(send(None, "/v1/score", score.clone())).await;
    assert_eq!(s, StatusCode::OK);

    let app = App::new(|c| {
        c.token = Some(Secret::new("t0ken"));
        c.auth_reads = true;
    });
    let (s, _, _) = app.call(send(None, "/v1/score", score.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = app
        .call(send(Some("Bearer t0ken"), "/v1/score", score))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("/v1/users/1/behaviors").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Health, metrics and the API document stay open.
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.0, StatusCode::OK);
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_sheds_with_retry_after_and_deadlines_hold() {
    let app = App::new(|c| {
        c.workers = 1;
        c.max_in_flight = Some(2);
        c.request_timeout_ms = 200;
        c.retry_after_secs = 3;
    });
    let score = || {
        Request::post("/v1/score")
            .body(Body::from(
                json!({"user_id": 1, "candidates": [{"item_id": 1}]}).to_string(),
            ))
            .unwrap()
    };
    // Every admission slot taken: refused at once.
    let held = app
        .state
        .admission
        .clone()
        .try_acquire_many_owned(2)
        .unwrap();
    let (s, r, h) = app.call(score()).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert_eq!(h["retry-after"], "3");
    drop(held);
    // The only worker busy: admitted, but past the deadline.
    let busy = app.state.workers.clone().try_acquire_owned().unwrap();
    let (s, r, h) = app.call(score()).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "deadline_exceeded"),
        "{r}"
    );
    assert!(h.contains_key("retry-after"));
    drop(busy);
    let (s, _, _) = app.call(score()).await;
    assert_eq!(s, StatusCode::OK);
    let (_, text) = app.get("/metrics").await;
    assert!(text
        .as_str()
        .unwrap()
        .contains(r#"hindsight_shed_total{route="/v1/score"} 1"#));
    // Draining: readyz and new work say so.
    app.state.draining.store(true, Ordering::SeqCst);
    let (s, r) = app.get("/readyz").await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("draining"))
    );
    let (s, r, _) = app.call(score()).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    );
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_a_fitting_model_and_refuses_the_rest() {
    let app = App::new(|_| {});
    let (s, r) = app.get("/readyz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            r["serving"]["generation"].as_u64(),
            r["serving"]["n"].as_u64()
        ),
        (Some(1), Some(10))
    );
    assert_eq!(r["serving"]["dataset"], "taobao");

    // A model of another dataset: refused, the old one keeps serving.
    let other = app.dir.path().join("movielens-model");
    save_model(&other, "movielens", 10);
    let (s, r) = app
        .post("/v1/admin/reload", json!({"model": other}).to_string())
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "reload_refused"),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("movielens"),
        "{r}"
    );
    // A folder without a model: refused.
    let (s, r) = app
        .post(
            "/v1/admin/reload",
            json!({"model": app.dir.path()}).to_string(),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "reload_refused"),
        "{r}"
    );
    let (_, r) = app.get("/readyz").await;
    assert_eq!(r["serving"]["generation"], 1);

    // A fitting model with another N: swapped in.
    let next = app.dir.path().join("model-n5");
    save_model(&next, "taobao", 5);
    let (s, r) = app
        .post("/v1/admin/reload", json!({"model": next}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["generation"].as_u64(), r["n"].as_u64()),
        (Some(2), Some(5))
    );
    let (_, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 1, "candidates": [{"item_id": 1}]}).to_string(),
        )
        .await;
    assert_eq!(r["n"], 5);
    // An empty body re-reads the current paths; appends still work on the
    // same index afterwards.
    let (s, r) = app.post("/v1/admin/reload", "").await;
    assert_eq!((s, r["generation"].as_u64()), (StatusCode::OK, Some(3)));
    let (s, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 2, "item_id": 7, "timestamp": 99999}]}).to_string(),
        )
        .await;
    assert_eq!((s, r["added"].as_u64()), (StatusCode::OK, Some(1)), "{r}");

    // Another index: the writer moves with it, the old index is released.
    let index2 = app.dir.path().join("index2");
    build_index(&index2);
    let (s, r) = app
        .post("/v1/admin/reload", json!({"index": index2}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["index_behaviors"], 1800);
    let (s, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 2, "item_id": 8, "timestamp": 99999}]}).to_string(),
        )
        .await;
    assert_eq!(
        (s, r["index_behaviors"].as_u64()),
        (StatusCode::OK, Some(1801)),
        "{r}"
    );
    // The old index's writer lock is released (eventually: it closes in
    // the background).
    let old = BehaviorIndex::open(app.dir.path().join("index")).unwrap();
    let mut appended = false;
    for _ in 0..100 {
        if old.append(&[]).is_ok() {
            appended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(appended, "the old index's writer lock was not released");
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_openapi() {
    let app = App::new(|_| {});
    let (s, r) = app.get("/healthz").await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, doc) = app.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/v1/score",
        "/v1/behaviors",
        "/v1/users/{id}/behaviors",
        "/v1/admin/reload",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for s in [
        "ScoreRequest",
        "Candidate",
        "ScoreResponse",
        "AppendRequest",
        "BehaviorIn",
        "ErrorBody",
    ] {
        assert!(schemas[s].is_object(), "schema {s} missing");
    }
}

#[test]
fn a_second_server_on_the_same_index_is_refused() {
    let app = App::new(|_| {});
    let cfg = app.state.config.clone();
    let err = AppState::open(cfg)
        .err()
        .expect("the index is locked")
        .to_string();
    assert!(err.contains("another process is writing"), "{err}");
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_checked_with_the_shared_wording_and_the_json_path() {
    let app = App::new(|_| {});
    let many: Vec<u64> = (0..70_000).collect();
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "i64::MAX timestamp on an append",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}, {"user_id": 1, "item_id": 2, "timestamp": i64::MAX}]}),
            "invalid_timestamp",
            "behaviors[1].timestamp: ",
        ),
        (
            "70,000 categories on one behavior",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "categories": many}]}),
            "too_many_categories",
            "behaviors[0].categories: ",
        ),
        (
            "too many tags",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "tags": (0..2000).collect::<Vec<u64>>()}]}),
            "too_many_tags",
            "behaviors[0].tags: ",
        ),
    ];
    for (what, body, want, prefix) in cases {
        let (s, r) = app.post("/v1/behaviors", body.to_string()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, want),
            "{what}: {r}"
        );
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(prefix), "{what}: {message}");
    }
    // The message is the core limits' wording.
    let (_, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": i64::MAX}]}).to_string(),
        )
        .await;
    let want = hindsight_core::limits::LimitViolation::Timestamp(i64::MAX).to_string();
    assert_eq!(
        r["error"]["message"],
        format!("behaviors[0].timestamp: {want}")
    );
    // Nothing of a refused request was stored.
    let (_, r) = app.get("/v1/users/1/behaviors?limit=1").await;
    assert_eq!(r["history_len"], 60);

    let score: Vec<(&str, Value, &str, &str)> = vec![
        (
            "70,000 categories on a candidate",
            json!({"user_id": 1, "candidates": [{"item_id": 1}, {"item_id": 2, "categories": many}]}),
            "too_many_categories",
            "candidates[1].categories: ",
        ),
        (
            "i64::MAX timestamp",
            json!({"user_id": 1, "candidates": [{"item_id": 1}], "timestamp": i64::MAX}),
            "invalid_timestamp",
            "timestamp: ",
        ),
        (
            "negative as-of timestamp",
            json!({"user_id": 1, "candidates": [{"item_id": 1}], "as_of": {"timestamp": -1}}),
            "invalid_timestamp",
            "as_of.timestamp: ",
        ),
        (
            "user id beyond the index",
            json!({"user_id": hindsight_core::limits::MAX_USER_ID + 1, "candidates": [{"item_id": 1}]}),
            "invalid_user_id",
            "user_id: ",
        ),
    ];
    for (what, body, want, prefix) in score {
        let (s, r) = app.post("/v1/score", body.to_string()).await;
        assert_eq!(
            (s, code(&r)),
            (StatusCode::BAD_REQUEST, want),
            "{what}: {r}"
        );
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(prefix), "{what}: {message}");
    }
    // The bounds themselves are accepted.
    let (s, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": hindsight_core::limits::MAX_USER_ID, "item_id": 1,
                "timestamp": hindsight_core::limits::MAX_TIMESTAMP,
                "categories": (0..256).collect::<Vec<u64>>()}]})
            .to_string(),
        )
        .await;
    assert_eq!((s, r["added"].as_u64()), (StatusCode::OK, Some(1)), "{r}");
    // An unknown name on a candidate names the candidate.
    let (s, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 1, "candidates": [{"item_id": 1}, {"item_id": 1, "category_id": "shoes"}]}).to_string(),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_name")
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("candidates[1]: "),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
    let app = App::new(|c| c.token = Some(Secret::new("t0ken")));
    let append = json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}).to_string();
    for (auth, want) in [
        ("bearer t0ken", StatusCode::OK),
        ("BEARER t0ken", StatusCode::OK),
        ("Bearer   t0ken", StatusCode::OK),
        ("bearer T0KEN", StatusCode::UNAUTHORIZED),
        ("bearer", StatusCode::UNAUTHORIZED),
        ("Basic t0ken", StatusCode::UNAUTHORIZED),
        ("bearert0ken", StatusCode::UNAUTHORIZED),
    ] {
        let req = Request::post("/v1/behaviors")
            .header("authorization", auth)
            .body(Body::from(append.clone()))
            .unwrap();
        let (s, r, _) = app.call(req).await;
        assert_eq!(s, want, "{auth:?}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_level_rejections_have_the_json_error_body() {
    let app = App::new(|c| {
        c.max_uri_bytes = 100;
        c.max_header_bytes = 1000;
    });
    let long = format!("/v1/users/1/behaviors?limit=1&x={}", "a".repeat(200));
    let (s, r) = app.get(&long).await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::URI_TOO_LONG, "uri_too_long"),
        "{r}"
    );
    let mut req = Request::get("/healthz");
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), "v".repeat(40));
    }
    let (s, r, h) = app.call(req.body(Body::empty()).unwrap()).await;
    assert_eq!(
        (s, code(&r)),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large"
        ),
        "{r}"
    );
    assert_eq!(h["connection"], "close");
    let mut req = Request::get("/healthz");
    for i in 0..101 {
        req = req.header(format!("x{i}"), "v");
    }
    let (s, r, _) = app.call(req.body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{r}");
    // An axum path rejection (a user id that is not UTF-8) is JSON too.
    let (s, r) = app.get("/v1/users/%FF/behaviors").await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_user_id"),
        "{r}"
    );
    // A plain-text rejection from below the handlers gets the JSON body
    // with its status and text.
    let resp = (StatusCode::LENGTH_REQUIRED, "length needed").into_response();
    let resp = crate::error::json_errors(resp).await;
    assert_eq!(resp.status(), StatusCode::LENGTH_REQUIRED);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "length_required", "message": "length needed"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_makes_the_server_not_ready_and_appends_503() {
    let app = App::new(|_| {});
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    app.state
        .serving
        .load()
        .appender
        .clone()
        .unwrap()
        .kill_for_test()
        .await;
    let (s, r) = app.get("/readyz").await;
    assert_eq!(
        (s, r["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")),
        "{r}"
    );
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("writer") && reason.contains("died"),
        "{reason}"
    );
    let (s, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}).to_string(),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "writer_failed"),
        "{r}"
    );
    assert_eq!(r["error"]["message"], reason);
    // Scoring and reads go on from the last snapshot.
    #[cfg(feature = "model")]
    {
        let (s, _) = app
            .post(
                "/v1/score",
                json!({"user_id": 1, "candidates": [{"item_id": 1}]}).to_string(),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, r) = app.get("/v1/users/1/behaviors?limit=1").await;
    assert_eq!((s, r["history_len"].as_u64()), (StatusCode::OK, Some(60)));
    // Reloading onto another index starts a new writer: ready again.
    let index2 = app.dir.path().join("index2");
    build_index(&index2);
    let (s, r) = app
        .post("/v1/admin/reload", json!({"index": index2}).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
}

#[cfg(feature = "model")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_weights_do_not_load_is_409_and_the_old_pair_serves() {
    let app = App::new(|_| {});
    let broken = app.dir.path().join("broken-model");
    save_model(&broken, "taobao", 10);
    std::fs::write(
        broken.join("weights.safetensors"),
        b"these are not weights at all",
    )
    .unwrap();
    let (s, r) = app
        .post("/v1/admin/reload", json!({"model": broken}).to_string())
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "reload_refused"),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still serving the previous model"),
        "{r}"
    );
    let (s, r) = app.get("/readyz").await;
    assert_eq!(
        (s, r["serving"]["generation"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (s, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 1, "candidates": [{"item_id": 1}]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // An index folder that does not open: 409 as well.
    let (s, r) = app
        .post(
            "/v1/admin/reload",
            json!({"index": app.dir.path().join("no-index")}).to_string(),
        )
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "reload_refused"),
        "{r}"
    );
}

#[cfg(not(feature = "model"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_model_feature_appends_and_reads_are_served_and_score_is_not() {
    let app = App::new(|_| {});
    let (s, r) = app
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 5, "item_id": 4242, "category_id": 3, "timestamp": 9000}]})
                .to_string(),
        )
        .await;
    assert_eq!((s, r["added"].as_u64()), (StatusCode::OK, Some(1)), "{r}");
    let (s, r) = app.get("/v1/users/5/behaviors?limit=1").await;
    assert_eq!(
        (s, r["behaviors"][0]["item_id"].as_u64()),
        (StatusCode::OK, Some(4242))
    );
    let (s, r) = app.get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(
        r["serving"]["model"].is_null() && r["serving"]["index_behaviors"] == 1801,
        "{r}"
    );
    let (s, r) = app
        .post(
            "/v1/score",
            json!({"user_id": 5, "candidates": [{"item_id": 1}]}).to_string(),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, r) = app
        .post("/v1/admin/reload", json!({"model": "m"}).to_string())
        .await;
    assert_eq!(
        (s, code(&r)),
        (StatusCode::CONFLICT, "reload_refused"),
        "{r}"
    );
    let (_, doc) = app.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/score"].is_null() && doc["paths"]["/v1/behaviors"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_beside_a_writer_serves_reads_and_refuses_appends() {
    // The writing server holds the index's writer lock; a read-only one on
    // the same folder still opens, serves reads and says why it refuses
    // appends.
    let writer = App::new(|_| {});
    let mut cfg = writer.state.config.clone();
    cfg.read_only = true;
    let reader = AppState::open(cfg).expect("a read-only server takes no lock");
    let reader = App {
        dir: tempfile::tempdir().unwrap(),
        state: reader,
    };
    let (s, r) = reader.get("/readyz").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = reader.get("/v1/users/1/behaviors?limit=3").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["behaviors"].as_array().map(Vec::len), Some(3), "{r}");
    let (s, r) = reader
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}).to_string(),
        )
        .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "read_only"), "{r}");
    // The writer's appends are unaffected.
    let (s, r) = writer
        .post(
            "/v1/behaviors",
            json!({"behaviors": [{"user_id": 1, "item_id": 1, "timestamp": 5}]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
}
