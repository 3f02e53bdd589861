//! `hindsight report`: the strategy x model grid of EVAL.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hindsight_engine::{EvalReport, Prepared};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions};
use hindsight_logs::DatasetMapping;
use hindsight_model::{Device, ModelKind, StopMetric};
use hindsight_retrieval::StrategyKind;
use hindsight_samples::Protocol;
use serde::Serialize;

use super::train::{model_config, set_torch_threads, train_with_progress};

/// Train and evaluate every (strategy, model) pair on a dataset and write
/// the report: report.md (tables), report.json, auc_by_history.png.
///
/// The grid: strategies recent, sim-hard, ubr, hybrid x models sum_pool,
/// din, dien at N = 50, plus DIN at N = 20. The index is built from the
/// bundled data when absent. Results are written after every run, so an
/// interrupted report keeps what it finished.
#[derive(clap::Args)]
pub struct Args {
    /// Dataset: taobao or movielens.
    #[arg(long)]
    pub dataset: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Index folder (default index/<dataset>; built if absent).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Data folder holding taobao/ and movielens-small/.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Models (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "sum_pool,din,dien")]
    pub models: Vec<String>,
    /// Strategies (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "recent,sim-hard,ubr,hybrid"
    )]
    pub strategies: Vec<String>,
    /// Budget N of the main grid.
    #[arg(short = 'n', long = "n", default_value_t = 50)]
    pub n: usize,
    /// Also run DIN at this smaller N for every strategy (0: skip).
    #[arg(long, default_value_t = 20)]
    pub din_small_n: usize,
    /// Maximum epochs per model (default: the model config's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// What early stopping maximises: auc-minus-logloss (default) or auc.
    #[arg(long)]
    pub stop_metric: Option<String>,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads of libtorch. Default 1: on a small shared machine, more
    /// threads than free cores make libtorch's spinning workers collapse
    /// (an epoch took 20x longer with 2 threads beside other jobs).
    #[arg(long)]
    pub torch_threads: Option<i32>,
    /// Where trained models are kept (folder per run); none if not given.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    strategy: String,
    n: usize,
    model: String,
    eval: EvalReport,
    train_seconds: f64,
    train_samples_per_sec: f64,
    epochs: usize,
    best_epoch: usize,
    best_valid_auc: Option<f64>,
    retrieval_seconds: f64,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    command: String,
    machine: String,
    date: String,
    /// Early stopping: what it maximises and its patience, as run.
    stop_metric: StopMetric,
    patience: usize,
    samples: Option<hindsight_samples::SampleCounts>,
    rows: Vec<Row>,
}

