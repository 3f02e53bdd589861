//! `hindsight-load-test`: an open-loop load generator for a running
//! `hindsight serve`.
//!
//! Requests are sent on a fixed schedule (not "as fast as answers come
//! back"), and each latency is measured from the request's scheduled time,
//! so a stalled server shows up in the percentiles instead of silently
//! slowing the generator down (no coordinated omission).
//!
//! A tool, not part of the product binary: it needs an HTTP client and no
//! model, so it lives in its own crate and builds without libtorch.

use std::process::ExitCode;

/// mimalloc rather than the system allocator: a retrieval builds one small
/// vector per behavior it returns (its categories); in `embedding_table`,
/// with the behavior rows warm, `recent`'s p50 went from 2.4-4.3 us under
/// glibc's allocator to 1.3-2.4 us (docs/benchmarks.md, session 4).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hindsight_core::metrics::percentile;
use hindsight_index::BehaviorIndex;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

/// Load a running `hindsight serve` at a fixed rate and report latency
/// percentiles.
///
/// Open loop: requests go out on schedule and latency counts from the
/// scheduled time. Score requests (real users, items and categories
/// sampled from --index) run at --rate while appends run at --append-rate;
/// afterwards every acknowledged behavior is read back, and the command
/// fails if one is missing.
#[derive(Parser)]
#[command(name = "hindsight-load-test", version, about, long_about)]
struct Args {
    /// The server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// The index the server serves, read here to sample real users, items
    /// and categories (opened read-only).
    #[arg(long)]
    pub index: PathBuf,
    /// Score requests per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of load (after the warm-up).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Candidates per score request.
    #[arg(long, default_value_t = 100)]
    pub candidates: usize,
    /// N per score request (default: the model's).
    #[arg(short = 'n', long = "n")]
    pub n: Option<usize>,
    /// Append requests per second (0: none).
    #[arg(long, default_value_t = 10.0)]
    pub append_rate: f64,
    /// Behaviors per append request.
    #[arg(long, default_value_t = 10)]
    pub append_size: usize,
    /// Requests outstanding at most; a request due while this many are
    /// outstanding is counted as dropped by the client.
    #[arg(long, default_value_t = 512)]
    pub max_outstanding: usize,
    /// Seed of the user/item sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// File holding the bearer token of the write endpoint.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Log {
    /// (measured, status or 0 for a transport error, latency seconds)
    samples: Vec<(bool, u16, f64)>,
    dropped: u64,
    /// Behaviors acknowledged: user -> items.
    acked: HashMap<u64, Vec<u64>>,
}

