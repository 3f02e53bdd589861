//! The two-phase command sequence of the embedding strategies on real
//! Taobao behaviors (the first 12,000 rows): train a first DIN, attach its
//! item embeddings, retrieve with sim-soft / eta / sdim, train a second
//! model on what they retrieve (`--retrieval-model`), evaluate it; and the
//! errors: other embeddings attached, a damaged file, a mismatched flag.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Output;

mod common;
use common::{bin, taobao_csv};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run hindsight")
}

fn ok_json(out: &Output) -> serde_json::Value {
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

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn train(idx: &str, strategy: &str, out: &Path, seed: &str, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "train",
        "--index",
        idx,
        "--model",
        "din",
        "--strategy",
        strategy,
        "-n",
        "10",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--seed",
        seed,
        "--out",
        out,
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn two_phase_training_with_embedding_retrieval() {
    let Some(csv) = taobao_csv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&small).unwrap());
        for line in std::io::BufReader::new(std::fs::File::open(&csv).unwrap())
            .lines()
            .take(12_000)
        {
            writeln!(w, "{}", line.unwrap()).unwrap();
        }
    }
    let idx_path = dir.path().join("taobao");
    let idx = idx_path.to_str().unwrap();
    let ing = run(&[
        "ingest",
        small.to_str().unwrap(),
        "--index",
        idx,
        "--preset",
        "taobao",
        "--json",
    ]);
    ok_json(&ing);

    // Without embeddings: a clear error.
    let r = run(&[
        "retrieve",
        "--index",
        idx,
        "--user",
        "1",
        "--item",
        "2268318",
        "--strategy",
        "eta",
    ]);
    fails_with(&r, "hindsight embeddings attach");

    // Phase one, and its embeddings.
    let m1 = dir.path().join("m1");
    ok_json(&train(idx, "ubr", &m1, "1", &[]));
    let att = ok_json(&run(&[
        "embeddings",
        "attach",
        "--index",
        idx,
        "--model",
        m1.to_str().unwrap(),
        "--json",
    ]));
    assert!(att["items"].as_u64().unwrap() > 1_000, "{att}");
    // DIN's item representation: [item, mean category, mean tag] of 18 each.
    assert_eq!(att["dim"], 54);
    assert_eq!(att["meta"]["hash"]["eta_bits"], 64);
    let info = ok_json(&run(&["embeddings", "info", "--index", idx, "--json"]));
    assert_eq!(info["meta"], att["meta"]);

    for strategy in ["sim-soft", "eta", "sdim"] {
        let r = ok_json(&run(&[
            "retrieve",
            "--index",
            idx,
            "--user",
            "1",
            "--item",
            "2268318",
            "--strategy",
            strategy,
            "-n",
            "20",
            "--as-of-seq",
            "40",
            "--json",
        ]));
        let hits = r["behaviors"].as_array().unwrap();
        assert!(hits.len() <= 20, "{strategy}: {}", hits.len());
        assert!(
            strategy == "sdim" || hits.len() == 20,
            "{strategy}: {}",
            hits.len()
        );
        assert!(hits.iter().all(|h| h["seq"].as_u64().unwrap() < 40));
    }

    // --retrieval-model is for the embedding strategies.
    fails_with(
        &train(
            idx,
            "recent",
            &dir.path().join("x"),
            "1",
            &["--retrieval-model", m1.to_str().unwrap()],
        ),
        "sim-soft, eta, sdim",
    );
    // Phase two, recorded in the checkpoint.
    let m2 = dir.path().join("m2");
    ok_json(&train(
        idx,
        "sim-soft",
        &m2,
        "1",
        &["--retrieval-model", m1.to_str().unwrap()],
    ));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m2.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        cfg["retrieval"]["embeddings"]["weights_sha256"],
        att["meta"]["model"]["weights_sha256"]
    );
    ok_json(&run(&[
        "eval",
        "--index",
        idx,
        "--model",
        m2.to_str().unwrap(),
        "--json",
    ]));

    // Another checkpoint's embeddings attached: the pair is refused.
    let m3 = dir.path().join("m3");
    ok_json(&train(idx, "recent", &m3, "7", &[]));
    fails_with(
        &train(
            idx,
            "eta",
            &dir.path().join("y"),
            "1",
            &["--retrieval-model", m3.to_str().unwrap()],
        ),
        "attach them first",
    );
    ok_json(&run(&[
        "embeddings",
        "attach",
        "--index",
        idx,
        "--model",
        m3.to_str().unwrap(),
        "--json",
    ]));
    fails_with(
        &run(&["eval", "--index", idx, "--model", m2.to_str().unwrap()]),
        "attach the model's retrieval checkpoint again",
    );

    // A damaged file.
    let store = idx_path.join("embeddings").join("store.hse");
    let mut bytes = std::fs::read(&store).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    std::fs::write(&store, bytes).unwrap();
    fails_with(
        &run(&[
            "retrieve",
            "--index",
            idx,
            "--user",
            "1",
            "--item",
            "2268318",
            "--strategy",
            "sdim",
        ]),
        "damaged",
    );
    // Bad settings are usage errors before anything is loaded.
    fails_with(
        &run(&[
            "embeddings",
            "attach",
            "--index",
            idx,
            "--model",
            m1.to_str().unwrap(),
            "--sdim-rounds",
            "11",
        ]),
        "rounds x bits <= 64",
    );
}
