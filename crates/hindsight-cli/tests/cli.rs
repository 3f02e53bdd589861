//! Tests of the `hindsight` binary: JSON outputs, error messages for bad
//! input, and crash safety of ingest under `kill -9`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use hindsight_core::AsOf;
use hindsight_index::BehaviorIndex;

mod common;
use common::{bin, taobao_csv};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run hindsight")
}

fn stdout_json(out: &Output) -> serde_json::Value {
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ingest_retrieve_info_json_on_real_taobao() {
    let Some(csv) = taobao_csv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("taobao");
    let idx = idx.to_str().unwrap();
    let v = stdout_json(&run(&[
        "ingest",
        "--preset",
        "taobao",
        csv.to_str().unwrap(),
        "--index",
        idx,
        "--json",
    ]));
    assert_eq!(v["rows_read"], 84_474);
    assert_eq!(v["behaviors_indexed"], 84_474);
    assert_eq!(v["rejected_rows"], 0);
    assert_eq!(v["users"], 815);
    assert!(v["behaviors_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["elapsed_secs"].as_f64().unwrap() > 0.0);

    let r = stdout_json(&run(&[
        "retrieve",
        "--index",
        idx,
        "--user",
        "1",
        "--item",
        "2268318",
        "--strategy",
        "ubr",
        "-n",
        "20",
        "--as-of-seq",
        "100",
        "--json",
    ]));
    let bs = r["behaviors"].as_array().unwrap();
    assert_eq!(bs.len(), 20);
    // The exact item (seq 0) is the best match.
    assert_eq!(bs[0]["item_id"], 2268318);
    for b in bs {
        for key in [
            "seq",
            "item_id",
            "categories",
            "behavior_type",
            "timestamp",
            "score",
        ] {
            assert!(b.get(key).is_some(), "missing {key} in {b}");
        }
        assert!(b["seq"].as_u64().unwrap() < 100);
        assert!(["pv", "cart", "fav", "buy"].contains(&b["behavior_type"].as_str().unwrap()));
    }
    assert_eq!(
        r["target"]["categories"][0], 2520377,
        "features looked up from the index"
    );

    let i = stdout_json(&run(&["index", "info", "--index", idx, "--json"]));
    assert_eq!(i["behaviors"], 84_474);
    assert_eq!(i["users"], 815);
    assert_eq!(i["schema_version"], 1);
    assert_eq!(i["ingests"][0]["complete"], true);
}

#[test]
fn bad_input_fails_with_messages_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("i");
    let idx = idx.to_str().unwrap();
    // Missing file.
    let out = run(&[
        "ingest",
        "--preset",
        "taobao",
        "/no/such/file.csv",
        "--index",
        idx,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/no/such/file.csv"),
        "{}",
        stderr(&out)
    );
    // Unknown preset.
    let csv = dir.path().join("log.csv");
    std::fs::write(&csv, "1,2,3,pv,100\n1,x,3,pv,101\n2,5,6,zap,102\n2,5\n").unwrap();
    let out = run(&[
        "ingest",
        "--preset",
        "nope",
        csv.to_str().unwrap(),
        "--index",
        idx,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("taobao"), "{}", stderr(&out));
    // Malformed rows: counted with line numbers, skipped.
    let v = stdout_json(&run(&[
        "ingest",
        "--preset",
        "taobao",
        csv.to_str().unwrap(),
        "--index",
        idx,
        "--json",
    ]));
    assert_eq!(v["behaviors_indexed"], 1);
    assert_eq!(v["rejected_rows"], 3);
    let lines: Vec<u64> = v["rejected_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4]);
    // --strict stops at the first and names it.
    let strict_idx = dir.path().join("s");
    let out = run(&[
        "ingest",
        "--preset",
        "taobao",
        csv.to_str().unwrap(),
        "--index",
        strict_idx.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    // A mapping naming an absent column.
    let mapping = dir.path().join("m.json");
    let mut m =
        serde_json::to_value(hindsight_logs::DatasetMapping::preset("movielens").unwrap()).unwrap();
    m["user"] = serde_json::json!("userId");
    std::fs::write(&mapping, m.to_string()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/movielens-small");
    if data.exists() {
        let out = run(&[
            "ingest",
            "--mapping",
            mapping.to_str().unwrap(),
            data.to_str().unwrap(),
            "--index",
            dir.path().join("ml").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("userId"), "{}", stderr(&out));
    }
    // Retrieval: unknown strategy, unknown index, unknown user (empty, not an error).
    let out = run(&[
        "retrieve",
        "--index",
        idx,
        "--user",
        "1",
        "--item",
        "2",
        "--strategy",
        "magic",
    ]);
    assert!(
        stderr(&out).contains("recent, sim-hard, ubr, hybrid"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "retrieve",
        "--index",
        dir.path().to_str().unwrap(),
        "--user",
        "1",
        "--item",
        "2",
    ]);
    assert!(
        stderr(&out).contains("hindsight ingest"),
        "{}",
        stderr(&out)
    );
    let v = stdout_json(&run(&[
        "retrieve", "--index", idx, "--user", "424242", "--item", "2", "--json",
    ]));
    assert_eq!(v["behaviors"].as_array().unwrap().len(), 0);
    // Target features resolve as the server resolves them: on taobao's
    // numeric categories a name must be a number (trimmed).
    let out = run(&[
        "retrieve",
        "--index",
        idx,
        "--user",
        "1",
        "--item",
        "2",
        "--category",
        "shoes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a numeric id"),
        "{}",
        stderr(&out)
    );
    let v = stdout_json(&run(&[
        "retrieve",
        "--index",
        idx,
        "--user",
        "1",
        "--item",
        "2",
        "--category",
        " 7 ",
        "--category",
        "3",
        "--json",
    ]));
    assert_eq!(v["target"]["categories"], serde_json::json!([3, 7]));
    // Another schema version is refused with what to do.
    let manifest = Path::new(idx).join("hindsight.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"schema_version\": 1", "\"schema_version\": 2"),
    )
    .unwrap();
    let out = run(&["index", "info", "--index", idx]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("schema version 2") && stderr(&out).contains("re-ingest"),
        "{}",
        stderr(&out)
    );
}

fn committed_behaviors(index_dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(index_dir.join("meta.json")) else {
        return 0;
    };
    let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
        return 0;
    };
    meta["payload"]
        .as_str()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| p["behaviors"].as_u64())
        .unwrap_or(0)
}

/// Every user's history is dense from seq 0 and the committed state
/// matches the documents.
fn check_consistent(index_dir: &Path) -> u64 {
    let index = BehaviorIndex::open(index_dir).expect("the last commit opens");
    let snap = index.snapshot();
    assert_eq!(
        snap.state().behaviors,
        snap.num_behaviors(),
        "state and documents disagree"
    );
    let stats = snap.stats();
    for user in 1..=stats.users + 1 {
        let h = snap.history(user).newest(&AsOf::NOW, usize::MAX);
        for (i, b) in h.iter().rev().enumerate() {
            assert_eq!(b.seq as usize, i, "user {user} has a gap or duplicate");
        }
    }
    snap.num_behaviors()
}

#[test]
fn kill_9_during_ingest_leaves_the_last_commit_readable_and_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("synth.csv");
    let total: u64 = 400_000;
    let out = run(&[
        "synth",
        "--behaviors",
        &total.to_string(),
        "--seed",
        "7",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let idx = dir.path().join("idx");
    let args = [
        "ingest",
        "--preset",
        "taobao",
        csv.to_str().unwrap(),
        "--index",
        idx.to_str().unwrap(),
        "--commit-every",
        "5000",
        "--sort-buffer",
        "50000",
        "--writer-memory-mb",
        "16",
    ];
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for a commit or two, then kill -9 mid-ingest.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if committed_behaviors(&idx) >= 10_000 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ingest finished ({status}) before it could be killed; make the input larger");
        }
        assert!(Instant::now() < deadline, "no commit within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = check_consistent(&idx);
    assert!(
        committed >= 10_000 && committed < total,
        "committed {committed}"
    );
    let index = BehaviorIndex::open(&idx).unwrap();
    let last = index.snapshot().state().ingests.last().cloned().unwrap();
    assert!(
        !last.complete,
        "the interrupted run is recorded as incomplete"
    );
    drop(index);
    // The writer lock of the killed process does not block the rerun
    // (tantivy's lock is an advisory flock released by the kernel).
    let mut rerun: Vec<&str> = args.to_vec();
    rerun.push("--json");
    let v = stdout_json(&run(&rerun));
    assert_eq!(v["duplicates_skipped"].as_u64().unwrap(), committed);
    assert_eq!(v["behaviors_indexed"].as_u64().unwrap(), total - committed);
    assert_eq!(check_consistent(&idx), total);
}

/// Typed arguments: a bad strategy, model, device, stop metric or N is a
/// usage error (exit 2) before any work, naming what is accepted.
#[test]
fn bad_argument_values_are_usage_errors_that_name_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("none");
    let idx = idx.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "retrieve",
                "--index",
                idx,
                "--user",
                "1",
                "--item",
                "2",
                "--strategy",
                "magic",
            ],
            "recent, sim-hard, ubr, hybrid",
        ),
        (
            vec![
                "retrieve", "--index", idx, "--user", "1", "--item", "2", "-n", "0",
            ],
            "at least 1",
        ),
        (
            vec![
                "export-samples",
                "--index",
                idx,
                "--out",
                idx,
                "--strategy",
                "x",
            ],
            "recent, sim-hard, ubr, hybrid",
        ),
        (
            vec![
                "export-samples",
                "--index",
                idx,
                "--out",
                idx,
                "--negatives",
                "random",
            ],
            "popularity or same-category",
        ),
        (
            vec![
                "export-samples",
                "--index",
                idx,
                "--out",
                idx,
                "--protocol",
                "3",
            ],
            "1..=2",
        ),
    ];
    #[cfg(feature = "model")]
    let cases = {
        let mut cases = cases;
        cases.extend([
            (
                vec!["train", "--index", idx, "--out", idx, "--model", "magic"],
                "sum_pool, din, dien",
            ),
            (
                vec!["train", "--index", idx, "--out", idx, "--device", "tpu"],
                "auto, cpu or cuda",
            ),
            (
                vec!["train", "--index", idx, "--out", idx, "--stop-metric", "f1"],
                "auc or auc-minus-logloss",
            ),
            (
                vec!["eval", "--index", idx, "--model", idx, "--device", "tpu"],
                "auto, cpu or cuda",
            ),
            (
                vec![
                    "report",
                    "--dataset",
                    "d",
                    "--out",
                    idx,
                    "--strategies",
                    "recent,zzz",
                ],
                "recent, sim-hard, ubr, hybrid",
            ),
            (
                vec![
                    "report",
                    "--dataset",
                    "d",
                    "--out",
                    idx,
                    "--models",
                    "din,zzz",
                ],
                "sum_pool, din, dien",
            ),
        ]);
        cases
    };
    for (args, want) in cases {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // Nothing was created by the refused commands.
    assert!(!Path::new(idx).exists());
}

/// Without the `model` feature the model commands exist, say what is
/// missing and how to build it, and exit 2 (not "unrecognized subcommand").
#[cfg(not(feature = "model"))]
#[test]
fn model_commands_say_how_to_build_them() {
    for args in [
        vec!["train", "--index", "i", "--out", "m"],
        vec!["eval", "--help"],
        vec!["report", "--dataset", "taobao", "--out", "r"],
        vec!["serve"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("`hindsight {}` needs libtorch", args[0]))
                && err.contains("cargo build --release -p hindsight-cli --features model"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    assert!(help.contains("no model commands"), "{help}");
}
