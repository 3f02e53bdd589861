//! Shared set-up of the hindsight benchmarks.
//!
//! The benchmarks run against indexes built from the seeded synthetic log
//! of [`hindsight_synth`], cached on disk between runs:
//!
//! * [`bench_10m`] returns the 10M-behavior index of
//!   [`SynthConfig::bench_10m`] (users `1..=100` have 50k behaviors,
//!   `101..=400` 10k and `401..=2400` 1k), building it on first use (a
//!   minute or more; progress goes to stderr) and reusing it afterwards as
//!   long as it holds the expected number of behaviors;
//! * [`samples`] draws deterministic (user, target, as-of) triples for the
//!   users of one history size;
//! * [`cached_csv`] writes a synthetic log as Taobao CSV once and reuses it.
//!
//! Everything lives in the folder given by [`data_dir`]: the environment
//! variable `HINDSIGHT_BENCH_DATA` if set, else `target/bench-data/` in the
//! workspace. Delete it to force a rebuild (for instance after changing the
//! generator).
//!
//! The bench targets run in quick mode ([`Mode::Quick`]) when cargo runs
//! them without `--bench` (`cargo test --benches`): a small index with one
//! user per history size, so that they are smoke-tested in seconds.

/// The allocator the shipped binaries use (`hindsight`, `hindsight-loadtest`),
/// so that the benches time what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hindsight_core::{AsOf, ItemFeatures, Target};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions, IngestReport, Phase, Snapshot};
use hindsight_logs::DatasetMapping;
use hindsight_synth::{
    item_category, write_csv, SynthConfig, SynthLog, SynthShape, TargetKind, TargetSampler,
    UserGroup,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Errors of the benchmark set-up (all fatal for a benchmark).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Result alias of the set-up functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Environment variable overriding the cache folder.
pub const DATA_ENV: &str = "HINDSIGHT_BENCH_DATA";

/// The history sizes the retrieval benchmarks measure, in behaviors.
pub const HISTORY_SIZES: [usize; 3] = [1_000, 10_000, 50_000];

/// The retrieval budget N of the benchmarks.
pub const TOP_N: usize = 50;

/// How a bench target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: the full data set and measurement.
    Full,
    /// `cargo test --benches` (no `--bench` argument): a small index and a
    /// few iterations, to check that the target works.
    Quick,
}

impl Mode {
    /// The mode of this process, from its arguments: [`Mode::Full`] when
    /// cargo passed `--bench`.
    pub fn from_args() -> Mode {
        if std::env::args().any(|a| a == "--bench") {
            Mode::Full
        } else {
            Mode::Quick
        }
    }
}

/// The cache folder: `$HINDSIGHT_BENCH_DATA`, or `target/bench-data/` in
/// the workspace root.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .unwrap_or(manifest)
                .join("target")
                .join("bench-data")
        }
    }
}

/// The mapping every benchmark ingests with (the `taobao` preset, which
/// reads the synthetic CSV as is).
pub fn mapping() -> Result<DatasetMapping> {
    Ok(DatasetMapping::preset("taobao")?)
}

/// The synthetic log of a mode: [`SynthConfig::bench_10m`] in full mode;
/// in quick mode one user of each history size (50k, 10k, 1k, in that
/// order like `bench_10m`) over 100k items.
pub fn config(mode: Mode) -> SynthConfig {
    match mode {
        Mode::Full => SynthConfig::bench_10m(),
        Mode::Quick => {
            let mut cfg = SynthConfig::bench_10m();
            cfg.users = [50_000, 10_000, 1_000]
                .into_iter()
                .map(|behaviors| UserGroup {
                    count: 1,
                    behaviors,
                })
                .collect();
            cfg.items = 100_000;
            cfg.categories = 1_000;
            cfg
        }
    }
}