impl Report {
    /// The DIN rows at the grid's main N (the N of the first row): what the
    /// by-history table and the plot are drawn from.
    fn main_din_rows(&self) -> Vec<&Row> {
        let Some(first) = self.rows.first() else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|x| x.model == "din" && x.n == first.n)
            .collect()
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn open_or_build(dataset: &str, index: &Path, data: &Path) -> Result<BehaviorIndex> {
    if index.join("hindsight.json").exists() {
        return Ok(BehaviorIndex::open(index)?);
    }
    let (preset, input) = match dataset {
        "taobao" => ("taobao", data.join("taobao/UserBehavior.csv")),
        "movielens" => ("movielens", data.join("movielens-small")),
        other => bail!("unknown dataset {other:?}; use taobao or movielens"),
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

fn f(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

fn markdown(r: &Report) -> String {
    let mut s = format!("# Evaluation report: {}\n\n", r.dataset);
    s += &format!(
        "- command: `{}`\n- machine: {}\n- date: {}\n",
        r.command, r.machine, r.date
    );
    let metric = match r.stop_metric {
        StopMetric::Auc => "validation AUC",
        StopMetric::AucMinusLogloss => "validation AUC minus logloss",
    };
    s += &format!(
        "- early stopping: best epoch by {metric}, patience {}\n",
        r.patience
    );
    if let Some(c) = &r.samples {
        s += &format!(
            "- samples (EVAL.md v1): {} positives; train {}, valid {}, test {} (with negatives)\n",
            c.positives, c.train, c.valid, c.test
        );
    }
    if let Some(row) = r.rows.first() {
        s += &format!(
            "- test samples {}; long-history slice (history > {}): {} samples\n",
            row.eval.all.samples, row.eval.long_history_threshold, row.eval.long_history.samples
        );
    }
    s += "\n| strategy | N | model | AUC | gAUC | logloss | long AUC | long gAUC | long logloss | epochs (best) | train s | train samples/s | infer samples/s | device |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for row in &r.rows {
        let e = &row.eval;
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.0} | {:.0} | {:.0} | {} |\n",
            row.strategy,
            row.n,
            row.model,
            f(e.all.auc),
            f(e.all.gauc),
            f(e.all.logloss),
            f(e.long_history.auc),
            f(e.long_history.gauc),
            f(e.long_history.logloss),
            row.epochs,
            row.best_epoch,
            row.train_seconds,
            row.train_samples_per_sec,
            e.inference_samples_per_sec,
            e.device
        );
    }
    let din = r.main_din_rows();
    if let Some(first) = din.first() {
        s += "\nAUC by history length (test samples, DIN at the main N):\n\n| strategy |";
        for b in &first.eval.by_history {
            s += &format!(
                " [{}, {}) |",
                b.from,
                if b.to == u32::MAX {
                    "inf".into()
                } else {
                    b.to.to_string()
                }
            );
        }
        s += "\n|---|";
        for _ in &first.eval.by_history {
            s += "---|";
        }
        s += "\n";
        for row in &din {
            s += &format!("| {} |", row.strategy);
            for b in &row.eval.by_history {
                s += &format!(" {} (n={}) |", f(b.metrics.auc), b.metrics.samples);
            }
            s += "\n";
        }
        s += "\n![AUC by history length](auc_by_history.png)\n";
    }
    s
}

fn plot(r: &Report, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let din = r.main_din_rows();
    let Some(first) = din.first() else {
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
    let buckets = first.eval.by_history.len();
    let (lo, hi) = din
        .iter()
        .flat_map(|row| row.eval.by_history.iter().filter_map(|b| b.metrics.auc))
        .fold((1.0f64, 0.0f64), |(l, h), a| (l.min(a), h.max(a)));
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: DIN test AUC by history length (N = {})",
                r.dataset, first.n
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            -0.5f64..(buckets as f64 - 0.5),
            (lo - 0.02).max(0.0)..(hi + 0.02).min(1.0),
        )?;
    let labels: Vec<String> = first
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
        .y_desc("AUC")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, row) in din.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<(f64, f64)> = row
            .eval
            .by_history
            .iter()
            .enumerate()
            .filter_map(|(j, b)| b.metrics.auc.map(|a| (j as f64, a)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(row.strategy.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn write(r: &Report, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(out.join("report.md"), markdown(r))?;
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let device: Device = a.device.parse()?;
    device.resolve()?;
    set_torch_threads(a.torch_threads);
    let strategies: Vec<StrategyKind> = a
        .strategies
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let models: Vec<ModelKind> = a
        .models
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    // Every run's config, checked before the (long) index build and
    // retrieval.
    let mut stop = None;
    for kind in &models {
        let cfg = model_config(kind.as_str(), None, a.epochs, a.stop_metric.as_deref())?;
        stop = Some((cfg.stop_metric, cfg.patience));
    }
    let (stop_metric, patience) = stop.context("--models is empty")?;
    let index_path = a
        .index
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("index/{}", a.dataset)));
    let index = open_or_build(&a.dataset, &index_path, &a.data)?;
    let mut report = Report {
        dataset: a.dataset.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        date: date(),
        stop_metric,
        patience,
        samples: None,
        rows: Vec::new(),
    };
    let mut runs: Vec<(StrategyKind, usize, Vec<ModelKind>)> = strategies
        .iter()
        .map(|&s| (s, a.n, models.clone()))
        .collect();
    if a.din_small_n > 0 && a.din_small_n != a.n {
        runs.extend(
            strategies
                .iter()
                .map(|&s| (s, a.din_small_n, vec![ModelKind::Din])),
        );
    }
    let started = Instant::now();
    for (strategy, n, models) in runs {
        let prepared = Prepared::new(&index, strategy, n, Protocol::default(), 2)?;
        report
            .samples
            .get_or_insert_with(|| prepared.counts.clone());
        for kind in models {
            eprintln!(
                "== {} / {} N={} ({:.0} s elapsed)",
                kind,
                strategy,
                n,
                started.elapsed().as_secs_f64()
            );
            let cfg = model_config(kind.as_str(), None, a.epochs, a.stop_metric.as_deref())?;
            let (model, tr) = train_with_progress(&prepared, &cfg, device, false)?;
            let eval = prepared.evaluate(&model)?;
            super::train::print_eval(&eval);
            if let Some(dir) = &a.models_dir {
                model.save(dir.join(format!("{}-{}-{}-{}", a.dataset, kind, strategy, n)))?;
            }
            let trained: f64 = tr.epochs.iter().map(|e| e.seconds).sum();
            let seen = tr.train_examples as f64 * tr.epochs.len() as f64;
            report.rows.push(Row {
                strategy: strategy.as_str().to_owned(),
                n,
                model: kind.as_str().to_owned(),
                eval,
                train_seconds: tr.seconds,
                train_samples_per_sec: seen / trained.max(1e-9),
                epochs: tr.epochs.len(),
                best_epoch: tr.best_epoch,
                best_valid_auc: tr.best_valid_auc,
                retrieval_seconds: prepared.retrieval_secs,
            });
            write(&report, &a.out)?;
        }
    }
    plot(&report, &a.out.join("auc_by_history.png"))?;
    write(&report, &a.out)?;
    let has_plot = !report.main_din_rows().is_empty();
    println!(
        "wrote {}/report.md, report.json{}",
        a.out.display(),
        if has_plot { ", auc_by_history.png" } else { "" }
    );
    Ok(())
}
