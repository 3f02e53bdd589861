//! `hindsight train` and `hindsight eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hindsight_engine::{EvalReport, Prepared, RetrievalSettings, TrainProgress};
use hindsight_index::BehaviorIndex;
use hindsight_model::{Device, ModelConfig, ModelKind, StopMetric, TrainedModel};
use indicatif::{ProgressBar, ProgressStyle};

/// Train a CTR model on the evaluation-protocol samples of an index.
///
/// Samples (docs/evaluation-protocol.md) are built from the index and each one's history is
/// retrieved as of its target with the strategy and N given; the model
/// trains on the train split with early stopping (on validation AUC minus
/// logloss by default: `stop_metric` in the model config) and is saved
/// with its config, vocabularies and retrieval settings.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Model: sum_pool, din, dien, atrank, bst (CTR), or sasrec (recall: see the options below).
    #[arg(long, default_value = "din")]
    pub model: super::train_recall::TrainModel,
    #[command(flatten)]
    pub retrieval: super::RetrievalArgs,
    /// Output model folder (config.json + weights.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// auto (CUDA when present), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// A model config JSON (hindsight_model::ModelConfig); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Maximum epochs (default: the config's, 20; early stopping usually
    /// ends training before).
    #[arg(long, visible_alias = "max-epochs")]
    pub epochs: Option<usize>,
    /// Early stopping: epochs without a better validation figure before
    /// stopping (default: the config's, 2 for the CTR models, 10 for
    /// sasrec, where 0 never stops early).
    #[arg(long)]
    pub patience: Option<usize>,
    /// What early stopping maximises: auc-minus-logloss (default) or auc.
    #[arg(long)]
    pub stop_metric: Option<StopMetric>,
    /// Seed of training: model initialisation and batch order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seed of the negative sampler; the protocol fixes it at 42, so that
    /// runs with different --seed train on the same samples.
    #[arg(long, default_value_t = 42)]
    pub sample_seed: u64,
    #[command(flatten)]
    pub protocol: super::ProtocolArgs,
    /// CPU threads of libtorch. Default 1: on a small shared machine, more
    /// threads than free cores make libtorch's spinning workers collapse
    /// (an epoch took 20x longer with 2 threads beside other jobs).
    #[arg(long)]
    pub torch_threads: Option<i32>,
    /// For sim-soft, eta, sdim: the checkpoint whose item embeddings the
    /// retrieval uses (the first phase of two-phase training); they must be
    /// the ones attached to the index (`hindsight embeddings attach`), and
    /// the trained model records them, so serving refuses other embeddings.
    #[arg(long)]
    pub retrieval_model: Option<PathBuf>,
    /// Print one JSON object (training report) on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub recall: super::train_recall::RecallArgs,
}

