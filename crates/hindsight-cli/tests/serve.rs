//! End to end: the real `hindsight serve` binary on a loopback port, on the
//! real Taobao index with a small model trained by `hindsight train`:
//! score, append, see appends retrieved, SIGKILL, restart, find every
//! acknowledged behavior; then a graceful SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{bin, taobao_csv};

/// Runs `cmd`, asserts success, returns its stderr.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run hindsight");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    stderr
}

/// One HTTP/1.1 request on a fresh connection; returns (status, JSON body).
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

struct Server {
    child: Child,
    addr: String,
}

/// Starts `hindsight serve` on a free loopback port and waits for it.
fn serve(index: &Path, model: &Path) -> Server {
    let mut child = bin()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--device",
            "cpu",
            "--index",
        ])
        .arg(index)
        .arg("--model")
        .arg(model)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hindsight serve");
    // The first line on stderr names the address.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .next()
        .expect("the server printed nothing")
        .expect("stderr");
    let addr = line
        .rsplit("http://")
        .next()
        .filter(|_| line.contains("serving"))
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim()
        .to_owned();
    // Keep draining stderr so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

fn newest(addr: &str, user: u64, limit: usize) -> Vec<(u64, i64)> {
    let (s, v) = http(
        addr,
        "GET",
        &format!("/v1/users/{user}/behaviors?limit={limit}"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v["behaviors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["item_id"].as_u64().unwrap(),
                b["timestamp"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn serve_score_append_sigkill_restart_keeps_every_acknowledged_behavior() {
    let Some(csv) = taobao_csv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (index, model) = (dir.path().join("taobao"), dir.path().join("model"));
    ok(bin()
        .args(["ingest", "--preset", "taobao"])
        .arg(&csv)
        .arg("--index")
        .arg(&index));
    let log = ok(bin()
        .args([
            "train",
            "--model",
            "din",
            "--strategy",
            "ubr",
            "-n",
            "10",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ])
        .arg("--index")
        .arg(&index)
        .arg("--out")
        .arg(&model));
    // Without a terminal the progress bar is hidden; the epoch line is not.
    assert!(
        log.contains("epoch 1: train loss") && log.contains("valid logloss"),
        "no epoch line in the training log: {log}"
    );

    let mut server = serve(&index, &model);
    let addr = server.addr.clone();
    let (s, v) = http(&addr, "GET", "/readyz", None);
    assert_eq!(
        (s, v["serving"]["index_behaviors"].as_u64()),
        (200, Some(84_474)),
        "{v}"
    );

    // The example request.
    let (s, v) = http(
        &addr,
        "POST",
        "/v1/score",
        Some(
            &json!({"user_id": 1, "candidates": [{"item_id": 2268318}, {"item_id": 3333, "category_id": 2520377}]}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    let scores = v["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2);
    assert!(scores
        .iter()
        .all(|p| (0.0..1.0).contains(&p.as_f64().unwrap())));

    // Append for user 1 and see it retrieved first for that item.
    let ts = 1_600_000_000i64;
    let (s, v) = http(
        &addr,
        "POST",
        "/v1/behaviors",
        Some(
            &json!({"behaviors": [{"user_id": 1, "item_id": 999_000_001, "category_id": 2520377, "behavior_type": "buy", "timestamp": ts}]}),
        ),
    );
    assert_eq!((s, v["added"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = http(
        &addr,
        "POST",
        "/v1/score",
        Some(&json!({"user_id": 1, "candidates": [{"item_id": 999_000_001}], "explain": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["explain"][0]["behaviors"][0]["item_id"], 999_000_001u64,
        "{v}"
    );
    assert_eq!(v["explain"][0]["behaviors"][0]["behavior_type"], "buy");

    // Concurrent appends from 8 clients; remember what was acknowledged.
    let acked: Vec<(u64, u64, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|c| {
                let addr = addr.clone();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for r in 0..10u64 {
                        let user = 100 + c;
                        let behaviors: Vec<(u64, u64, i64)> = (0..5u64)
                            .map(|k| (user, 900_000_000 + c * 1000 + r * 10 + k, ts + (r * 5 + k) as i64))
                            .collect();
                        let body = json!({"behaviors": behaviors.iter().map(|(u, i, t)| json!({"user_id": u, "item_id": i, "timestamp": t})).collect::<Vec<_>>()});
                        let (st, v) = http(&addr, "POST", "/v1/behaviors", Some(&body));
                        assert_eq!(st, 200, "{v}");
                        acked.extend(behaviors);
                    }
                    acked
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), 400);

    // kill -9 right after the last acknowledgement, then restart.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut server = serve(&index, &model);
    let addr = server.addr.clone();
    let (_, v) = http(&addr, "GET", "/readyz", None);
    assert_eq!(v["serving"]["index_behaviors"], 84_474 + 401, "{v}");
    for c in 0..8u64 {
        let user = 100 + c;
        let mut want: Vec<(u64, i64)> = acked
            .iter()
            .filter(|a| a.0 == user)
            .map(|a| (a.1, a.2))
            .collect();
        want.sort_by_key(|w| std::cmp::Reverse(w.1));
        assert_eq!(newest(&addr, user, 50), want, "user {user}");
    }
    assert_eq!(newest(&addr, 1, 1), vec![(999_000_001, ts)]);

    // SIGTERM: a graceful exit that releases the index, not held by a
    // client that sends nothing or half a request head (the grace period
    // is 30 s; the bound below is under it).
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    std::io::Write::write_all(&mut half, b"POST /v1/score HTTP/1.1\r\nhost: t\r\n").unwrap();
    // Accepted in order: once a later request is answered, both are open.
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    let t0 = Instant::now();
    ok(Command::new("kill").args(["-TERM", &server.child.id().to_string()]));
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    drop((silent, half));
    let server = serve(&index, &model);
    let (s, _) = http(&server.addr, "GET", "/healthz", None);
    assert_eq!(s, 200);
    let mut child = server.child;
    child.kill().unwrap();
    child.wait().unwrap();
}
