//! `hindsight report`: runs the evaluation grid that
//! [`hindsight_engine::grid`] defines, once per training seed, and formats
//! it (report.md with mean ± std cells and the notes on which differences
//! exceed the spread, report.json with every seed's figures, the AUC by
//! history plots with error bars).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hindsight_engine::grid::{
    Grid, GridEvent, GridRow, GridSpec, Section, DEFAULT_SEEDS, FULL_HISTORY_N,
};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions};
use hindsight_logs::DatasetMapping;
use hindsight_model::{Device, ModelConfig, ModelKind, StopMetric};
use hindsight_retrieval::StrategyKind;
use hindsight_samples::{Negatives, Protocol, SampleCounts};
use serde::{Deserialize, Serialize};

use super::train::{print_eval, progress_display, set_torch_threads};

/// Train and evaluate every (strategy, model) pair on a dataset, once per
/// training seed, and write the report: report.md (mean ± std tables and
/// notes), report.json (every seed's figures), auc_by_history.png.
///
/// The grid: the strategies x models at N (default recent, sim-hard, ubr,
/// hybrid x sum_pool, din, dien, atrank, bst at N = 50), DIN at a smaller N
/// (20) for every strategy, and the full-history reference (DIN over all
/// behaviors before the target, at most 1,000). With --hard-negatives, the
/// main rows again under the hard-negative variant of the protocol (every
/// strategy with DIN at both N, ATRank and BST with the best strategy of
/// the main table). The samples are fixed by the protocol's sampler seed
/// (42); each seed of --seeds trains every run once (initialisation and
/// batch order). Training runs until early stopping (patience 2) or the
/// epoch cap (20). Every option can also come from --config (TOML or JSON,
/// docs/evaluation-protocol.md); flags override it. Results are written
/// after every run, so an interrupted report keeps what it finished.
#[derive(clap::Args)]
pub struct Args {
    /// The dataset's name in the report, and the default index
    /// index/<dataset>. Any name works with an existing --index; when the
    /// index is absent, taobao and movielens build it from --data.
    #[arg(long)]
    pub dataset: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Index folder (default index/<dataset>; built if absent, for taobao
    /// and movielens).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Data folder holding taobao/ and movielens-small/.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// A report config, TOML (.toml) or JSON: models, strategies, Ns,
    /// seeds, epochs, per-model settings (docs/evaluation-protocol.md).
    /// Flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Models (comma-separated): sum_pool, din, dien, atrank, bst
    /// [default: all].
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<ModelKind>>,
    /// Strategies (comma-separated) [default: recent,sim-hard,ubr,hybrid].
    #[arg(long, value_delimiter = ',')]
    pub strategies: Option<Vec<StrategyKind>>,
    /// Budget N of the main grid [default: 50].
    #[arg(short = 'n', long = "n", value_parser = super::at_least_one)]
    pub n: Option<usize>,
    /// Also run DIN at this smaller N for every strategy (0: skip)
    /// [default: 20].
    #[arg(long, visible_alias = "small-n")]
    pub din_small_n: Option<usize>,
    /// The full-history reference: DIN over the N most recent behaviors,
    /// i.e. the whole history up to this cap (0: skip) [default: 1000].
    #[arg(long)]
    pub full_history_n: Option<usize>,
    /// Training seeds (comma-separated), each run trained once per seed
    /// [default: 1,2,3].
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Maximum epochs per run; early stopping usually ends it before
    /// [default: 20].
    #[arg(long, visible_alias = "epochs")]
    pub max_epochs: Option<usize>,
    /// Early stopping: epochs without a better validation figure before
    /// stopping (the best epoch's weights are kept) [default: 2].
    #[arg(long)]
    pub patience: Option<usize>,
    /// What early stopping maximises: auc-minus-logloss (default) or auc.
    #[arg(long)]
    pub stop_metric: Option<StopMetric>,
    /// Also run the main rows under the hard-negative variant (negatives
    /// from the positive's category) as a second table.
    #[arg(long)]
    pub hard_negatives: bool,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// CPU threads of libtorch. Default 1: on a small shared machine, more
    /// threads than free cores make libtorch's spinning workers collapse
    /// (an epoch took 20x longer with 2 threads beside other jobs).
    #[arg(long)]
    pub torch_threads: Option<i32>,
    /// Where trained models are kept (folder per run); none if not given.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub protocol: super::ProtocolArgs,
}

/// A report config file: every field optional, flags override it.
///
/// `all` holds model settings (any field of the model config, e.g.
/// `learning_rate`, `min_users`) for every model; `model.<name>` for one
/// model, over `all`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Models of the main grid.
    pub models: Option<Vec<String>>,
    /// Strategies.
    pub strategies: Option<Vec<String>>,
    /// The main N.
    pub n: Option<usize>,
    /// The small N (0: none).
    pub small_n: Option<usize>,
    /// Models run at the small N.
    pub small_n_models: Option<Vec<String>>,
    /// The full-history cap (0: none).
    pub full_history_n: Option<usize>,
    /// Models of the full-history reference.
    pub full_history_models: Option<Vec<String>>,
    /// Training seeds.
    pub seeds: Option<Vec<u64>>,
    /// Maximum epochs.
    pub max_epochs: Option<usize>,
    /// Early-stopping patience.
    pub patience: Option<usize>,
    /// What early stopping maximises.
    pub stop_metric: Option<String>,
    /// Whether to run the hard-negative table.
    pub hard_negatives: Option<bool>,
    /// Models run with every strategy in the hard-negative table.
    pub hard_negative_models: Option<Vec<String>>,
    /// Models run with the main table's best strategy in the hard-negative
    /// table.
    pub hard_negative_best_models: Option<Vec<String>>,
    /// Model settings for every model.
    #[serde(default)]
    pub all: serde_json::Map<String, serde_json::Value>,
    /// Model settings per model name.
    #[serde(default)]
    pub model: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

impl ReportConfig {
    /// Reads a TOML (`.toml`) or JSON file.
    pub fn load(path: &Path) -> Result<ReportConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let is_toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        if is_toml {
            toml::from_str(&text)
                .with_context(|| format!("{} is not a report config (TOML)", path.display()))
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a report config (JSON)", path.display()))
        }
    }