/// Loads or builds the model config of a run.
pub fn model_config(
    kind: ModelKind,
    config: Option<&Path>,
    epochs: Option<usize>,
    stop_metric: Option<StopMetric>,
) -> Result<ModelConfig> {
    let mut cfg = match config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a model config", p.display()))?
        }
        None => ModelConfig::new(kind),
    };
    cfg.kind = kind;
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    if let Some(m) = stop_metric {
        cfg.stop_metric = m;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Sets libtorch's CPU thread count (default 1).
pub fn set_torch_threads(n: Option<i32>) {
    hindsight_model::set_cpu_threads(n.unwrap_or(1));
}

/// A training progress display on stderr: a bar on a terminal; without
/// one, or when `quiet` (`--json`), a line every tenth of an epoch and
/// every epoch instead.
pub fn progress_display(
    kind: ModelKind,
    quiet: bool,
) -> (ProgressBar, impl FnMut(&TrainProgress<'_>) + Send + 'static) {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{kind} e1"));
    let b = bar.clone();
    // Without a terminal (a job logging to a file, or --json) the bar is
    // hidden: print a line every tenth of an epoch and every epoch instead.
    let plain = b.is_hidden();
    let show = move |ev: &TrainProgress<'_>| match *ev {
        TrainProgress::Batch {
            epoch,
            batch,
            batches,
            loss,
            epoch_secs,
            samples_per_sec,
        } => {
            if batch == 0 {
                b.set_length(batches as u64);
                b.set_prefix(format!("epoch {epoch}"));
            }
            b.set_position(batch as u64 + 1);
            if batch % 20 == 0 {
                b.set_message(format!("loss {loss:.4}, {samples_per_sec:.0} samples/s"));
            }
            let tenth = (batches / 10).max(1);
            if plain && (batch + 1) % tenth == 0 && batch + 1 < batches {
                eprintln!(
                    "epoch {epoch}: {}/{batches} batches, loss {loss:.4}, {samples_per_sec:.0} samples/s, {epoch_secs:.0} s",
                    batch + 1,
                );
            }
        }
        TrainProgress::Epoch(e) => {
            let line = format!(
                "epoch {}: train loss {:.4}{}, valid AUC {}, valid logloss {:.4}, {:.0} samples/s, {:.1} s{}",
                e.epoch,
                e.train_loss,
                e.aux_loss.map_or(String::new(), |a| format!(" (aux {a:.4})")),
                e.valid_auc.map_or("-".into(), |a| format!("{a:.4}")),
                e.valid_logloss,
                e.samples_per_sec,
                e.seconds,
                if e.improved { " (best)" } else { "" }
            );
            if plain {
                eprintln!("{line}");
            } else {
                b.println(line);
            }
        }
    };
    (bar, show)
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    let (strategy, n, device) = (a.retrieval.strategy, a.retrieval.n, a.device);
    let kind = match a.model {
        super::train_recall::TrainModel::Ctr(kind) => kind,
        super::train_recall::TrainModel::SasRec => return super::train_recall::run(a),
    };
    let mut cfg = model_config(kind, a.config.as_deref(), a.epochs, a.stop_metric)?;
    cfg.seed = a.seed;
    if let Some(p) = a.patience {
        cfg.patience = p;
    }
    device.resolve()?;
    set_torch_threads(a.torch_threads);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    // Retrieval reads every sample's behaviors: decode them once.
    index.keep_rows_warm();
    let protocol = a.protocol.protocol(a.sample_seed)?;
    let retrieval_sha = match &a.retrieval_model {
        Some(m) if !strategy.needs_embeddings() => anyhow::bail!(
            "--retrieval-model {} is for the strategies that rank by item embeddings (sim-soft, eta, sdim), not {strategy}",
            m.display()
        ),
        Some(m) => Some(
            super::embeddings::checkpoint_sha(m)
                .with_context(|| format!("reading the retrieval model {}", m.display()))?,
        ),
        None => None,
    };
    let prepared = Prepared::new(&index, strategy, n, protocol, 2)?;
    if let (Some(sha), Some(m)) = (&retrieval_sha, &a.retrieval_model) {
        prepared.check_retrieval_model(sha, &m.display().to_string())?;
    }
    if !a.json {
        eprintln!(
            "{} samples (train {}, valid {}, test {}); {} N={} retrieval in {:.1} s",
            prepared.samples.len(),
            prepared.counts.train,
            prepared.counts.valid,
            prepared.counts.test,
            strategy,
            n,
            prepared.retrieval_secs
        );
    }
    let (bar, progress) = progress_display(cfg.kind, a.json);
    let trained = prepared.train_with_progress(&cfg, device, progress);
    bar.finish_and_clear();
    let (model, report) = trained?;
    model
        .save(&a.out)
        .with_context(|| format!("saving the model to {}", a.out.display()))?;
    if a.json {
        return super::print_json(&report);
    }
    println!(
        "trained {} on {} ({} N={}) in {:.1} s on {}: best epoch {} with valid AUC {}; saved to {}",
        cfg.kind,
        a.index.display(),
        strategy,
        n,
        report.seconds,
        report.device,
        report.best_epoch,
        report
            .best_valid_auc
            .map_or("-".into(), |a| format!("{a:.4}")),
        a.out.display()
    );
    Ok(())
}

/// Evaluate a trained model on the test split of an index.
///
/// The samples are rebuilt from the index with the model's own retrieval
/// settings (strategy, N, protocol); a model trained on another dataset is
/// refused.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Model folder written by `hindsight train`.
    #[arg(long)]
    pub model: PathBuf,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// CPU threads of libtorch. Default 1: on a small shared machine, more
    /// threads than free cores make libtorch's spinning workers collapse
    /// (an epoch took 20x longer with 2 threads beside other jobs).
    #[arg(long)]
    pub torch_threads: Option<i32>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.4}"))
}

/// Prints an evaluation report as text.
pub fn print_eval(r: &EvalReport) {
    println!(
        "{} / {} N={} on {} ({}):",
        r.model, r.strategy, r.n, r.dataset, r.device
    );
    println!(
        "  all:     {:>6} samples  AUC {}  gAUC {}  logloss {}",
        r.all.samples,
        fmt(r.all.auc),
        fmt(r.all.gauc),
        fmt(r.all.logloss)
    );
    println!(
        "  history > {}: {:>6} samples  AUC {}  gAUC {}  logloss {}",
        r.long_history_threshold,
        r.long_history.samples,
        fmt(r.long_history.auc),
        fmt(r.long_history.gauc),
        fmt(r.long_history.logloss)
    );
    if let Some(m) = &r.new_item {
        println!(
            "  new item:  {:>6} samples  AUC {}  gAUC {}  logloss {}",
            m.samples,
            fmt(m.auc),
            fmt(m.gauc),
            fmt(m.logloss)
        );
    }
    println!("  inference {:.0} samples/s", r.inference_samples_per_sec);
}

pub fn run_eval(a: EvalArgs) -> Result<()> {
    set_torch_threads(a.torch_threads);
    let model = TrainedModel::load(&a.model, a.device)?;
    let settings = RetrievalSettings::of(&model)?;
    let index = BehaviorIndex::open_read_only(&a.index)?;
    // Retrieval reads every sample's behaviors: decode them once.
    index.keep_rows_warm();
    settings.check_index(&index)?;
    let prepared = Prepared::new(
        &index,
        settings.strategy,
        settings.n,
        settings.protocol.clone(),
        2,
    )?;
    let report = prepared.evaluate(&model)?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        // Flat keys as well, for scripts.
        v["auc"] = serde_json::json!(report.all.auc);
        v["gauc"] = serde_json::json!(report.all.gauc);
        v["logloss"] = serde_json::json!(report.all.logloss);
        v["long_auc"] = serde_json::json!(report.long_history.auc);
        v["long_gauc"] = serde_json::json!(report.long_history.gauc);
        v["long_logloss"] = serde_json::json!(report.long_history.logloss);
        v["test_samples"] = serde_json::json!(report.all.samples);
        v["long_samples"] = serde_json::json!(report.long_history.samples);
        if let Some(m) = &report.new_item {
            v["new_item_auc"] = serde_json::json!(m.auc);
            v["new_item_samples"] = serde_json::json!(m.samples);
        }
        return super::print_json(&v);
    }
    print_eval(&report);
    Ok(())
}
