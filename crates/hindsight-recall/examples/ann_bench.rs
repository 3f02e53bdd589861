//! ANN benchmark: HNSW (`hnsw_rs`, the one `AnnIndex` wraps,
//! `instant-distance`, and with `--features usearch` `usearch`) against exact brute-force inner-product search, on a
//! seeded synthetic catalog generated at run time.
//!
//!     cargo run --release -p hindsight-recall [--features usearch] --example ann_bench -- \
//!         --items 1000000 --dim 64 [--queries 1000] [--ef-search 100,200,400] \
//!         [--backends hnsw_rs,instant-distance,usearch,usearch-l2]
//!
//! Prints, per backend: build time, RSS growth over the build (and the
//! process's peak), recall@k against the exact top k, and single-thread
//! query p50 / p99 (queries run one after another on the main thread);
//! the exact search is measured in the same run. The catalog: `--clusters`
//! Gaussian centres (0: no clusters, i.i.d. Gaussian items), each item a
//! centre plus Gaussian noise (`--noise`), scaled by a norm factor drawn
//! in [0.5, 1.5] so that inner product and cosine differ; queries are
//! drawn the same way (not catalog items).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hindsight_recall::ann::{AnnIndex, AnnParams, ExactIndex};

#[derive(Parser)]
#[command(about = "HNSW vs exact inner-product search on a synthetic catalog")]
struct Args {
    /// Catalog size.
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Queries timed (and checked against exact search).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Top k (recall@k).
    #[arg(short = 'k', long, default_value_t = 100)]
    k: usize,
    /// Cluster centres of the catalog (0: i.i.d. Gaussian items).
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Standard deviation of an item around its centre (centres have 1).
    #[arg(long, default_value_t = 0.5)]
    noise: f32,
    /// HNSW M.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// ef_search values to measure (comma-separated); instant-distance,
    /// which fixes it at build time, uses the first.
    #[arg(long, default_value = "100,200,400", value_delimiter = ',')]
    ef_search: Vec<usize>,
    /// Backends: hnsw_rs, instant-distance, and with `--features usearch`
    /// usearch (its IP metric) and usearch-l2 (L2 over the augmented
    /// vectors) (comma-separated).
    #[arg(
        long,
        default_value = "hnsw_rs,instant-distance",
        value_delimiter = ','
    )]
    backends: Vec<String>,
    /// Seed of the catalog and queries.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// A seeded normal sampler (splitmix64 + Box-Muller).