/// Writes the log of `cfg` as Taobao CSV to `data_dir()/<name>.csv` unless
/// that file exists, and returns its path. The file is written under a
/// temporary name and renamed, so an interrupted run leaves no partial
/// file behind.
pub fn cached_csv(cfg: &SynthConfig, name: &str) -> Result<PathBuf> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.csv"));
    if path.is_file() {
        return Ok(path);
    }
    let tmp = dir.join(format!("{name}.csv.partial"));
    eprintln!(
        "bench set-up: writing {} synthetic behaviors to {}",
        cfg.total_behaviors(),
        path.display()
    );
    let started = Instant::now();
    let rows = write_csv(cfg, BufWriter::with_capacity(1 << 20, File::create(&tmp)?))?;
    if rows != cfg.total_behaviors() {
        return Err(format!("wrote {rows} rows, expected {}", cfg.total_behaviors()).into());
    }
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "bench set-up: wrote {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// Creates an empty index with the benchmark mapping at `path` (which must
/// not hold one).
pub fn create_index(path: &Path) -> Result<BehaviorIndex> {
    Ok(BehaviorIndex::create(path, &mapping()?)?)
}

/// Ingests `csv` into `index` with the default options, printing progress
/// to stderr about every two seconds when `verbose`.
pub fn ingest_csv(index: &BehaviorIndex, csv: &Path, verbose: bool) -> Result<IngestReport> {
    let started = Instant::now();
    let mut last = Instant::now();
    let mut progress = |p: &hindsight_index::IngestProgress| {
        if !verbose || last.elapsed() < Duration::from_secs(2) {
            return;
        }
        last = Instant::now();
        let t = started.elapsed().as_secs_f64();
        match p.phase {
            Phase::Read => eprintln!(
                "  [{t:6.1} s] read {:>11} rows ({:.0}%)",
                p.rows_read,
                100.0 * p.bytes_read as f64 / p.total_bytes.max(1) as f64
            ),
            Phase::Index => eprintln!(
                "  [{t:6.1} s] indexed {:>11} / {} behaviors",
                p.behaviors_done, p.behaviors_total
            ),
        }
    };
    Ok(ingest(
        index,
        &mapping()?,
        csv,
        &IngestOptions::default(),
        &mut progress,
    )?)
}

/// An index built from a synthetic log, opened for retrieval.
pub struct BenchIndex {
    /// The log it was built from.
    pub config: SynthConfig,
    /// The index.
    pub index: BehaviorIndex,
    /// Its current snapshot.
    pub snapshot: Arc<Snapshot>,
}

impl BenchIndex {
    /// The ids of the users with `history` behaviors, in id order (user
    /// ids are assigned from 1 in group order).
    pub fn users_with_history(&self, history: usize) -> std::ops::Range<u64> {
        users_with_history(&self.config, history)
    }
}

/// The ids of the users of `cfg` with exactly `history` behaviors (the
/// first group of that size; empty if none).
pub fn users_with_history(cfg: &SynthConfig, history: usize) -> std::ops::Range<u64> {
    let mut first = 1u64;
    for g in &cfg.users {
        let end = first + g.count as u64;
        if g.behaviors == history && g.count > 0 {
            return first..end;
        }
        first = end;
    }
    0..0
}

/// The 10M-behavior benchmark index (see the crate docs): in full mode
/// [`SynthConfig::bench_10m`] at `data_dir()/index-10m`, in quick mode the
/// small log of [`config`] at `data_dir()/index-quick`.
pub fn bench_10m(mode: Mode) -> Result<BenchIndex> {
    match mode {
        Mode::Full => cached_index(&config(mode), "10m"),
        Mode::Quick => cached_index(&config(mode), "quick"),
    }
}

