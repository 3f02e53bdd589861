//! `hindsight train --model sasrec`: a recall model (SASRec) trained on
//! the recall protocol's leave-last-out split of an index.

use std::str::FromStr;

use anyhow::{Context, Result};
use hindsight_index::BehaviorIndex;
use hindsight_model::{
    ModelKind, NegativeSampling, RecallLoss, RecallProgress, RecallStopMetric, SasRecConfig,
    TrainedRecall,
};
use hindsight_recall::RecallSplit;
use hindsight_samples::Negatives;

use super::train::{set_torch_threads, TrainArgs};
use super::NegativesArg;

/// What `train --model` names: a CTR model or the recall model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainModel {
    /// A CTR model (sum_pool, din, dien, ...).
    Ctr(ModelKind),
    /// SASRec, a recall model.
    SasRec,
}

impl FromStr for TrainModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("sasrec") {
            return Ok(TrainModel::SasRec);
        }
        ModelKind::from_str(s)
            .map(TrainModel::Ctr)
            .map_err(|e| format!("{e} (or sasrec, the recall model)"))
    }
}

/// The options of `train --model sasrec` (ignored by the CTR models);
/// unset ones take [`SasRecConfig`]'s defaults (or those of `--config`).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Recall model (--model sasrec)")]
pub struct RecallArgs {
    /// sasrec: the loss, sampled-softmax (K+1 cross-entropy, K = --negatives,
    /// default 128), full-softmax or bce (one negative per position).
    #[arg(long)]
    pub loss: Option<String>,
    /// sasrec: how sampled negatives are drawn, uniform (default) or
    /// popularity (with the log-Q correction).
    #[arg(long)]
    pub sampling: Option<NegativeSampling>,
    /// sasrec: the window, at most this many most recent behaviors (default 50).
    #[arg(long, value_parser = super::at_least_one)]
    pub max_len: Option<usize>,
    /// sasrec: dimension of embeddings, user and item vectors (default 64).
    #[arg(long)]
    pub dim: Option<i64>,
    /// sasrec: transformer blocks (default 2).
    #[arg(long)]
    pub blocks: Option<usize>,
    /// sasrec: attention heads, dividing --dim (default 1).
    #[arg(long)]
    pub heads: Option<i64>,
    /// sasrec: dropout rate (default 0.2).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// sasrec: Adam learning rate (default 0.001).
    #[arg(long)]
    pub lr: Option<f64>,
    /// sasrec: users per batch (default 128).
    #[arg(long, value_parser = super::at_least_one)]
    pub batch_size: Option<usize>,
    /// sasrec: what early stopping maximises, ndcg@10 (default) or hr@10.
    #[arg(long)]
    pub stop_on: Option<RecallStopMetric>,
    /// sasrec: validation users ranked after each epoch (default 0: all).
    #[arg(long)]
    pub valid_users: Option<usize>,
    /// sasrec: users with fewer behaviors are left out of the split (at
    /// least 3: train, valid, test).
    #[arg(long, default_value_t = RecallSplit::MIN_BEHAVIORS)]
    pub min_behaviors: usize,
}

