//! Recall end to end on the real movielens log: `train --model sasrec`
//! (two epochs), `ann build`, `recommend` (with and without ranking by a
//! CTR model), `eval-recall` against the baselines, and the errors of a
//! mismatched pair.

use std::path::Path;
use std::process::Output;

#[allow(dead_code)] // taobao_csv is for the other test binaries
mod common;
use common::bin;

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run hindsight")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The `item_id` of every element of a JSON array.
fn item_ids(array: &serde_json::Value) -> Vec<u64> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_u64().unwrap())
        .collect()
}

/// `list` (a JSON array of objects with a `score`) holds `len` entries,
/// best first.
fn assert_descending_scores(list: &serde_json::Value, len: usize) {
    let scores: Vec<f64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), len, "{list}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[test]
fn sasrec_ann_recommend_and_eval_recall_on_real_movielens() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/movielens-small");
    if !data.exists() {
        eprintln!("skipping: real data not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (idx, model, ctr) = (p("ml"), p("sasrec"), p("din"));
    json(&run(&[
        "ingest",
        "--preset",
        "movielens",
        data.to_str().unwrap(),
        "--index",
        &idx,
        "--json",
    ]));
    let trained = json(&run(&[
        "train", "--index", &idx, "--model", "sasrec", "--out", &model, "--epochs", "2", "--dim",
        "32", "--device", "cpu", "--json",
    ]));
    assert!(trained.to_string().contains("epochs"), "{trained}");

    // Without an ANN index the catalog is searched exactly.
    let exact = json(&run(&[
        "recommend",
        "--index",
        &idx,
        "--model",
        &model,
        "--user",
        "1",
        "-k",
        "10",
        "--json",
    ]));
    assert_eq!(exact["search"], "exact");
    let built = json(&run(&[
        "ann",
        "build",
        "--model",
        &model,
        "--index",
        &idx,
        "--ef-construction",
        "64",
        "--json",
    ]));
    assert_eq!(built["items"], 9724);
    let rec = json(&run(&[
        "recommend",
        "--index",
        &idx,
        "--model",
        &model,
        "--user",
        "1",
        "-k",
        "10",
        "--json",
    ]));
    assert_eq!(rec["search"], "ann");
    assert_eq!(rec["cold_start"], false);
    let items = item_ids(&rec["items"]);
    assert_eq!(items.len(), 10);
    // Seen items are left out: none of user 1's rated movies comes back.
    let history = json(&run(&[
        "retrieve",
        "--index",
        &idx,
        "--user",
        "1",
        "--item",
        "1",
        "--strategy",
        "recent",
        "-n",
        "100000",
        "--json",
    ]));
    let seen: std::collections::HashSet<u64> =
        item_ids(&history["behaviors"]).into_iter().collect();
    assert!(seen.len() > 100, "user 1 rated {} movies", seen.len());
    assert!(items.iter().all(|i| !seen.contains(i)), "{items:?}");

    // The exact and the approximate search agree on most of the top 10.
    let exact_items: std::collections::HashSet<u64> =
        item_ids(&exact["items"]).into_iter().collect();
    let common = items.iter().filter(|i| exact_items.contains(i)).count();
    assert!(common >= 8, "ANN and exact top 10 share {common} items");

    // Recall then rank through a CTR model of the same index.
    json(&run(&[
        "train",
        "--index",
        &idx,
        "--model",
        "sum_pool",
        "--strategy",
        "recent",
        "-n",
        "10",
        "--epochs",
        "1",
        "--out",
        &ctr,
        "--device",
        "cpu",
        "--json",
    ]));
    let ranked = json(&run(&[
        "recommend",
        "--index",
        &idx,
        "--model",
        &model,
        "--user",
        "1",
        "-k",
        "5",
        "--rank-with",
        &ctr,
        "--candidates",
        "50",
        "--json",
    ]));
    assert_descending_scores(&ranked["items"], 5);

    // SASRec's item tower as the embeddings of the retrieval strategies
    // (summed parts), and a CTR model trained on what they retrieve, which
    // records the SASRec checkpoint it depends on.
    let attached = json(&run(&[
        "embeddings",
        "attach",
        "--index",
        &idx,
        "--model",
        &model,
        "--json",
    ]));
    assert_eq!(attached["meta"]["model"]["kind"], "sasrec", "{attached}");
    assert_eq!(attached["meta"]["combine"], "sum", "{attached}");
    assert_eq!(attached["dim"], 32);
    let soft = json(&run(&[
        "retrieve",
        "--index",
        &idx,
        "--user",
        "1",
        "--item",
        "2571",
        "--strategy",
        "sim-soft",
        "-n",
        "5",
        "--json",
    ]));
    assert_descending_scores(&soft["behaviors"], 5);
    let soft_ctr = p("din-soft");
    let trained = json(&run(&[
        "train",
        "--index",
        &idx,
        "--model",
        "sum_pool",
        "--strategy",
        "sim-soft",
        "--retrieval-model",
        &model,
        "-n",
        "10",
        "--epochs",
        "1",
        "--out",
        &soft_ctr,
        "--device",
        "cpu",
        "--json",
    ]));
    assert!(trained.to_string().contains("epochs"), "{trained}");

    // A CTR model is not a recall model, and back.
    let out = run(&["recommend", "--index", &idx, "--model", &ctr, "--user", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["eval", "--index", &idx, "--model", &model]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recall model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Full-ranking evaluation: the model beside the three baselines.
    let eval = json(&run(&[
        "eval-recall",
        "--index",
        &idx,
        "--model",
        &model,
        "--json",
    ]));
    let reports = eval["reports"].as_array().unwrap();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["scorer"].as_str().unwrap())
        .collect();
    assert_eq!(&names[..3], ["popularity", "item-cf", "repeat"]);
    assert_eq!(reports.len(), 4);
    for r in reports {
        assert_eq!(r["users"], 610, "{r}");
        let hr: Vec<f64> = r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["hr"].as_f64().unwrap())
            .collect();
        assert!(
            hr.windows(2).all(|w| w[0] <= w[1]),
            "HR grows with K: {hr:?}"
        );
    }
    // Unknown baseline, k = 0.
    let out = run(&["eval-recall", "--index", &idx, "--baselines", "magic"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&[
        "recommend",
        "--index",
        &idx,
        "--model",
        &model,
        "--user",
        "1",
        "-k",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