/// Opens `data_dir()/index-<name>` if it holds exactly the behaviors of
/// `cfg`, else (re)builds it from the cached CSV `data_dir()/<name>.csv`.
pub fn cached_index(cfg: &SynthConfig, name: &str) -> Result<BenchIndex> {
    let dir = data_dir().join(format!("index-{name}"));
    let expected = cfg.total_behaviors();
    if dir.is_dir() {
        match BehaviorIndex::open(&dir) {
            Ok(index) if index.snapshot().num_behaviors() == expected => {
                let snapshot = index.snapshot();
                return Ok(BenchIndex {
                    config: cfg.clone(),
                    index,
                    snapshot,
                });
            }
            Ok(index) => eprintln!(
                "bench set-up: {} holds {} behaviors, expected {expected}; rebuilding",
                dir.display(),
                index.snapshot().num_behaviors()
            ),
            Err(e) => eprintln!(
                "bench set-up: cannot open {} ({e}); rebuilding",
                dir.display()
            ),
        }
        std::fs::remove_dir_all(&dir)?;
    }
    let csv = cached_csv(cfg, name)?;
    eprintln!(
        "bench set-up: building {} from {} (once; reused by later runs)",
        dir.display(),
        csv.display()
    );
    let index = create_index(&dir)?;
    let report = ingest_csv(&index, &csv, true)?;
    eprintln!(
        "bench set-up: indexed {} behaviors in {:.1} s ({:.0} behaviors/s)",
        report.behaviors_indexed, report.elapsed_secs, report.behaviors_per_sec
    );
    let snapshot = index.refresh()?;
    if snapshot.num_behaviors() != expected {
        return Err(format!(
            "built index holds {} behaviors, expected {expected}",
            snapshot.num_behaviors()
        )
        .into());
    }
    Ok(BenchIndex {
        config: cfg.clone(),
        index,
        snapshot,
    })
}

/// The benchmark user mix of [`SynthConfig::bench_10m`] (half of the
/// behaviors from users of 50k, 30% from users of 10k, 20% from users of
/// 1k) scaled to about `total` behaviors (at least one user of each size),
/// in `shape`. At `total = 10_000_000` this is exactly
/// [`SynthConfig::bench_10m_shaped`].
pub fn shaped_config(shape: SynthShape, total: u64) -> SynthConfig {
    let n50 = (total / 2 / 50_000).max(1);
    let n10 = (total * 3 / 10 / 10_000).max(1);
    let n1 = (total.saturating_sub(n50 * 50_000 + n10 * 10_000) / 1_000).max(1);
    let mut cfg = SynthConfig::bench_10m_shaped(shape);
    cfg.users = vec![
        UserGroup {
            count: n50 as usize,
            behaviors: 50_000,
        },
        UserGroup {
            count: n10 as usize,
            behaviors: 10_000,
        },
        UserGroup {
            count: n1 as usize,
            behaviors: 1_000,
        },
    ];
    cfg
}

/// The cache name of a shaped benchmark log: shape, size and seed, so that
/// a changed setting never reuses another log's files.
pub fn shaped_name(shape: SynthShape, cfg: &SynthConfig) -> String {
    format!("{shape}-{}-s{}", cfg.total_behaviors(), cfg.seed)
}

/// Samples of the shapes' benchmark targets ([`TargetSampler`]) for up to
/// `users` users with `history` behaviors: per user, `per_kind` targets of
/// each [`TargetKind`] (touched items, items only sharing a category, items
/// of a rarely touched category, unseen items), half as of the end of the
/// history and half as of its middle; shuffled (seeded).
pub fn shaped_samples(
    cfg: &SynthConfig,
    sampler: &TargetSampler,
    history: usize,
    users: usize,
    per_kind: usize,
    seed: u64,
) -> Vec<(TargetKind, Sample)> {
    let mut out = Vec::new();
    for user in users_with_history(cfg, history).take(users) {
        let rows: Vec<_> = SynthLog::for_users(cfg, user..user + 1).collect();
        for t in sampler.targets(&rows, per_kind, seed ^ user) {
            out.push((
                t.kind,
                Sample {
                    user,
                    target: Target {
                        item_id: t.item_id,
                        features: ItemFeatures::with_categories(vec![t.category_id]),
                    },
                    as_of: AsOf::seq(t.as_of_seq),
                },
            ));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ history as u64);
    out.shuffle(&mut rng);
    out
}

/// One retrieval to measure: a user, a target item and an as-of point.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The user.
    pub user: u64,
    /// The target item, with its category.
    pub target: Target,
    /// Only behaviors strictly before this point are eligible.
    pub as_of: AsOf,
}