#[derive(Serialize)]
struct RouteStats {
    route: &'static str,
    requests: usize,
    ok: usize,
    shed_503: usize,
    other_errors: usize,
    dropped_by_client: u64,
    qps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct Outcome {
    addr: String,
    duration_secs: f64,
    candidates: usize,
    routes: Vec<RouteStats>,
    acknowledged_behaviors: usize,
    readable_after_run: usize,
    missing: usize,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(
    client: &HttpClient,
    uri: &str,
    body: String,
    token: Option<&str>,
) -> Result<(u16, Bytes)> {
    let mut req = hyper::Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

fn stats(route: &'static str, log: &Log, secs: f64) -> RouteStats {
    let measured: Vec<&(bool, u16, f64)> = log.samples.iter().filter(|s| s.0).collect();
    let mut lat: Vec<f64> = measured.iter().map(|s| s.2 * 1e3).collect();
    lat.sort_by(f64::total_cmp);
    let ok = measured.iter().filter(|s| s.1 == 200).count();
    let shed = measured.iter().filter(|s| s.1 == 503).count();
    RouteStats {
        route,
        requests: measured.len(),
        ok,
        shed_503: shed,
        other_errors: measured.len() - ok - shed,
        dropped_by_client: log.dropped,
        qps: ok as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    }
}

/// Sends `make(i)` at `rate` per second for `total` seconds; requests
/// before `warmup` seconds are sent but not measured.
#[allow(clippy::too_many_arguments)]
async fn drive(
    client: HttpClient,
    uri: String,
    token: Option<String>,
    rate: f64,
    warmup: f64,
    total: f64,
    max_outstanding: usize,
    log: Arc<Mutex<Log>>,
    mut make: impl FnMut(u64) -> (String, Option<(u64, Vec<u64>)>),
) {
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding));
    let start = tokio::time::Instant::now();
    let count = (rate * total) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let measured = i as f64 / rate >= warmup;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            if measured {
                log.lock().expect("log").dropped += 1;
            }
            continue;
        };
        let (body, ack) = make(i);
        let (client, uri, token, log) = (client.clone(), uri.clone(), token.clone(), log.clone());
        tasks.spawn(async move {
            let r = post(&client, &uri, body, token.as_deref()).await;
            let latency = due.elapsed().as_secs_f64();
            drop(permit);
            let status = r.as_ref().map_or(0, |(s, _)| *s);
            let mut log = log.lock().expect("log");
            log.samples.push((measured, status, latency));
            if status == 200 {
                if let Some((user, items)) = ack {
                    log.acked.entry(user).or_default().extend(items);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn run(a: Args) -> Result<()> {
    if a.rate <= 0.0 || a.duration <= 0.0 || a.candidates == 0 {
        bail!("--rate, --duration and --candidates must be positive");
    }
    let token = match &a.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let index = BehaviorIndex::open(&a.index)?;
    let snap = index.snapshot();
    let users = snap.users();
    let mut items: HashMap<u64, Vec<u64>> = HashMap::new();
    snap.for_each_item(|item, f| {
        items.entry(item).or_insert_with(|| f.categories.clone());
    });
    let mut items: Vec<(u64, Vec<u64>)> = items.into_iter().collect();
    items.sort_unstable();
    if users.is_empty() || items.is_empty() {
        bail!("the index {} is empty", a.index.display());
    }
    drop(snap);
    drop(index);
    let (users, items) = (Arc::new(users), Arc::new(items));
    let base = format!("http://{}", a.addr);
    let total = a.warmup + a.duration;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (score_log, append_log) = (
        Arc::new(Mutex::new(Log::default())),
        Arc::new(Mutex::new(Log::default())),
    );
    let outcome = rt.block_on(async {
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(a.max_outstanding)
            .build_http();
        // Is anyone there?
        let probe = client
            .get(format!("{base}/readyz").parse()?)
            .await
            .with_context(|| {
                format!("no server answers at {base}; start one with `hindsight serve`")
            })?;
        if !probe.status().is_success() {
            bail!(
                "{base}/readyz answered {}: the server is not ready",
                probe.status()
            );
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let (u, it, n, cands) = (users.clone(), items.clone(), a.n, a.candidates);
        let scores = drive(
            client.clone(),
            format!("{base}/v1/score"),
            None,
            a.rate,
            a.warmup,
            total,
            a.max_outstanding,
            score_log.clone(),
            move |_| {
                let user = u[rng.random_range(0..u.len())];
                let candidates: Vec<_> = (0..cands)
                    .map(|_| {
                        let (item, cats) = &it[rng.random_range(0..it.len())];
                        match cats.first() {
                            Some(c) => json!({"item_id": item, "category_id": c}),
                            None => json!({"item_id": item}),
                        }
                    })
                    .collect();
                let mut body = json!({"user_id": user, "candidates": candidates});
                if let Some(n) = n {
                    body["n"] = json!(n);
                }
                (body.to_string(), None)
            },
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ 0x5eed);
        let (u, it, size) = (users.clone(), items.clone(), a.append_size);
        // Timestamps after everything in the log and unique per behavior.
        let ts0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let appends = drive(
            client.clone(),
            format!("{base}/v1/behaviors"),
            token.clone(),
            a.append_rate.max(1e-9),
            a.warmup,
            if a.append_rate > 0.0 { total } else { 0.0 },
            a.max_outstanding,
            append_log.clone(),
            move |i| {
                // One user per request, so an acknowledgement maps to a user.
                let user = u[rng.random_range(0..u.len())];
                let mut acked = Vec::with_capacity(size);
                let behaviors: Vec<_> = (0..size)
                    .map(|k| {
                        let (item, cats) = &it[rng.random_range(0..it.len())];
                        acked.push(*item);
                        json!({"user_id": user, "item_id": item, "categories": cats,
                               "timestamp": ts0 + (i * size as u64 + k as u64) as i64})
                    })
                    .collect();
                (
                    json!({"behaviors": behaviors}).to_string(),
                    Some((user, acked)),
                )
            },
        );
        tokio::join!(scores, appends);

        // Every acknowledged behavior must be readable now.
        let acked = std::mem::take(&mut append_log.lock().expect("log").acked);
        let mut total_acked = 0;
        let mut readable = 0;
        for (user, items) in &acked {
            total_acked += items.len();
            let uri = format!(
                "{base}/v1/users/{user}/behaviors?limit={}",
                items.len().min(1000)
            );
            let mut req = hyper::Request::get(uri);
            if let Some(t) = &token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let resp = client.request(req.body(Full::new(Bytes::new()))?).await?;
            let body = resp.into_body().collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let mut listed: HashMap<u64, usize> = HashMap::new();
            for b in v["behaviors"].as_array().into_iter().flatten() {
                *listed
                    .entry(b["item_id"].as_u64().unwrap_or(0))
                    .or_default() += 1;
            }
            for item in items {
                if let Some(c) = listed.get_mut(item).filter(|c| **c > 0) {
                    *c -= 1;
                    readable += 1;
                }
            }
        }
        Ok::<_, anyhow::Error>(Outcome {
            addr: a.addr.clone(),
            duration_secs: a.duration,
            candidates: a.candidates,
            routes: vec![
                stats(
                    "POST /v1/score",
                    &score_log.lock().expect("log"),
                    a.duration,
                ),
                stats(
                    "POST /v1/behaviors",
                    &append_log.lock().expect("log"),
                    a.duration,
                ),
            ],
            acknowledged_behaviors: total_acked,
            readable_after_run: readable,
            missing: total_acked - readable,
        })
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "open-loop load on {} for {:.0} s (after {:.0} s warm-up), {} candidates per score request\n",
            outcome.addr, a.duration, a.warmup, outcome.candidates
        );
        println!("| route | requests | ok | 503 | other errors | dropped by client | ok/s | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &outcome.routes {
            println!(
                "| {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.route,
                r.requests,
                r.ok,
                r.shed_503,
                r.other_errors,
                r.dropped_by_client,
                r.qps,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms
            );
        }
        println!(
            "\nacknowledged behaviors: {}; readable after the run: {}; missing: {}",
            outcome.acknowledged_behaviors, outcome.readable_after_run, outcome.missing
        );
    }
    if outcome.missing > 0 {
        bail!("{} acknowledged behaviors are missing", outcome.missing);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
