//! The `hindsight-load-test` binary against a small stand-in server on a
//! loopback port (no model, no libtorch): it speaks the four routes the
//! generator uses, and either keeps the behaviors it acknowledges or (to
//! check that the generator notices) forgets them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use hindsight_core::ItemFeatures;
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use serde_json::{json, Value};

/// A small index: users 1..=5, items with one category each.
fn index(dir: &Path) {
    let index = BehaviorIndex::create(dir, &DatasetMapping::preset("taobao").unwrap()).unwrap();
    let batch: Vec<NewBehavior> = (1..=5u64)
        .flat_map(|user| {
            (0..10u64).map(move |i| NewBehavior {
                user_id: user,
                item_id: 100 + i,
                features: ItemFeatures::with_categories(vec![i % 3]),
                behavior_type: 0,
                timestamp: 1_000 + i as i64,
            })
        })
        .collect();
    index.append(&batch).unwrap();
}

/// Behaviors kept by the stand-in: user -> item ids.
type Store = Arc<Mutex<HashMap<u64, Vec<u64>>>>;

/// Serves one request on `stream`.
fn answer(stream: TcpStream, store: &Store, keep: bool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let reply = match (method.as_str(), path.as_str()) {
        ("GET", "/readyz") => json!({"ready": true}),
        ("POST", "/v1/score") => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let n = v["candidates"].as_array().unwrap().len();
            json!({"scores": vec![0.5; n]})
        }
        ("POST", "/v1/behaviors") => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let behaviors = v["behaviors"].as_array().unwrap();
            if keep {
                let mut store = store.lock().unwrap();
                for b in behaviors {
                    store
                        .entry(b["user_id"].as_u64().unwrap())
                        .or_default()
                        .push(b["item_id"].as_u64().unwrap());
                }
            }
            json!({"added": behaviors.len()})
        }
        ("GET", p) if p.starts_with("/v1/users/") => {
            let user: u64 = p["/v1/users/".len()..]
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let items = store
                .lock()
                .unwrap()
                .get(&user)
                .cloned()
                .unwrap_or_default();
            json!({"behaviors": items.iter().rev().map(|i| json!({"item_id": i})).collect::<Vec<_>>()})
        }
        _ => json!({"error": "not found"}),
    };
    let text = reply.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Starts the stand-in on a free loopback port; returns its address.
fn stand_in(keep: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let store: Store = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || answer(stream, &store, keep));
        }
    });
    addr
}

fn load_test(addr: &str, index: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hindsight-load-test"))
        .args(["--addr", addr, "--index"])
        .arg(index)
        .args([
            "--rate",
            "20",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--candidates",
            "3",
            "--append-rate",
            "10",
            "--append-size",
            "2",
            "--json",
        ])
        .output()
        .expect("run hindsight-load-test")
}

#[test]
fn every_acknowledged_behavior_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let out = load_test(&stand_in(true), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes[0]["route"], "POST /v1/score");
    assert_eq!(routes[0]["requests"], 20, "{v}");
    assert_eq!(routes[0]["ok"], 20, "{v}");
    assert_eq!(routes[1]["requests"], 10, "{v}");
    assert_eq!(v["acknowledged_behaviors"], 20, "{v}");
    assert_eq!(v["readable_after_run"], 20, "{v}");
    assert_eq!(v["missing"], 0);
    assert!(routes[0]["p50_ms"].as_f64().unwrap() <= routes[0]["p99_ms"].as_f64().unwrap());
}

#[test]
fn a_server_that_loses_acknowledged_behaviors_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    let out = load_test(&stand_in(false), dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20 acknowledged behaviors are missing"),
        "{stderr}"
    );
}

#[test]
fn no_server_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    index(dir.path());
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = load_test(&addr, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hindsight serve"), "{stderr}");
}
