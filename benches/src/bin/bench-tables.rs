//! `bench-tables`: the ingest, retrieval and batch-retrieval tables of
//! docs/benchmarks.md on the log shapes of [`SynthShape`], with the naive
//! tantivy baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p hindsight-benches --no-default-features --bin bench-tables -- \
//!     retrieval --shape all --behaviors 10000000
//! ```
//!
//! * `ingest`: a cached synthetic CSV of each shape into a fresh index
//!   (behaviors/s, peak RSS, bytes per behavior on disk);
//! * `retrieval`: one (user, target) retrieval, top 50, one thread, per
//!   strategy and history size (1k, 10k, 50k), with targets of every
//!   [`TargetKind`] and as-of points at the end and the middle of
//!   histories;
//! * `batch`: 100 candidates of one user from one snapshot
//!   (`Retriever::retrieve_batch`), against one-by-one retrieval and the
//!   naive query run 100 times.
//!
//! Logs and indexes are built once per (shape, size, seed) under `--data`
//! (default `$HINDSIGHT_BENCH_DATA`, else `target/bench-data`) and reused.
//! Every table header says the machine, the index size and the load
//! average at start and end.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use hindsight_benches::{
    cached_csv, cpu_seconds, create_index, ingest_csv, load_average, machine, peak_rss_bytes,
    reset_peak_rss, shaped_config, shaped_name, shaped_samples, today_utc, BenchIndex, Percentiles,
    Result, Sample, DATA_ENV, HISTORY_SIZES, TOP_N,
};
use hindsight_core::{AsOf, Behavior, Target};
use hindsight_index::baseline::{naive_boolean, postings_newest, term_newest};
use hindsight_index::Snapshot;
use hindsight_retrieval::{Query, Retriever, StrategyKind};
use hindsight_synth::{SynthConfig, SynthShape, TargetKind, TargetSampler};

/// Prints the benchmark tables of docs/benchmarks.md on stdout (Markdown).
#[derive(Parser)]
#[command(name = "bench-tables", version)]
struct Cli {
    #[command(subcommand)]
    table: Table,
    /// Log shapes: `all` or a comma-separated list of taobao-like,
    /// big-catalog, sparse-categories, dense.
    #[arg(long, default_value = "all", global = true)]
    shape: String,
    /// Behaviors per index (the user mix of `SynthConfig::bench_10m`,
    /// scaled: half from 50k histories, 30% from 10k, 20% from 1k).
    #[arg(long, default_value_t = 10_000_000, global = true)]
    behaviors: u64,
    /// Seed of the synthetic logs.
    #[arg(long, default_value_t = 42, global = true)]
    seed: u64,
    /// Cache folder for logs and indexes (default: $HINDSIGHT_BENCH_DATA,
    /// else target/bench-data in the workspace).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Read behaviors from the tantivy columns, as before the row arrays
    /// (`BehaviorIndex::keep_rows_warm`, what the server and the training
    /// jobs do) existed: the "before" of docs/benchmarks.md.
    #[arg(long, global = true)]
    no_rows: bool,
}

/// Set from `--no-rows`.
static NO_ROWS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Subcommand)]
enum Table {
    /// Bulk ingest of each shape's CSV into a fresh index.
    Ingest,
    /// Single (user, target) retrieval latency, top 50, one thread.
    Retrieval {
        /// Timed calls per row.
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Users per history size.
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Targets per user and target kind.
        #[arg(long, default_value_t = 8)]
        per_kind: usize,
        /// Rows to time (comma-separated strategy names, and `baselines`
        /// for naive and bare tantivy); default: every feature strategy and
        /// the baselines.
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<String>,
        /// History sizes to time (comma-separated; default 1000,10000,50000).
        #[arg(long, value_delimiter = ',')]
        histories: Vec<usize>,
        /// Also time each strategy on each target kind alone (a row per
        /// kind: which targets make the tail).
        #[arg(long)]
        by_kind: bool,
    },
    /// 100 candidates of one user, one snapshot: batch against one by one.
    Batch {
        /// Timed batches per row.
        #[arg(long, default_value_t = 400)]
        calls: usize,
        /// Users of 50k behaviors (one batch each, rotating).
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Candidates per batch.
        #[arg(long, default_value_t = 100)]
        candidates: usize,
        /// Rows to time, as for `retrieval` (`baselines`: naive x
        /// candidates).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<String>,
    },
}