    /// The model config of `kind`: its defaults, then `all`, then
    /// `model.<kind>`.
    pub fn model_config(&self, kind: ModelKind) -> Result<ModelConfig> {
        let mut value = serde_json::to_value(ModelConfig::new(kind))?;
        let obj = value.as_object_mut().expect("a config is an object");
        for (k, v) in &self.all {
            obj.insert(k.clone(), v.clone());
        }
        if let Some(own) = self.model.get(kind.as_str()) {
            for (k, v) in own {
                obj.insert(k.clone(), v.clone());
            }
        }
        if obj.get("kind").and_then(|k| k.as_str()) != Some(kind.as_str()) {
            bail!("the report config cannot change a model's kind (model.{kind})");
        }
        let cfg: ModelConfig = serde_json::from_value(value)
            .with_context(|| format!("the report config's settings for {kind}"))?;
        cfg.validate()
            .with_context(|| format!("the report config's settings for {kind}"))?;
        Ok(cfg)
    }

    fn check_model_names(&self) -> Result<()> {
        for name in self.model.keys() {
            name.parse::<ModelKind>()
                .with_context(|| format!("[model.{name}] in the report config"))?;
        }
        Ok(())
    }
}

fn parse_list<T: std::str::FromStr>(list: &[String], what: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    list.iter()
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{what} in the report config: {e}"))
        })
        .collect()
}

/// What a report runs, resolved from the defaults, the config file and
/// the flags.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    models: Vec<String>,
    strategies: Vec<String>,
    n: usize,
    small_n: usize,
    small_n_models: Vec<String>,
    full_history_n: usize,
    full_history_models: Vec<String>,
    seeds: Vec<u64>,
    max_epochs: usize,
    patience: usize,
    stop_metric: StopMetric,
    hard_negatives: bool,
    hard_negative_models: Vec<String>,
    hard_negative_best_models: Vec<String>,
    /// Every model's config as run (seed aside).
    model_configs: BTreeMap<String, ModelConfig>,
}

/// The figures of one table (a protocol): every run of every seed.
#[derive(Serialize)]
struct Table {
    /// The sampling protocol.
    protocol: Protocol,
    samples: Option<SampleCounts>,
    rows: Vec<GridRow>,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    command: String,
    commit: String,
    machine: String,
    date: String,
    /// Wall-clock seconds of the command so far.
    wall_seconds: f64,
    /// Peak resident memory of the command (VmHWM), KiB.
    peak_rss_kib: Option<u64>,
    plan: Plan,
    /// The main protocol.
    main: Table,
    /// The hard-negative variant, when run.
    hard_negatives: Option<Table>,
}

fn open_or_build(dataset: &str, index: &Path, data: &Path) -> Result<BehaviorIndex> {
    if index.join("hindsight.json").exists() {
        return Ok(BehaviorIndex::open(index)?);
    }
    let (preset, input) = match dataset {
        "taobao" => ("taobao", data.join("taobao/UserBehavior.csv")),
        "movielens" => ("movielens", data.join("movielens-small")),
        other => bail!(
            "no index at {} and no bundled data for dataset {other:?}; give --index with an \
             existing index, or use taobao or movielens",
            index.display()
        ),
    };
    let mapping = DatasetMapping::preset(preset)?;
    eprintln!("building {} from {}", index.display(), input.display());
    let idx = BehaviorIndex::create(index, &mapping)?;
    ingest(
        &idx,
        &mapping,
        &input,
        &IngestOptions::default(),
        &mut |_| {},
    )?;
    Ok(idx)
}

/// The peak resident memory of this process (`VmHWM` of
/// /proc/self/status), KiB; `None` where there is no such file.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The commit the binary runs from (`git rev-parse --short HEAD`, with
/// `+dirty` when the work tree has changes), or "unknown".
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { "+dirty" } else { "" })
        }
        None => "unknown".to_owned(),
    }
}

/// Mean and sample standard deviation (n - 1) of some values; the std is
/// `None` with fewer than two.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    mean: f64,
    std: Option<f64>,
    count: usize,
}

impl Stat {
    fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let count = values.len();
        let mean = values.iter().sum::<f64>() / count as f64;
        let std = (count > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1) as f64).sqrt()
        });
        Some(Stat { mean, std, count })
    }

    fn cell(s: Option<Stat>) -> String {
        match s {
            None => "-".into(),
            Some(Stat {
                mean,
                std: Some(sd),
                ..
            }) => format!("{mean:.4} ± {sd:.4}"),
            Some(Stat { mean, .. }) => format!("{mean:.4}"),
        }
    }
}