struct Normal(u64);
impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        ((hindsight_core::splitmix64(self.0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn draw(n: usize, args: &Args, centres: &[f32], rng: &mut Normal) -> Vec<f32> {
    let dim = args.dim;
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let scale = 0.5 + rng.uniform() as f32;
        if args.clusters == 0 {
            for _ in 0..dim {
                out.push(rng.next() * scale);
            }
        } else {
            let c = ((rng.uniform() * args.clusters as f64) as usize).min(args.clusters - 1);
            for d in 0..dim {
                out.push((centres[c * dim + d] + args.noise * rng.next()) * scale);
            }
        }
    }
    out
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Row {
    what: String,
    build_s: f64,
    rss_mib: f64,
    recall: f64,
    p50_us: f64,
    p99_us: f64,
}

/// The queries and their exact top k, shared by every backend's row.
struct Truth<'a> {
    queries: &'a [f32],
    dim: usize,
    k: usize,
    top: &'a [Vec<u64>],
}

/// Times `search` on every query (one after another, this thread) and
/// scores its recall@k against the exact top k.
fn measure(
    what: String,
    (build_s, rss_mib): (f64, f64),
    truth: &Truth<'_>,
    mut search: impl FnMut(&[f32]) -> Result<Vec<u64>>,
) -> Result<Row> {
    let Truth {
        queries,
        dim,
        k,
        top: truth,
    } = *truth;
    let mut times = Vec::with_capacity(truth.len());
    let mut hits = 0usize;
    let mut wanted = 0usize;
    for (q, t) in queries.chunks_exact(dim).zip(truth) {
        let start = Instant::now();
        let got = search(q)?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
        let t: std::collections::HashSet<u64> = t.iter().copied().collect();
        hits += got.iter().take(k).filter(|i| t.contains(i)).count();
        wanted += t.len();
    }
    times.sort_by(f64::total_cmp);
    Ok(Row {
        what,
        build_s,
        rss_mib,
        recall: hits as f64 / wanted.max(1) as f64,
        p50_us: percentile(&times, 0.5),
        p99_us: percentile(&times, 0.99),
    })
}

/// `[x, sqrt(M^2 - |x|^2)]` per row (M the largest norm): L2 nearest
/// neighbours of `[q, 0]` are then the largest inner products with `q`.
fn augment(vectors: &[f32], dim: usize) -> Vec<f32> {
    let norms: Vec<f32> = vectors
        .chunks_exact(dim)
        .map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    let max = norms.iter().copied().fold(0.0f32, f32::max);
    let mut out = Vec::with_capacity(vectors.len() / dim * (dim + 1));
    for (v, n) in vectors.chunks_exact(dim).zip(&norms) {
        out.extend_from_slice(v);
        out.push((max * max - n * n).max(0.0).sqrt());
    }
    out
}

#[derive(Clone)]
struct IdPoint(Vec<f32>);
impl instant_distance::Point for IdPoint {
    fn distance(&self, other: &Self) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.items == 0 || args.dim == 0 || args.queries == 0 || args.k == 0 {
        bail!("--items, --dim, --queries and -k must be at least 1");
    }
    if args.ef_search.is_empty() {
        bail!("--ef-search needs at least one value");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "catalog {} x {} (clusters {}, noise {}), {} queries, k {}, seed {}; threads for builds: {}; load average at start: {}",
        args.items,
        args.dim,
        args.clusters,
        args.noise,
        args.queries,
        args.k,
        args.seed,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let mut rng = Normal(args.seed);
    let centres: Vec<f32> = (0..args.clusters * args.dim).map(|_| rng.next()).collect();
    let vectors = draw(args.items, &args, &centres, &mut rng);
    let queries = draw(args.queries, &args, &centres, &mut rng);
    let ids: Vec<u64> = (0..args.items as u64).collect();

    let mut rows = Vec::new();
    let rss0 = rss_kib("VmRSS:");
    let t = Instant::now();
    let exact = ExactIndex::build(&ids, &vectors, args.dim)?;
    let exact_build = t.elapsed().as_secs_f64();
    let exact_rss = (rss_kib("VmRSS:").saturating_sub(rss0)) as f64 / 1024.0;
    let mut truth = Vec::with_capacity(args.queries);
    for q in queries.chunks_exact(args.dim) {
        truth.push(
            exact
                .search(q, args.k)?
                .into_iter()
                .map(|x| x.0)
                .collect::<Vec<_>>(),
        );
    }
    let exact_top = Truth {
        queries: &queries,
        dim: args.dim,
        k: args.k,
        top: &truth,
    };
    rows.push(measure(
        "exact (brute force)".into(),
        (exact_build, exact_rss),
        &exact_top,
        |q| Ok(exact.search(q, args.k)?.into_iter().map(|x| x.0).collect()),
    )?);
    drop(exact);

    for backend in &args.backends {
        match backend.as_str() {
            "hnsw_rs" => {
                let params = AnnParams {
                    m: args.m,
                    ef_construction: args.ef_construction,
                    ef_search: args.ef_search[0],
                };
                let rss0 = rss_kib("VmRSS:");
                let t = Instant::now();
                let ann = AnnIndex::build(&ids, &vectors, args.dim, params, "bench")
                    .context("building the hnsw_rs index")?;
                let build = t.elapsed().as_secs_f64();
                let rss = (rss_kib("VmRSS:").saturating_sub(rss0)) as f64 / 1024.0;
                for &ef in &args.ef_search {
                    rows.push(measure(
                        format!("hnsw_rs M={} efC={} ef={ef}", args.m, args.ef_construction),
                        (build, rss),
                        &exact_top,
                        |q| {
                            Ok(ann
                                .search_ef(q, args.k, ef)?
                                .into_iter()
                                .map(|x| x.0)
                                .collect())
                        },
                    )?);
                }
            }
            "instant-distance" => {
                // The same inner-product-to-L2 augmentation as AnnIndex.
                let rss0 = rss_kib("VmRSS:");
                let t = Instant::now();
                let points: Vec<IdPoint> = augment(&vectors, args.dim)
                    .chunks_exact(args.dim + 1)
                    .map(|a| IdPoint(a.to_vec()))
                    .collect();
                let ef = args.ef_search[0];
                let map = instant_distance::Builder::default()
                    .ef_construction(args.ef_construction)
                    .ef_search(ef.max(args.k))
                    .seed(args.seed)
                    .build(points, ids.clone());
                let build = t.elapsed().as_secs_f64();
                let rss = (rss_kib("VmRSS:").saturating_sub(rss0)) as f64 / 1024.0;
                let mut search = instant_distance::Search::default();
                rows.push(measure(
                    format!(
                        "instant-distance M=32 efC={} ef={}",
                        args.ef_construction,
                        ef.max(args.k)
                    ),
                    (build, rss),
                    &exact_top,
                    |q| {
                        let mut p = q.to_vec();
                        p.push(0.0);
                        Ok(map
                            .search(&IdPoint(p), &mut search)
                            .take(args.k)
                            .map(|item| *item.value)
                            .collect())
                    },
                )?);
            }
            #[cfg(feature = "usearch")]
            "usearch" | "usearch-l2" => {
                // `usearch`: inner product natively (usearch's IP metric,
                // 1 - dot). `usearch-l2`: L2 over the same augmentation as
                // AnnIndex. Inserts from every core.
                let l2 = backend == "usearch-l2";
                let dim = if l2 { args.dim + 1 } else { args.dim };
                let points: Vec<f32> = if l2 {
                    augment(&vectors, args.dim)
                } else {
                    vectors.clone()
                };
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let rss0 = rss_kib("VmRSS:");
                let t = Instant::now();
                let index = usearch::Index::new(&usearch::IndexOptions {
                    dimensions: dim,
                    metric: if l2 {
                        usearch::MetricKind::L2sq
                    } else {
                        usearch::MetricKind::IP
                    },
                    quantization: usearch::ScalarKind::F32,
                    connectivity: args.m,
                    expansion_add: args.ef_construction,
                    expansion_search: args.ef_search[0],
                    multi: false,
                })
                .map_err(|e| anyhow::anyhow!("usearch: {e}"))?;
                index
                    .reserve_capacity_and_threads(args.items, threads)
                    .map_err(|e| anyhow::anyhow!("usearch reserve: {e}"))?;
                let chunk = args.items.div_ceil(threads);
                std::thread::scope(|s| -> Result<()> {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let index = &index;
                            let points = &points;
                            s.spawn(move || -> Result<()> {
                                let lo = t * chunk;
                                let hi = ((t + 1) * chunk).min(args.items);
                                for i in lo..hi {
                                    index
                                        .add(i as u64, &points[i * dim..(i + 1) * dim])
                                        .map_err(|e| anyhow::anyhow!("usearch add: {e}"))?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    for h in handles {
                        h.join()
                            .map_err(|_| anyhow::anyhow!("an insert thread panicked"))??;
                    }
                    Ok(())
                })?;
                let build = t.elapsed().as_secs_f64();
                let rss = (rss_kib("VmRSS:").saturating_sub(rss0)) as f64 / 1024.0;
                for &ef in &args.ef_search {
                    index.change_expansion_search(ef);
                    rows.push(measure(
                        format!(
                            "{backend} M={} efC={} ef={ef}",
                            args.m, args.ef_construction
                        ),
                        (build, rss),
                        &exact_top,
                        |q| {
                            let mut p = q.to_vec();
                            if l2 {
                                p.push(0.0);
                            }
                            Ok(index
                                .search(&p, args.k)
                                .map_err(|e| anyhow::anyhow!("usearch search: {e}"))?
                                .keys)
                        },
                    )?);
                }
            }
            other => bail!(
                "unknown backend {other:?}; use usearch, usearch-l2, hnsw_rs or instant-distance"
            ),
        }
    }

    println!(
        "| index | build s | RSS growth MiB | recall@{} | query p50 us | query p99 us |",
        args.k
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.0} | {:.4} | {:.0} | {:.0} |",
            r.what, r.build_s, r.rss_mib, r.recall, r.p50_us, r.p99_us
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "peak RSS {:.0} MiB; load average at end: {}",
        rss_kib("VmHWM:") as f64 / 1024.0,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}
