//! `hindsight report`: formats the evaluation grid that
//! [`hindsight_engine::grid`] runs (report.md, report.json, the AUC by
//! history plot).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hindsight_engine::grid::{Grid, GridEvent, GridRow, GridSpec};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions};
use hindsight_logs::DatasetMapping;
use hindsight_model::{Device, ModelKind, StopMetric};
use hindsight_retrieval::StrategyKind;
use hindsight_samples::Protocol;
use serde::Serialize;

use super::train::{print_eval, progress_display, set_torch_threads};

/// Train and evaluate every (strategy, model) pair on a dataset and write
/// the report: report.md (tables), report.json, auc_by_history.png.
///
/// The grid: strategies recent, sim-hard, ubr, hybrid x models sum_pool,
/// din, dien at N = 50, plus DIN at N = 20. Results are written after every
/// run, so an interrupted report keeps what it finished.
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
    /// Models (comma-separated): sum_pool, din, dien.
    #[arg(long, value_delimiter = ',', default_value = "sum_pool,din,dien")]
    pub models: Vec<ModelKind>,
    /// Strategies (comma-separated): recent, sim-hard, ubr, hybrid.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "recent,sim-hard,ubr,hybrid"
    )]
    pub strategies: Vec<StrategyKind>,
    /// Budget N of the main grid.
    #[arg(short = 'n', long = "n", default_value_t = 50, value_parser = super::at_least_one)]
    pub n: usize,
    /// Also run DIN at this smaller N for every strategy (0: skip).
    #[arg(long, default_value_t = 20)]
    pub din_small_n: usize,
    /// Maximum epochs per model (default: the model config's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// What early stopping maximises: auc-minus-logloss (default) or auc.
    #[arg(long)]
    pub stop_metric: Option<StopMetric>,
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

#[derive(Serialize)]
struct Report {
    dataset: String,
    command: String,
    machine: String,
    date: String,
    /// Early stopping: what it maximises and its patience, as run.
    stop_metric: StopMetric,
    patience: usize,
    /// The sampling protocol the grid ran under.
    protocol: Protocol,
    samples: Option<hindsight_samples::SampleCounts>,
    rows: Vec<GridRow>,
}

impl Report {
    /// The DIN rows at the grid's main N (the N of the first row): what the
    /// by-history table and the plot are drawn from.
    fn main_din_rows(&self) -> Vec<&GridRow> {
        let Some(first) = self.rows.first() else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|x| x.model == "din" && x.n == first.n)
            .collect()
    }
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
            "- samples (docs/evaluation-protocol.md v{}, {} negatives): {} positives ({} with an item new to the user); train {}, valid {}, test {} (with negatives)\n",
            r.protocol.version,
            r.protocol.negatives.as_str(),
            c.positives,
            c.new_item_positives,
            c.train,
            c.valid,
            c.test
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
    a.device.resolve()?;
    set_torch_threads(a.torch_threads);
    let spec = GridSpec {
        strategies: a.strategies.clone(),
        models: a.models.clone(),
        n: a.n,
        din_small_n: a.din_small_n,
        epochs: a.epochs,
        stop_metric: a.stop_metric,
        device: a.device,
        protocol: a.protocol.protocol(42)?,
        threads: 2,
    };
    // Every run's config, checked before the (long) index build and
    // retrieval.
    let (stop_metric, patience) = spec.check()?;
    let index_path = a
        .index
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("index/{}", a.dataset)));
    let index = open_or_build(&a.dataset, &index_path, &a.data)?;
    let mut report = Report {
        dataset: a.dataset.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: hindsight_core::host::machine(),
        date: hindsight_core::host::utc_minutes(hindsight_core::host::now_unix()),
        stop_metric,
        patience,
        protocol: spec.protocol.clone(),
        samples: None,
        rows: Vec::new(),
    };
    // One progress bar per run, handed to the grid's callback.
    let current: std::sync::Arc<std::sync::Mutex<Option<ProgressDisplay>>> = Default::default();
    let cur = current.clone();
    let mut grid = Grid::new(
        &index,
        spec,
        Box::new(move |ev| {
            let mut cur = cur.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                GridEvent::Retrieving { .. } => {}
                GridEvent::Run {
                    run, elapsed_secs, ..
                } => {
                    if let Some((bar, _)) = cur.take() {
                        bar.finish_and_clear();
                    }
                    eprintln!("== {run} ({elapsed_secs:.0} s elapsed)");
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
            result
                .model
                .save(dir.join(format!("{}-{}-{}-{}", a.dataset, r.model, r.strategy, r.n)))?;
        }
        report.samples = grid.samples().cloned();
        report.rows.push(result.row);
        write(&report, &a.out)?;
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

/// A run's progress bar and the display fed by the grid's events.
type ProgressDisplay = (
    indicatif::ProgressBar,
    Box<dyn FnMut(&hindsight_engine::TrainProgress<'_>) + Send>,
);