/// Whether the difference of two cells exceeds their spread: `|mean_a -
/// mean_b| > std_a + std_b`. `None` when either has a single seed.
fn exceeds_spread(a: Stat, b: Stat) -> Option<bool> {
    Some((a.mean - b.mean).abs() > a.std? + b.std?)
}

/// The seeds of one (section, strategy, N, model) cell.
struct Cell<'a> {
    section: Section,
    strategy: &'a str,
    n: usize,
    model: &'a str,
    rows: Vec<&'a GridRow>,
}

impl<'a> Cell<'a> {
    fn stat(&self, f: impl Fn(&GridRow) -> Option<f64>) -> Option<Stat> {
        let v: Vec<f64> = self.rows.iter().filter_map(|r| f(r)).collect();
        Stat::of(&v)
    }

    fn auc(&self) -> Option<Stat> {
        self.stat(|r| r.eval.all.auc)
    }

    fn mean(&self, f: impl Fn(&GridRow) -> f64) -> f64 {
        self.rows.iter().map(|r| f(r)).sum::<f64>() / self.rows.len().max(1) as f64
    }
}

/// The rows grouped into cells, in the order of their first run.
fn cells(rows: &[GridRow]) -> Vec<Cell<'_>> {
    let mut out: Vec<Cell<'_>> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|c| {
            c.section == r.section && c.strategy == r.strategy && c.n == r.n && c.model == r.model
        }) {
            Some(c) => c.rows.push(r),
            None => out.push(Cell {
                section: r.section,
                strategy: &r.strategy,
                n: r.n,
                model: &r.model,
                rows: vec![r],
            }),
        }
    }
    out
}

fn strategy_label(c: &Cell<'_>) -> String {
    if c.section == Section::FullHistory {
        format!("full ({} N={})", c.strategy, c.n)
    } else {
        c.strategy.to_owned()
    }
}

fn table_md(t: &Table) -> String {
    let mut s = String::new();
    if let Some(c) = &t.samples {
        s += &format!(
            "Samples (docs/evaluation-protocol.md v{}, {} negatives, sampler seed {}): {} positives ({} with an item new to the user); train {}, valid {}, test {} (with negatives){}.\n",
            t.protocol.version,
            t.protocol.negatives.as_str(),
            t.protocol.seed,
            c.positives,
            c.new_item_positives,
            c.train,
            c.valid,
            c.test,
            if c.category_fallbacks > 0 {
                format!("; {} negatives fell back to the main sampler (no unseen item in the category)", c.category_fallbacks)
            } else {
                String::new()
            }
        );
    }
    if let Some(row) = t.rows.first() {
        s += &format!(
            "Test samples {}; long-history slice (history > {}): {}; new-item slice: {}.\n",
            row.eval.all.samples,
            row.eval.long_history_threshold,
            row.eval.long_history.samples,
            row.eval.new_item.as_ref().map_or(0, |m| m.samples)
        );
    }
    s += "\n| strategy | N | model | seeds | AUC | gAUC | logloss | long AUC | new-item AUC | epochs (best) | train samples/s | infer samples/s | MFLOP/sample |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for c in cells(&t.rows) {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} ({:.1}) | {:.0} | {:.0} | {:.2} |\n",
            strategy_label(&c),
            c.n,
            c.model,
            c.rows.len(),
            Stat::cell(c.auc()),
            Stat::cell(c.stat(|r| r.eval.all.gauc)),
            Stat::cell(c.stat(|r| r.eval.all.logloss)),
            Stat::cell(c.stat(|r| r.eval.long_history.auc)),
            Stat::cell(c.stat(|r| r.eval.new_item.as_ref().and_then(|m| m.auc))),
            c.mean(|r| r.epochs as f64),
            c.mean(|r| r.best_epoch as f64),
            c.mean(|r| r.train_samples_per_sec),
            c.mean(|r| r.eval.inference_samples_per_sec),
            c.mean(|r| r.mean_flops_per_sample) / 1e6,
        );
    }
    s
}

fn verdict(a: Stat, b: Stat) -> String {
    let d = a.mean - b.mean;
    match exceeds_spread(a, b) {
        Some(true) => format!("{d:+.4} (real)"),
        Some(false) => format!("{d:+.4} (within spread)"),
        None => format!("{d:+.4} (one seed: no spread)"),
    }
}