fn shapes(arg: &str) -> Result<Vec<SynthShape>> {
    if arg == "all" {
        return Ok(SynthShape::ALL.to_vec());
    }
    arg.split(',')
        .map(|s| s.trim().parse::<SynthShape>().map_err(Into::into))
        .collect()
}

/// The shape's index, built once from its cached CSV.
/// Warmed as a server warms it (its row arrays), unless `--no-rows`.
fn shaped_index(shape: SynthShape, cfg: &SynthConfig) -> Result<BenchIndex> {
    let bench = hindsight_benches::cached_index(cfg, &shaped_name(shape, cfg))?;
    if !NO_ROWS.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        let bytes = bench.index.keep_rows_warm();
        eprintln!(
            "{shape}: behavior rows {} in {:.2} s",
            mib(bytes as u64),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(bench)
}

/// How the behaviors are read, for the table headers.
fn rows_note(snapshot: &Snapshot) -> String {
    if NO_ROWS.load(std::sync::atomic::Ordering::Relaxed) {
        "behaviors read from the tantivy columns (`--no-rows`)".into()
    } else {
        format!(
            "behaviors read from the warmed row arrays and categories and tags looked up in memory ({}; the baselines read the tantivy columns)",
            mib(snapshot.warm_rows() as u64)
        )
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

fn header(title: &str, load_before: &str) {
    println!();
    println!("### {title} ({})", today_utc());
    println!();
    println!(
        "{}; load average (1/5/15 min) at start {load_before}, at end {}.  ",
        machine(),
        load_average()
    );
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(d) = &cli.data {
        std::env::set_var(DATA_ENV, d);
    }
    if cli.behaviors < 100_000 {
        return Err("--behaviors must be at least 100000 (one user of 50k, 10k and 1k)".into());
    }
    let shapes = shapes(&cli.shape)?;
    NO_ROWS.store(cli.no_rows, std::sync::atomic::Ordering::Relaxed);
    match cli.table {
        Table::Ingest => ingest_table(&shapes, cli.behaviors, cli.seed),
        Table::Retrieval {
            calls,
            users,
            per_kind,
            strategies,
            histories,
            by_kind,
        } => {
            let mut rows = RetrievalRows::new(&strategies, &histories)?;
            rows.by_kind = by_kind;
            retrieval_table(
                &shapes,
                cli.behaviors,
                cli.seed,
                calls,
                users,
                per_kind,
                &rows,
            )
        }
        Table::Batch {
            calls,
            users,
            candidates,
            strategies,
        } => {
            let rows = RetrievalRows::new(&strategies, &[])?;
            batch_table(
                &shapes,
                cli.behaviors,
                cli.seed,
                calls,
                users,
                candidates,
                &rows,
            )
        }
    }
}

const INGEST_GOAL: f64 = 300_000.0;
const PEAK_GOAL: u64 = 2 << 30;

fn ingest_table(shapes: &[SynthShape], behaviors: u64, seed: u64) -> Result<()> {
    let load_before = load_average();
    let mut rows = Vec::new();
    for &shape in shapes {
        let cfg = shaped_config(shape, behaviors).with_seed(seed);
        let csv = cached_csv(&cfg, &shaped_name(shape, &cfg))?;
        let scratch = tempfile::Builder::new()
            .prefix("bench-tables-ingest-")
            .tempdir_in(hindsight_benches::data_dir())?;
        let dir = scratch.path().join("index");
        let index = create_index(&dir)?;
        reset_peak_rss();
        eprintln!(
            "ingesting {} ({} behaviors)",
            csv.display(),
            cfg.total_behaviors()
        );
        let cpu0 = cpu_seconds().unwrap_or(0.0);
        let t = Instant::now();
        let report = ingest_csv(&index, &csv, true)?;
        let snapshot = index.refresh()?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds().unwrap_or(0.0) - cpu0;
        let peak = peak_rss_bytes().unwrap_or(0);
        let n = snapshot.num_behaviors();
        if n != cfg.total_behaviors() {
            return Err(format!(
                "index holds {n} behaviors, expected {}",
                cfg.total_behaviors()
            )
            .into());
        }
        let size = dir_size(&dir);
        let per_sec = n as f64 / secs;
        eprintln!(
            "  {shape}: {per_sec:.0} behaviors/s, peak RSS {}",
            mib(peak)
        );
        rows.push((
            shape,
            n,
            report.items,
            secs,
            per_sec,
            cpu,
            peak,
            size,
            snapshot.segments().len(),
            report.spilled_runs,
        ));
    }
    header(
        "Bulk ingest by log shape, CSV to searchable index",
        &load_before,
    );
    println!(
        "Default `IngestOptions`; timed from the start of `ingest()` until a refreshed snapshot \
         sees every behavior; peak = `VmHWM`, reset before each run. Goals: >= {:.0}k \
         behaviors/s, peak <= {}. CPU = user + system seconds of all threads; behaviors/CPU-s \
         x 2 is the rate on 2 cores that were this process's alone.",
        INGEST_GOAL / 1e3,
        mib(PEAK_GOAL)
    );
    println!();
    println!("| shape | behaviors | distinct items | seconds | behaviors/s | CPU s | behaviors/CPU-s | peak RSS | index size | bytes/behavior | segments | spilled runs | goals |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (shape, n, items, secs, per_sec, cpu, peak, size, segs, spilled) in rows {
        println!(
            "| {shape} | {n} | {items} | {secs:.1} | {per_sec:.0} | {cpu:.1} | {:.0} | {} | {} | {:.1} | {segs} | {spilled} | {}; {} |",
            n as f64 / cpu.max(1e-9),
            mib(peak),
            mib(size),
            size as f64 / n as f64,
            if per_sec >= INGEST_GOAL { "speed met" } else { "speed MISSED" },
            if peak <= PEAK_GOAL { "memory met" } else { "memory MISSED" },
        );
    }
    println!();
    Ok(())
}

/// The p99 aims of issue 12 at 50k behaviors, in microseconds.
fn single_aim(kind: StrategyKind) -> Option<f64> {
    match kind {
        StrategyKind::Recent | StrategyKind::SimHard => Some(5.0),
        StrategyKind::Ubr | StrategyKind::Hybrid => Some(15.0),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn time_calls(
    calls: usize,
    n: usize,
    mut f: impl FnMut(usize) -> Result<usize>,
) -> Result<(Percentiles, usize)> {
    // Untimed warm-up pass over every sample, counting short results.
    let mut short = 0;
    for i in 0..n {
        if f(i)? < TOP_N {
            short += 1;
        }
    }
    let mut nanos = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        let got = f(i % n)?;
        nanos.push(t.elapsed().as_nanos() as u64);
        black_box(got);
    }
    Ok((Percentiles::of(&mut nanos), short))
}

/// [`time_calls`] of `r.retrieve` over `samples`, top [`TOP_N`].
fn time_retrieve(
    r: &Retriever,
    snapshot: &Snapshot,
    calls: usize,
    samples: &[&Sample],
) -> Result<(Percentiles, usize)> {
    time_calls(calls, samples.len(), |i| {
        let s = samples[i];
        let q = Query::new(&s.target, TOP_N).as_of(s.as_of);
        Ok(r.retrieve(snapshot, s.user, &q)?.len())
    })
}

/// Which rows `bench-tables retrieval` times (`--strategies`, `--histories`).
struct RetrievalRows {
    baselines: bool,
    by_kind: bool,
    kinds: Vec<StrategyKind>,
    histories: Vec<usize>,
}

impl RetrievalRows {
    fn new(strategies: &[String], histories: &[usize]) -> Result<RetrievalRows> {
        let feature_kinds = || {
            StrategyKind::ALL
                .into_iter()
                .filter(|k| !k.needs_embeddings())
        };
        let (baselines, kinds) = if strategies.is_empty() {
            (true, feature_kinds().collect())
        } else {
            let mut kinds = Vec::new();
            let mut baselines = false;
            for s in strategies {
                if s == "baselines" {
                    baselines = true;
                    continue;
                }
                let kind: StrategyKind = s.parse()?;
                if kind.needs_embeddings() {
                    return Err(format!(
                        "{kind} needs item embeddings: its table is `cargo bench --bench embedding_table`"
                    )
                    .into());
                }
                kinds.push(kind);
            }
            (baselines, kinds)
        };
        let histories = if histories.is_empty() {
            HISTORY_SIZES.to_vec()
        } else {
            if let Some(h) = histories.iter().find(|h| !HISTORY_SIZES.contains(h)) {
                return Err(format!(
                    "--histories {h}: the indexes hold users of {HISTORY_SIZES:?}"
                )
                .into());
            }
            histories.to_vec()
        };
        Ok(RetrievalRows {
            baselines,
            by_kind: false,
            kinds,
            histories,
        })
    }
}

fn naive(snapshot: &Snapshot, s: &Sample) -> Result<usize> {
    Ok(naive_boolean(snapshot, s.user, &s.target, TOP_N, s.as_of)?.len())
}

fn retrieval_table(
    shapes: &[SynthShape],
    behaviors: u64,
    seed: u64,
    calls: usize,
    users: usize,
    per_kind: usize,
    rows: &RetrievalRows,
) -> Result<()> {
    let load_before = load_average();
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    for &shape in shapes {
        let cfg = shaped_config(shape, behaviors).with_seed(seed);
        let bench = shaped_index(shape, &cfg)?;
        let snapshot = bench.snapshot.clone();
        sizes.push((
            shape,
            snapshot.num_behaviors(),
            snapshot.segments().len(),
            rows_note(&snapshot),
        ));
        let sampler = TargetSampler::new(&cfg);
        for &size in &rows.histories {
            let kinded = shaped_samples(&cfg, &sampler, size, users, per_kind, seed);
            let samples: Vec<Sample> = kinded.iter().map(|(_, s)| s.clone()).collect();
            let base = if rows.baselines {
                Some(baselines(
                    &snapshot, shape, size, calls, &samples, &mut out,
                )?)
            } else {
                None
            };
            let all: Vec<&Sample> = samples.iter().collect();
            for &kind in &rows.kinds {
                let r = Retriever::new(kind);
                let (p, short) = time_retrieve(&r, &snapshot, calls, &all)?;
                eprintln!("{shape} {size:>6} {kind} p50 {:.1} p99 {:.1}", p.p50, p.p99);
                out.push((shape, size, kind.to_string(), Some(kind), p, base, short));
                if !rows.by_kind {
                    continue;
                }
                for target in TargetKind::ALL {
                    let these: Vec<&Sample> = kinded
                        .iter()
                        .filter(|(k, _)| *k == target)
                        .map(|(_, s)| s)
                        .collect();
                    if these.is_empty() {
                        continue;
                    }
                    let (p, short) = time_retrieve(&r, &snapshot, calls / 4, &these)?;
                    out.push((
                        shape,
                        size,
                        format!("{kind}, {target:?} targets only"),
                        None,
                        p,
                        None,
                        short,
                    ));
                }
            }
        }
    }
    print_retrieval(&load_before, calls, users, per_kind, &sizes, out);
    Ok(())
}

type RetrievalRow = (
    SynthShape,
    usize,
    String,
    Option<StrategyKind>,
    Percentiles,
    Option<Percentiles>,
    usize,
);

/// Times the three baselines on `samples`; returns naive's percentiles.
fn baselines(
    snapshot: &Snapshot,
    shape: SynthShape,
    size: usize,
    calls: usize,
    samples: &[Sample],
    out: &mut Vec<RetrievalRow>,
) -> Result<Percentiles> {
    let n = samples.len();
    let (base, _) = time_calls(calls, n, |i| naive(snapshot, &samples[i]))?;
    eprintln!(
        "{shape} {size:>6} naive p50 {:.1} p99 {:.1}",
        base.p50, base.p99
    );
    out.push((
        shape,
        size,
        "naive (baseline)".to_owned(),
        None,
        base,
        Some(base),
        0,
    ));
    type Lookup =
        fn(&Snapshot, u64, &Target, usize, AsOf) -> hindsight_index::Result<Vec<Behavior>>;
    let bare: [(&str, &str, Lookup); 2] = [
        (
            "bare term",
            "bare tantivy (user, category) newest (baseline)",
            term_newest,
        ),
        (
            "bare postings",
            "bare tantivy postings, columns held open (baseline)",
            postings_newest,
        ),
    ];
    for (short, name, lookup) in bare {
        let (p, _) = time_calls(calls, n, |i| {
            let s = &samples[i];
            Ok(lookup(snapshot, s.user, &s.target, TOP_N, s.as_of)?
                .len()
                .max(TOP_N))
        })?;
        eprintln!(
            "{shape} {size:>6} {short} p50 {:.1} p99 {:.1}",
            p.p50, p.p99
        );
        out.push((shape, size, name.to_owned(), None, p, Some(base), 0));
    }
    Ok(base)
}

fn print_retrieval(
    load_before: &str,
    calls: usize,
    users: usize,
    per_kind: usize,
    sizes: &[(SynthShape, u64, usize, String)],
    out: Vec<RetrievalRow>,
) {
    header(
        "Retrieval latency by log shape, top 50, one thread",
        load_before,
    );
    for (shape, n, segs, rows) in sizes {
        print!("{shape}: {n} behaviors, {segs} segment(s), {rows}. ");
    }
    println!(" ");
    println!(
        "{calls} timed calls per row, rotating over {users} users x {per_kind} targets of each \
         kind (touched item, shared category, rare category, unseen), as of the end and the \
         middle of the history; every strategy materializes the behaviors' fields in the timed \
         path. naive = `naive_boolean` (tantivy `Must(user) + Should(item) + \
         Should(category)`, `FilterCollector` on `uk`); bare tantivy = `term_newest` (the \
         (user, category) terms, `TopDocs` by `uk` descending, fields from the open columns, \
         no padding); bare postings = `postings_newest` (the same lookup on tantivy's \
         postings and columns directly, all held open: whole posting lists, no padding); all \
         measured in the same run. Aims at 50k: \
         p99 <= 5 us `recent`, `sim-hard`; <= 15 us `ubr`, `hybrid`."
    );
    println!();
    println!("| shape | history | strategy | p50 (us) | p99 (us) | p99.9 (us) | mean (us) | naive p50 / p50 | naive p99 / p99 | aim (p99 at 50k) |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (shape, size, name, kind, p, base, short) in out {
        let aim = match (size, kind.and_then(single_aim)) {
            (50_000, Some(a)) if p.p99 <= a => format!("<= {a}: met"),
            (50_000, Some(a)) => format!("<= {a}: MISSED"),
            _ => String::new(),
        };
        let name = if short > 0 {
            format!("{name} ({short} short)")
        } else {
            name
        };
        println!(
            "| {shape} | {size} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {aim} |",
            p.p50,
            p.p99,
            p.p999,
            p.mean,
            base.map_or("-".into(), |b| format!("{:.1}x", b.p50 / p.p50)),
            base.map_or("-".into(), |b| format!("{:.1}x", b.p99 / p.p99)),
        );
    }
    println!();
}

fn queries(v: &[Sample]) -> Vec<Query<'_>> {
    v.iter()
        .map(|s| Query::new(&s.target, TOP_N).as_of(s.as_of))
        .collect()
}

fn batch_aim(kind: StrategyKind) -> Option<f64> {
    match kind {
        StrategyKind::Ubr => Some(300.0),
        StrategyKind::SimHard => Some(200.0),
        _ => None,
    }
}

fn batch_table(
    shapes: &[SynthShape],
    behaviors: u64,
    seed: u64,
    calls: usize,
    users: usize,
    candidates: usize,
    rows: &RetrievalRows,
) -> Result<()> {
    let load_before = load_average();
    let mut out = Vec::new();
    let mut info = Vec::new();
    for &shape in shapes {
        let cfg = shaped_config(shape, behaviors).with_seed(seed);
        let bench = shaped_index(shape, &cfg)?;
        let snapshot = bench.snapshot.clone();
        let sampler = TargetSampler::new(&cfg);
        // One request per user: `candidates` targets of every kind, all as
        // of the end of the history (one request, one as-of point).
        let per_kind = candidates.div_ceil(TargetKind::ALL.len());
        let mut requests: Vec<(u64, Vec<Sample>)> = Vec::new();
        let mut categories = 0usize;
        for (_, s) in shaped_samples(&cfg, &sampler, 50_000, users, per_kind, seed) {
            let s = Sample {
                as_of: AsOf::NOW,
                ..s
            };
            match requests.iter_mut().find(|(u, _)| *u == s.user) {
                Some((_, v)) if v.len() < candidates => v.push(s),
                Some(_) => {}
                None => requests.push((s.user, vec![s])),
            }
        }
        for (_, v) in &requests {
            let mut c: Vec<u64> = v
                .iter()
                .flat_map(|s| s.target.features.categories.clone())
                .collect();
            c.sort_unstable();
            c.dedup();
            categories += c.len();
        }
        info.push((
            shape,
            snapshot.num_behaviors(),
            requests.len(),
            categories as f64 / requests.len().max(1) as f64,
        ));
        let n = requests.len();
        let base = if rows.baselines {
            let (base, _) = time_calls(calls, n, |i| {
                let mut total = 0;
                for s in &requests[i].1 {
                    total += naive(&snapshot, s)?;
                }
                Ok(total)
            })?;
            eprintln!(
                "{shape} batch naive x{candidates} p50 {:.1} p99 {:.1}",
                base.p50, base.p99
            );
            out.push((
                shape,
                "naive x candidates (baseline)".to_owned(),
                None,
                base,
                base,
                Some(base),
            ));
            Some(base)
        } else {
            None
        };
        for &kind in &rows.kinds {
            let r = Retriever::new(kind);
            let (one, _) = time_calls(calls, n, |i| {
                let (user, v) = &requests[i];
                let got = r.retrieve_many(&snapshot, *user, &queries(v))?;
                Ok(got.iter().map(Vec::len).min().unwrap_or(0))
            })?;
            let (batch, _) = time_calls(calls, n, |i| {
                let (user, v) = &requests[i];
                let got = r.retrieve_batch(&snapshot, *user, &queries(v))?;
                Ok((0..got.len()).map(|q| got.hits(q).len()).min().unwrap_or(0))
            })?;
            eprintln!(
                "{shape} batch {kind} p50 {:.1} p99 {:.1} (one by one p50 {:.1})",
                batch.p50, batch.p99, one.p50
            );
            out.push((shape, kind.to_string(), Some(kind), batch, one, base));
        }
    }
    header(
        "Batch retrieval by log shape: the candidates of one request",
        &load_before,
    );
    for (shape, n, users, cats) in &info {
        print!("{shape}: {n} behaviors, {users} users of 50k, {cats:.1} distinct categories per batch. ");
    }
    println!(" ");
    println!(
        "One batch = {candidates} candidates of one user of 50k behaviors (every target kind), \
         top {TOP_N} each, as of the end of the history, one snapshot, one thread, fields \
         materialized; {calls} timed batches per row. batch = `Retriever::retrieve_batch`, \
         one by one = `Retriever::retrieve_many` (each candidate alone on the shared history), \
         naive = `naive_boolean` run once per candidate, all in the same run. Goals: <= 0.3 ms \
         `ubr`, <= 0.2 ms `sim-hard`."
    );
    println!();
    println!("| shape | strategy | batch p50 (us) | batch p99 (us) | mean (us) | one by one p50 (us) | one by one / batch (p50) | naive p50 / batch p50 | goal (p50) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for (shape, name, kind, p, one, base) in out {
        let goal = match kind.and_then(batch_aim) {
            Some(a) if p.p50 <= a => format!("<= {a}: met"),
            Some(a) => format!("<= {a}: MISSED"),
            None => String::new(),
        };
        println!(
            "| {shape} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}x | {} | {goal} |",
            p.p50,
            p.p99,
            p.mean,
            one.p50,
            one.p50 / p.p50,
            base.map_or("-".into(), |b| format!("{:.1}x", b.p50 / p.p50)),
        );
    }
    println!();
    Ok(())
}