/// Draws `count` samples (deterministic for a given `seed`) for the users
/// with `history` behaviors: up to 64 users of the group, each sample for
/// one of them (round-robin), with
///
/// * as of the end of the history ([`AsOf::NOW`]) for half of the samples
///   and as of its middle (`AsOf::seq(len / 2)`) for the other half;
/// * as target, for three samples in four an item (with its category) the
///   user touched before the as-of point, so that category and item
///   matches exist; for the fourth a random item of the catalog, with its
///   category.
///
/// The samples are shuffled, so that consecutive retrievals hit different
/// users and targets.
pub fn samples(bench: &BenchIndex, history: usize, count: usize, seed: u64) -> Vec<Sample> {
    let cfg = &bench.config;
    let users: Vec<u64> = bench.users_with_history(history).take(64).collect();
    assert!(!users.is_empty(), "no user has {history} behaviors");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ history as u64);
    let mut out = Vec::with_capacity(count);
    let per_user = count.div_ceil(users.len());
    for &user in &users {
        let hist = bench.snapshot.history(user);
        let behaviors = hist.newest(&AsOf::NOW, usize::MAX);
        let len = behaviors.len();
        assert!(len > 1, "user {user} has {len} behaviors");
        for i in 0..per_user {
            if out.len() >= count {
                break;
            }
            let as_of = if i % 2 == 0 {
                AsOf::NOW
            } else {
                AsOf::seq((len / 2) as u32)
            };
            let target = if i % 4 == 3 {
                let item = rng.random_range(1..=cfg.items);
                Target {
                    item_id: item,
                    features: ItemFeatures::with_categories(vec![item_category(cfg, item)]),
                }
            } else {
                // A behavior before the as-of point (`behaviors` is in
                // descending seq order).
                let skip = match as_of.seq {
                    Some(s) => behaviors.partition_point(|b| b.seq >= s),
                    None => 0,
                };
                let b = &behaviors[rng.random_range(skip..len)];
                Target {
                    item_id: b.item_id,
                    features: ItemFeatures::with_categories(b.features.categories.clone()),
                }
            };
            out.push(Sample {
                user,
                target,
                as_of,
            });
        }
    }
    out.shuffle(&mut rng);
    out
}

/// Percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of `nanos` (sorted in place); nearest-rank.
    pub fn of(nanos: &mut [u64]) -> Percentiles {
        assert!(!nanos.is_empty(), "no measurement");
        nanos.sort_unstable();
        let n = nanos.len();
        let micros: Vec<f64> = nanos.iter().map(|&x| x as f64 / 1e3).collect();
        let at = |q: f64| hindsight_core::metrics::percentile(&micros, q);
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            mean: nanos.iter().sum::<u64>() as f64 / n as f64 / 1e3,
            max: nanos[n - 1] as f64 / 1e3,
        }
    }
}

/// The peak resident set size of this process in bytes (`VmHWM` of
/// `/proc/self/status`), if the platform has it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

/// The current resident set size of this process in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux: writing 5 to
/// `/proc/self/clear_refs`). Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// CPU time (user + system, all threads) this process has used so far,
/// in seconds (`/proc/self/stat`, clock ticks of 1/100 s), if the platform
/// has it. Unlike wall-clock time it barely depends on what else runs on
/// a shared machine.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The machine's CPU model and core count, for report headers.
pub use hindsight_core::host::machine;

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), to tell a
/// quiet machine from a busy one in reports.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Today's date (UTC) as `YYYY-MM-DD`, for report headers.
pub fn today_utc() -> String {
    hindsight_core::host::utc_date(hindsight_core::host::now_unix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_10m_groups_are_in_id_order() {
        let cfg = config(Mode::Full);
        assert_eq!(cfg.total_behaviors(), 10_000_000);
        assert_eq!(users_with_history(&cfg, 50_000), 1..101);
        assert_eq!(users_with_history(&cfg, 10_000), 101..401);
        assert_eq!(users_with_history(&cfg, 1_000), 401..2401);
        assert_eq!(cfg.behaviors_of(100), 50_000);
        assert_eq!(cfg.behaviors_of(101), 10_000);
        assert_eq!(cfg.behaviors_of(2400), 1_000);
        assert_eq!(cfg.behaviors_of(2401), 0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
    }
}