/// A slice's figure of a cell (AUC, long-history AUC, new-item AUC).
type SliceFn = dyn Fn(&Cell<'_>) -> Option<Stat>;

/// A plotted point: x, mean, std.
type ErrorPoint = (f64, f64, f64);

/// The notes: every strategy against `recent` per model and N (AUC and
/// long-history AUC), and every model against DIN per strategy at the
/// main N.
fn differences_md(t: &Table) -> String {
    let cs = cells(&t.rows);
    let mut s = String::from(
        "\n| compared | N | model | Δ AUC | Δ long AUC | Δ new-item AUC |\n|---|---|---|---|---|---|\n",
    );
    let slices: [&SliceFn; 3] = [
        &|c: &Cell<'_>| c.auc(),
        &|c: &Cell<'_>| c.stat(|r| r.eval.long_history.auc),
        &|c: &Cell<'_>| c.stat(|r| r.eval.new_item.as_ref().and_then(|m| m.auc)),
    ];
    let line = |a: &Cell<'_>, b: &Cell<'_>, what: String| {
        let parts: Vec<String> = slices
            .iter()
            .map(|f| match (f(a), f(b)) {
                (Some(x), Some(y)) => verdict(x, y),
                _ => "-".into(),
            })
            .collect();
        format!(
            "| {what} | {} | {} | {} |\n",
            a.n,
            a.model,
            parts.join(" | ")
        )
    };
    for a in cs.iter().filter(|c| c.section != Section::FullHistory) {
        if a.strategy == "recent" {
            continue;
        }
        if let Some(b) = cs.iter().find(|b| {
            b.section != Section::FullHistory
                && b.strategy == "recent"
                && b.n == a.n
                && b.model == a.model
        }) {
            s += &line(a, b, format!("{} vs recent", a.strategy));
        }
    }
    for a in cs
        .iter()
        .filter(|c| c.model != "din" && c.section != Section::FullHistory)
    {
        if let Some(b) = cs.iter().find(|b| {
            b.model == "din"
                && b.n == a.n
                && b.strategy == a.strategy
                && b.section != Section::FullHistory
        }) {
            s += &line(a, b, format!("{} vs din, {}", a.model, a.strategy));
        }
    }
    s
}

/// The full-history reference: each DIN cell's share of the reference's
/// AUC lift over 0.5, and its compute against the reference's.
fn full_history_md(t: &Table) -> String {
    let cs = cells(&t.rows);
    let Some(full) = cs.iter().find(|c| c.section == Section::FullHistory) else {
        return String::new();
    };
    let Some(full_auc) = full.auc() else {
        return String::new();
    };
    let mut s = format!(
        "\nFull-history reference: {} over all behaviors before the target (at most {}), mean input {:.0} behaviors, {:.2} MFLOP per test sample (forward, estimated analytically; {:.2} at a full {}), {:.0} training and {:.0} inference samples/s. \"AUC kept\" is (AUC - 0.5) / (full AUC - 0.5); \"compute\" is MFLOP per test sample against the reference's.\n\n",
        full.model,
        full.n,
        full.mean(|r| r.mean_input_len),
        full.mean(|r| r.mean_flops_per_sample) / 1e6,
        full.mean(|r| r.flops_per_sample) / 1e6,
        full.n,
        full.mean(|r| r.train_samples_per_sec),
        full.mean(|r| r.eval.inference_samples_per_sec),
    );
    s += "| strategy | N | AUC | Δ vs full | AUC kept | mean input | compute | train samples/s | infer samples/s |\n|---|---|---|---|---|---|---|---|---|\n";
    let full_flops = full.mean(|r| r.mean_flops_per_sample);
    for c in cs.iter().filter(|c| c.model == full.model) {
        let Some(a) = c.auc() else { continue };
        s += &format!(
            "| {} | {} | {} | {} | {:.1} % | {:.0} | {:.1} % | {:.0} | {:.0} |\n",
            strategy_label(c),
            c.n,
            Stat::cell(Some(a)),
            if c.section == Section::FullHistory {
                "-".into()
            } else {
                verdict(a, full_auc)
            },
            100.0 * (a.mean - 0.5) / (full_auc.mean - 0.5),
            c.mean(|r| r.mean_input_len),
            100.0 * c.mean(|r| r.mean_flops_per_sample) / full_flops.max(1e-9),
            c.mean(|r| r.train_samples_per_sec),
            c.mean(|r| r.eval.inference_samples_per_sec),
        );
    }
    s
}

/// The by-history buckets of the DIN cells at the main N (and the
/// full-history reference): mean ± std per bucket.
fn by_history_md(t: &Table, n: usize) -> String {
    let cs: Vec<Cell<'_>> = cells(&t.rows)
        .into_iter()
        .filter(|c| c.model == "din" && (c.n == n || c.section == Section::FullHistory))
        .collect();
    let Some(first) = cs.first() else {
        return String::new();
    };
    let buckets = &first.rows[0].eval.by_history;
    let mut s = String::from("\nAUC by history length (test samples, DIN):\n\n| strategy | N |");
    for b in buckets {
        s += &format!(" [{}, {}) |", b.from, bucket_end(b.to));
    }
    s += "\n|---|---|";
    s += &"---|".repeat(buckets.len());
    s += "\n";
    for c in &cs {
        s += &format!("| {} | {} |", strategy_label(c), c.n);
        for (j, b) in buckets.iter().enumerate() {
            let st = c.stat(|r| r.eval.by_history.get(j).and_then(|x| x.metrics.auc));
            s += &format!(" {} (n={}) |", Stat::cell(st), b.metrics.samples);
        }
        s += "\n";
    }
    s
}

fn bucket_end(to: u32) -> String {
    if to == u32::MAX {
        "inf".into()
    } else {
        to.to_string()
    }
}

fn markdown(r: &Report) -> String {
    let p = &r.plan;
    let mut s = format!("# Evaluation report: {}\n\n", r.dataset);
    s += &format!(
        "- command: `{}`\n- commit: {}\n- machine: {}\n- date: {}\n- wall time: {:.0} s; peak RSS {}\n",
        r.command,
        r.commit,
        r.machine,
        r.date,
        r.wall_seconds,
        r.peak_rss_kib
            .map_or("unknown".into(), |k| format!("{:.2} GiB", k as f64 / 1048576.0))
    );
    let metric = match p.stop_metric {
        StopMetric::Auc => "validation AUC",
        StopMetric::AucMinusLogloss => "validation AUC minus logloss",
    };
    s += &format!(
        "- training seeds {:?} (initialisation and batch order; the samples are fixed by the sampler seed); up to {} epochs, early stopping on {metric} with patience {}, best epoch kept\n",
        p.seeds, p.max_epochs, p.patience
    );
    s += "\nA cell is the mean ± sample standard deviation (n - 1) over the seeds. A difference between two cells is called **real** only when it exceeds their spread, |mean_a - mean_b| > std_a + std_b; otherwise it is \"within spread\" and not a result.\n";
    s += "\n## Main protocol\n\n";
    s += &table_md(&r.main);
    s += &full_history_md(&r.main);
    s += "\n### Differences\n";
    s += &differences_md(&r.main);
    s += &by_history_md(&r.main, p.n);
    s += "\n![AUC by history length](auc_by_history.png)\n";
    if let Some(h) = &r.hard_negatives {
        s += "\n## Hard negatives (negative from the positive's category)\n\n";
        s += &table_md(h);
        s += "\n### Differences\n";
        s += &differences_md(h);
        s += &by_history_md(h, p.n);
        s += "\n![AUC by history length, hard negatives](auc_by_history_hard.png)\n";
    }
    s
}

/// AUC by history bucket, one line per DIN strategy at the main N (and the
/// full-history reference), mean with ± std error bars; for a grid without
/// DIN, the lines of the first model it has at N. `title` names the
/// dataset and the protocol; the model is added to it.
fn plot(t: &Table, n: usize, title: &str, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let all = cells(&t.rows);
    let model = if all.iter().any(|c| c.model == "din") {
        "din"
    } else {
        all.iter().find(|c| c.n == n).map_or("din", |c| c.model)
    };
    let cs: Vec<Cell<'_>> = all
        .into_iter()
        .filter(|c| c.model == model && (c.n == n || c.section == Section::FullHistory))
        .collect();
    let title = title.replacen("{model}", &model.to_uppercase(), 1);
    let title = title.as_str();
    let Some(first) = cs.first() else {
        return Ok(());
    };
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .context("no DejaVuSans.ttf font found for the plot; install fonts-dejavu-core")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("cannot load the plot font"))?;
    let buckets = first.rows[0].eval.by_history.len();
    // (x offset, mean, std) per cell and bucket.
    let series: Vec<(String, Vec<ErrorPoint>)> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let offset = (i as f64 - (cs.len() as f64 - 1.0) / 2.0) * 0.06;
            let pts = (0..buckets)
                .filter_map(|j| {
                    let st = c.stat(|r| r.eval.by_history.get(j).and_then(|x| x.metrics.auc))?;
                    Some((j as f64 + offset, st.mean, st.std.unwrap_or(0.0)))
                })
                .collect();
            (strategy_label(c), pts)
        })
        .collect();
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, m, sd)| (m - sd, m + sd)))
        .fold((1.0f64, 0.0f64), |(l, h), (a, b)| (l.min(a), h.max(b)));
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            -0.5f64..(buckets as f64 - 0.5),
            (lo - 0.02).max(0.0)..(hi + 0.02).min(1.0),
        )?;
    let labels: Vec<String> = first.rows[0]
        .eval
        .by_history
        .iter()
        .map(|b| {
            if b.to == u32::MAX {
                format!("{}+", b.from)
            } else {
                format!("{}-{}", b.from, b.to - 1)
            }
        })
        .collect();
    chart
        .configure_mesh()
        .x_labels(buckets)
        .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
        .x_desc("history length before the target")
        .y_desc("AUC (mean ± std over seeds)")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (label, pts)) in series.into_iter().enumerate() {
        let c = colors[i % colors.len()];
        let line: Vec<(f64, f64)> = pts.iter().map(|&(x, m, _)| (x, m)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
        for (x, m, sd) in pts {
            if sd > 0.0 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x, m - sd), (x, m + sd)],
                    c.stroke_width(1),
                )))?;
                for y in [m - sd, m + sd] {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x - 0.02, y), (x + 0.02, y)],
                        c.stroke_width(1),
                    )))?;
                }
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn write(r: &mut Report, out: &Path, started: Instant) -> Result<()> {
    r.wall_seconds = started.elapsed().as_secs_f64();
    r.peak_rss_kib = peak_rss_kib();
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(out.join("report.md"), markdown(r))?;
    Ok(())
}