/// The SASRec config of a run: `--config` (a SasRecConfig JSON) or the
/// defaults, then the flags.
fn recall_config(a: &TrainArgs) -> Result<SasRecConfig> {
    let mut cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a SASRec config", p.display()))?
        }
        None => SasRecConfig::default(),
    };
    let r = &a.recall;
    let negatives = match a.protocol.negatives {
        NegativesArg::Count(k) => Some(k),
        NegativesArg::Sampler(Negatives::Popularity) => None,
        NegativesArg::Sampler(other) => anyhow::bail!(
            "--negatives {} is a CTR sampler; SASRec takes a count (--negatives 128) and \
             --sampling uniform|popularity",
            other.as_str()
        ),
    };
    if let Some(loss) = &r.loss {
        let k = match cfg.loss {
            RecallLoss::SampledSoftmax { negatives } => negatives,
            _ => RecallLoss::default_negatives(),
        };
        cfg.loss = RecallLoss::parse(loss, negatives.unwrap_or(k))?;
    } else if let (Some(k), RecallLoss::SampledSoftmax { .. }) = (negatives, cfg.loss) {
        cfg.loss = RecallLoss::SampledSoftmax { negatives: k };
    }
    if negatives.is_some() && !matches!(cfg.loss, RecallLoss::SampledSoftmax { .. }) {
        anyhow::bail!(
            "--negatives is the K of --loss sampled-softmax; --loss {} takes none",
            cfg.loss.name()
        );
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = r.$field { cfg.$field = v; } )* };
    }
    set!(
        sampling,
        max_len,
        dim,
        blocks,
        heads,
        dropout,
        lr,
        batch_size,
        valid_users
    );
    // --patience is shared with the CTR models (sasrec default: 10; 0
    // never stops early).
    if let Some(p) = a.patience {
        cfg.patience = p;
    }
    if let Some(m) = r.stop_on {
        cfg.stop_metric = m;
    }
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    cfg.seed = a.seed;
    cfg.validate()?;
    Ok(cfg)
}

/// `hindsight train --model sasrec`.
pub fn run(a: TrainArgs) -> Result<()> {
    let cfg = recall_config(&a)?;
    let device = a.device.resolve()?;
    set_torch_threads(a.torch_threads);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let split = RecallSplit::leave_last_out(&index.snapshot(), a.recall.min_behaviors)?;
    let quiet = a.json;
    if !quiet {
        eprintln!(
            "recall split of {}: {} users ({} with fewer than {} behaviors left out), {} training behaviors, catalog {} items; {} loss, dim {}, {} blocks, {} heads, max_len {}, seed {}, {}",
            a.index.display(),
            split.users.len(),
            split.skipped_users,
            a.recall.min_behaviors.max(RecallSplit::MIN_BEHAVIORS),
            split.train_len(),
            split.catalog.len(),
            cfg.loss,
            cfg.dim,
            cfg.blocks,
            cfg.heads,
            cfg.max_len,
            cfg.seed,
            hindsight_model::device_name(device),
        );
    }
    let progress = |p: &RecallProgress| {
        if let RecallProgress::Epoch(e) = p {
            if !quiet {
                eprintln!(
                    "epoch {}: train loss {:.4}, valid HR@10 {:.4}, NDCG@10 {:.4}, {:.0} samples/s, {:.1} s{}",
                    e.epoch,
                    e.train_loss,
                    e.valid_hr10,
                    e.valid_ndcg10,
                    e.samples_per_sec,
                    e.seconds,
                    if e.improved { " (best)" } else { "" }
                );
            }
        }
    };
    let (model, report) = TrainedRecall::train(&split, &cfg, device, progress)?;
    model
        .save(&a.out)
        .with_context(|| format!("saving the model to {}", a.out.display()))?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["weights_sha256"] = serde_json::json!(model.weights_sha256());
        v["config"] = serde_json::to_value(model.config())?;
        return super::print_json(&v);
    }
    println!(
        "trained sasrec on {} in {:.1} s on {}: best epoch {} of {} with valid HR@10 {:.4}, NDCG@10 {:.4} \
         (full ranking over {} items, {} users); {:.0} training samples/s (positions); saved to {}",
        a.index.display(),
        report.seconds,
        report.device,
        report.best_epoch,
        report.epochs.len(),
        report.best_valid_hr10,
        report.best_valid_ndcg10,
        report.catalog_items,
        report.valid_users,
        report.samples_per_sec,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_names() {
        assert_eq!("sasrec".parse::<TrainModel>(), Ok(TrainModel::SasRec));
        assert_eq!("SASRec".parse::<TrainModel>(), Ok(TrainModel::SasRec));
        assert_eq!(
            "din".parse::<TrainModel>(),
            Ok(TrainModel::Ctr(ModelKind::Din))
        );
        let err = "gru4rec".parse::<TrainModel>().unwrap_err();
        assert!(err.contains("sasrec"), "{err}");
    }
}