/// Resolves defaults, the config file and the flags into a plan and the
/// main grid's spec.
fn plan(a: &Args) -> Result<(Plan, GridSpec, ReportConfig)> {
    let file = match &a.config {
        Some(p) => ReportConfig::load(p)?,
        None => ReportConfig::default(),
    };
    file.check_model_names()?;
    let list_or = |flag: &Option<Vec<ModelKind>>,
                   file_list: &Option<Vec<String>>,
                   what: &str,
                   default: &[ModelKind]|
     -> Result<Vec<ModelKind>> {
        Ok(match (flag, file_list) {
            (Some(v), _) => v.clone(),
            (None, Some(v)) => parse_list(v, what)?,
            (None, None) => default.to_vec(),
        })
    };
    let defaults = GridSpec::default();
    let models = list_or(&a.models, &file.models, "models", &ModelKind::ALL)?;
    let strategies = match (&a.strategies, &file.strategies) {
        (Some(v), _) => v.clone(),
        (None, Some(v)) => parse_list(v, "strategies")?,
        (None, None) => defaults.strategies.clone(),
    };
    let small_n_models = list_or(
        &None,
        &file.small_n_models,
        "small_n_models",
        &[ModelKind::Din],
    )?;
    let full_history_models = list_or(
        &None,
        &file.full_history_models,
        "full_history_models",
        &[ModelKind::Din],
    )?;
    let hard_models = list_or(
        &None,
        &file.hard_negative_models,
        "hard_negative_models",
        &[ModelKind::Din],
    )?;
    let hard_best = list_or(
        &None,
        &file.hard_negative_best_models,
        "hard_negative_best_models",
        &[ModelKind::Atrank, ModelKind::Bst],
    )?;
    let seeds = a
        .seeds
        .clone()
        .or(file.seeds.clone())
        .unwrap_or(DEFAULT_SEEDS.to_vec());
    let stop_metric = match (a.stop_metric, &file.stop_metric) {
        (Some(m), _) => Some(m),
        (None, Some(s)) => Some(s.parse::<StopMetric>()?),
        (None, None) => None,
    };
    let mut model_configs = HashMap::new();
    for &kind in ModelKind::ALL.iter() {
        model_configs.insert(kind, file.model_config(kind)?);
    }
    let spec = GridSpec {
        strategies,
        models,
        n: a.n.or(file.n).unwrap_or(defaults.n),
        din_small_n: a
            .din_small_n
            .or(file.small_n)
            .unwrap_or(defaults.din_small_n),
        small_n_models,
        full_history_n: a
            .full_history_n
            .or(file.full_history_n)
            .unwrap_or(FULL_HISTORY_N),
        full_history_models,
        extra: Vec::new(),
        seeds,
        model_configs,
        epochs: a.max_epochs.or(file.max_epochs),
        patience: a.patience.or(file.patience),
        stop_metric,
        device: a.device,
        protocol: a.protocol.protocol(42)?,
        threads: 2,
    };
    if spec.n == 0 {
        bail!("n in the report config must be at least 1");
    }
    let (stop, patience) = spec.check()?;
    let names = |v: &[ModelKind]| v.iter().map(|m| m.as_str().to_owned()).collect();
    let plan = Plan {
        models: names(&spec.models),
        strategies: spec
            .strategies
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        n: spec.n,
        small_n: spec.din_small_n,
        small_n_models: names(&spec.small_n_models),
        full_history_n: spec.full_history_n,
        full_history_models: names(&spec.full_history_models),
        seeds: spec.seeds.clone(),
        max_epochs: spec.config(ModelKind::Din)?.epochs,
        patience,
        stop_metric: stop,
        hard_negatives: a.hard_negatives || file.hard_negatives.unwrap_or(false),
        hard_negative_models: names(&hard_models),
        hard_negative_best_models: names(&hard_best),
        model_configs: ModelKind::ALL
            .iter()
            .filter_map(|&k| spec.config(k).ok().map(|c| (k.as_str().to_owned(), c)))
            .collect(),
    };
    if plan.hard_negatives && a.protocol.protocol_version < 2 {
        bail!("the hard-negative table needs --protocol 2");
    }
    Ok((plan, spec, file))
}

/// The main table's best strategy: the highest mean AUC of DIN (or of the
/// first model when DIN is not in the grid) at the main N.
fn best_strategy(t: &Table, n: usize) -> Option<StrategyKind> {
    let cs = cells(&t.rows);
    let model = if cs.iter().any(|c| c.model == "din") {
        "din"
    } else {
        cs.first()?.model
    };
    cs.iter()
        .filter(|c| c.section == Section::Main && c.model == model && c.n == n)
        .filter_map(|c| Some((c.auc()?.mean, c.strategy)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .and_then(|(_, s)| s.parse().ok())
}

type Shared = std::sync::Arc<std::sync::Mutex<Option<ProgressDisplay>>>;

/// Runs one grid, appending each result to `table` (of `report`) and
/// writing the report after each.
fn run_grid(
    index: &BehaviorIndex,
    spec: GridSpec,
    a: &Args,
    report: &mut Report,
    hard: bool,
    started: Instant,
) -> Result<()> {
    let current: Shared = Default::default();
    let cur = current.clone();
    let mut grid = Grid::new(
        index,
        spec,
        Box::new(move |ev| {
            let mut cur = cur.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                GridEvent::Retrieving { .. } => {}
                GridEvent::Run {
                    run,
                    elapsed_secs,
                    position,
                    total,
                } => {
                    if let Some((bar, _)) = cur.take() {
                        bar.finish_and_clear();
                    }
                    eprintln!(
                        "== [{}/{total}] {run}{} ({elapsed_secs:.0} s elapsed)",
                        position + 1,
                        if hard { ", hard negatives" } else { "" }
                    );
                    let (bar, show) = progress_display(run.model, false);
                    *cur = Some((bar, Box::new(show)));
                }
                GridEvent::Train(p) => {
                    if let Some((_, show)) = cur.as_mut() {
                        show(p);
                    }
                }
            }
        }),
    )?;
    while let Some(result) = grid.run_next()? {
        if let Some((bar, _)) = current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        print_eval(&result.row.eval);
        if let Some(dir) = &a.models_dir {
            let r = result.run;
            result.model.save(dir.join(format!(
                "{}-{}{}-{}-{}-seed{}",
                a.dataset,
                if hard { "hard-" } else { "" },
                r.model,
                r.strategy,
                r.n,
                r.seed
            )))?;
        }
        let table = if hard {
            report
                .hard_negatives
                .as_mut()
                .expect("the hard table exists while its grid runs")
        } else {
            &mut report.main
        };
        table.samples = grid.samples().cloned();
        table.rows.push(result.row);
        write(report, &a.out, started)?;
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let started = Instant::now();
    a.device.resolve()?;
    set_torch_threads(a.torch_threads);
    // Every run's config, checked before the (long) index build and
    // retrieval.
    let (plan, spec, _) = plan(&a)?;
    let index_path = a
        .index
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("index/{}", a.dataset)));
    let index = open_or_build(&a.dataset, &index_path, &a.data)?;
    // Retrieval reads every sample's behaviors: decode them once.
    index.keep_rows_warm();
    let mut report = Report {
        dataset: a.dataset.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        commit: commit(),
        machine: hindsight_core::host::machine(),
        date: hindsight_core::host::utc_minutes(hindsight_core::host::now_unix()),
        wall_seconds: 0.0,
        peak_rss_kib: None,
        plan: plan.clone(),
        main: Table {
            protocol: spec.protocol.clone(),
            samples: None,
            rows: Vec::new(),
        },
        hard_negatives: None,
    };
    let n = spec.n;
    let base = spec.clone();
    run_grid(&index, spec, &a, &mut report, false, started)?;
    plot(
        &report.main,
        n,
        &format!(
            "{}: {{model}} test AUC by history length (N = {n})",
            a.dataset
        ),
        &a.out.join("auc_by_history.png"),
    )?;
    if plan.hard_negatives {
        let best = best_strategy(&report.main, n);
        let models: Vec<ModelKind> = parse_list(&plan.hard_negative_models, "models")?;
        let best_models: Vec<ModelKind> = parse_list(&plan.hard_negative_best_models, "models")?;
        let hard_spec = GridSpec {
            models: models.clone(),
            small_n_models: models,
            full_history_n: 0,
            extra: best
                .map(|s| best_models.iter().map(|&m| (s, m)).collect())
                .unwrap_or_default(),
            protocol: Protocol {
                negatives: Negatives::SameCategory,
                ..base.protocol.clone()
            },
            ..base
        };
        if let Some(s) = best {
            eprintln!(
                "hard negatives: {} with the best strategy of the main table, {s}",
                plan.hard_negative_best_models.join(", ")
            );
        }
        report.hard_negatives = Some(Table {
            protocol: hard_spec.protocol.clone(),
            samples: None,
            rows: Vec::new(),
        });
        run_grid(&index, hard_spec, &a, &mut report, true, started)?;
        if let Some(h) = &report.hard_negatives {
            plot(
                h,
                n,
                &format!(
                    "{}: {{model}} test AUC by history length, hard negatives (N = {n})",
                    a.dataset
                ),
                &a.out.join("auc_by_history_hard.png"),
            )?;
        }
    }
    write(&mut report, &a.out, started)?;
    println!(
        "wrote {}/report.md, report.json, auc_by_history.png{} in {:.0} s",
        a.out.display(),
        if report.hard_negatives.is_some() {
            ", auc_by_history_hard.png"
        } else {
            ""
        },
        report.wall_seconds
    );
    Ok(())
}

/// A run's progress bar and the display fed by the grid's events.
type ProgressDisplay = (
    indicatif::ProgressBar,
    Box<dyn FnMut(&hindsight_engine::TrainProgress<'_>) + Send>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let s = Stat::of(&[0.80, 0.82, 0.84]).unwrap();
        assert!((s.mean - 0.82).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).unwrap().std, None);
        assert!(Stat::of(&[]).is_none());
        assert_eq!(Stat::cell(Some(s)), "0.8200 ± 0.0200");
    }

    #[test]
    fn a_difference_is_real_only_beyond_the_spread() {
        let a = Stat::of(&[0.80, 0.82, 0.84]).unwrap(); // 0.82 ± 0.02
        let b = Stat::of(&[0.85, 0.86, 0.87]).unwrap(); // 0.86 ± 0.01
        assert_eq!(exceeds_spread(a, b), Some(true)); // 0.04 > 0.03
        let c = Stat::of(&[0.83, 0.84, 0.85]).unwrap(); // 0.84 ± 0.01
        assert_eq!(exceeds_spread(a, c), Some(false)); // 0.02 < 0.03
        assert_eq!(exceeds_spread(a, Stat::of(&[0.9]).unwrap()), None);
        assert!(verdict(b, a).contains("real"));
        assert!(verdict(c, a).contains("within spread"));
    }

    #[test]
    fn config_files_set_model_settings_and_refuse_typos() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("report.toml");
        std::fs::write(
            &toml_path,
            r#"
models = ["din", "dien"]
seeds = [4, 5]
max_epochs = 12
[all]
min_users = 1
[model.dien]
aux_loss_weight = 0.5
learning_rate = 0.002
"#,
        )
        .unwrap();
        let cfg = ReportConfig::load(&toml_path).unwrap();
        assert_eq!(cfg.seeds, Some(vec![4, 5]));
        let dien = cfg.model_config(ModelKind::Dien).unwrap();
        assert_eq!(
            (dien.aux_loss_weight, dien.learning_rate, dien.min_users),
            (0.5, 0.002, 1)
        );
        let din = cfg.model_config(ModelKind::Din).unwrap();
        assert_eq!((din.min_users, din.learning_rate), (1, 1e-3));

        let json_path = dir.path().join("report.json");
        std::fs::write(&json_path, r#"{"n": 30, "model": {"din": {"epochs": 3}}}"#).unwrap();
        let cfg = ReportConfig::load(&json_path).unwrap();
        assert_eq!(cfg.n, Some(30));
        assert_eq!(cfg.model_config(ModelKind::Din).unwrap().epochs, 3);

        for (text, want) in [
            ("modles = [\"din\"]", "not a report config"),
            ("[all]\nlearnign_rate = 0.1", "settings for"),
            ("[model.din]\nlearning_rate = 7.0", "settings for"),
            ("[model.zzz]\nepochs = 1", "model.zzz"),
        ] {
            std::fs::write(&toml_path, text).unwrap();
            let err = ReportConfig::load(&toml_path)
                .and_then(|c| {
                    c.check_model_names()?;
                    ModelKind::ALL
                        .iter()
                        .try_for_each(|&k| c.model_config(k).map(|_| ()))
                })
                .unwrap_err();
            assert!(format!("{err:#}").contains(want), "{text}: {err:#}");
        }
    }

    fn row(
        strategy: &str,
        n: usize,
        model: &str,
        seed: u64,
        auc: f64,
        section: Section,
    ) -> GridRow {
        let m = hindsight_engine::Metrics {
            samples: 10,
            auc: Some(auc),
            gauc: Some(auc),
            logloss: Some(0.5),
        };
        GridRow {
            strategy: strategy.into(),
            n,
            model: model.into(),
            seed,
            section,
            flops_per_sample: 1e6,
            mean_input_len: n as f64,
            mean_flops_per_sample: 1e4 * n as f64,
            eval: hindsight_engine::EvalReport {
                model: model.into(),
                strategy: strategy.into(),
                n,
                dataset: "d".into(),
                all: m.clone(),
                long_history: m.clone(),
                long_history_threshold: 200,
                new_item: Some(m.clone()),
                by_history: vec![hindsight_engine::Bucket {
                    from: 20,
                    to: 50,
                    metrics: m,
                }],
                inference_samples_per_sec: 100.0,
                device: "cpu".into(),
            },
            train_seconds: 1.0,
            train_samples_per_sec: 10.0,
            epochs: 3,
            best_epoch: 1,
            best_valid_auc: Some(auc),
            retrieval_seconds: 0.1,
        }
    }

    #[test]
    fn cells_pool_seeds_and_the_notes_compare_them() {
        let mut rows = Vec::new();
        for (seed, (r, u)) in [(0.80, 0.85), (0.81, 0.86), (0.82, 0.87)]
            .into_iter()
            .enumerate()
        {
            rows.push(row("recent", 50, "din", seed as u64, r, Section::Main));
            rows.push(row("ubr", 50, "din", seed as u64, u, Section::Main));
            rows.push(row(
                "recent",
                1000,
                "din",
                seed as u64,
                0.9,
                Section::FullHistory,
            ));
        }
        let t = Table {
            protocol: Protocol::default(),
            samples: None,
            rows,
        };
        let cs = cells(&t.rows);
        assert_eq!(cs.len(), 3);
        assert!(cs.iter().all(|c| c.rows.len() == 3));
        assert_eq!(best_strategy(&t, 50), Some(StrategyKind::Ubr));
        let md = table_md(&t);
        assert!(
            md.contains("| ubr | 50 | din | 3 | 0.8600 ± 0.0100 |"),
            "{md}"
        );
        assert!(md.contains("full (recent N=1000)"), "{md}");
        let diff = differences_md(&t);
        // 0.05 apart, spread 0.02: real.
        assert!(
            diff.contains("| ubr vs recent | 50 | din | +0.0500 (real)"),
            "{diff}"
        );
        let full = full_history_md(&t);
        // ubr keeps (0.86 - 0.5) / (0.9 - 0.5) = 90 % at 5 % of the compute.
        assert!(
            full.contains("| ubr | 50 | 0.8600 ± 0.0100 | -0.0400 (real) | 90.0 % | 50 | 5.0 % |"),
            "{full}"
        );
        let by = by_history_md(&t, 50);
        assert!(by.contains("| ubr | 50 | 0.8600 ± 0.0100 (n=10) |"), "{by}");
    }

    /// A grid without DIN (e.g. ATRank and BST only) still gets its plot,
    /// of its first model; an empty grid writes none.
    #[test]
    fn grids_without_din_are_plotted_too() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<GridRow> = (0..3)
            .flat_map(|seed| {
                [
                    row("ubr", 50, "bst", seed, 0.83, Section::Main),
                    row("ubr", 50, "atrank", seed, 0.75, Section::Main),
                ]
            })
            .collect();
        let t = Table {
            protocol: Protocol::default(),
            samples: None,
            rows,
        };
        let path = dir.path().join("auc_by_history.png");
        plot(&t, 50, "d: {model} test AUC by history length", &path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        let empty = Table {
            protocol: Protocol::default(),
            samples: None,
            rows: Vec::new(),
        };
        let none = dir.path().join("none.png");
        plot(&empty, 50, "d", &none).unwrap();
        assert!(!none.exists());
    }
}
