//! Training: Adam, seeded shuffling, validation AUC and logloss each
//! epoch, early stopping that keeps the best weights.

use std::collections::HashMap;
use std::time::Instant;

use hindsight_core::metrics::{auc, logloss};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Reduction, Tensor};

use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::device::{device_name, Device};
use crate::error::{ModelError, Result};
use crate::example::Example;
use crate::trained::{Net, TrainedModel};
use crate::vocab::FeatureVocab;

/// A progress event of [`train`].
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// A training batch is done.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// The batch's loss (click loss plus weighted auxiliary loss).
        loss: f64,
    },
    /// An epoch, validation included, is done.
    Epoch(EpochReport),
}

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(&TrainEvent) + Send>;

/// Run options of [`train`] (the hyper-parameters are in [`ModelConfig`]).
pub struct TrainOptions {
    /// Where to train.
    pub device: Device,
    /// History length N: at most this many behaviors per example.
    pub n: usize,
    /// Overrides `ModelConfig::seed` when set (the checkpoint records the
    /// seed used).
    pub seed: Option<u64>,
    /// Called after every batch and every epoch.
    pub progress: Option<ProgressFn>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            device: Device::Auto,
            n: 50,
            seed: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for TrainOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainOptions")
            .field("device", &self.device)
            .field("n", &self.n)
            .field("seed", &self.seed)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Figures of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss (click loss plus weighted auxiliary loss).
    pub train_loss: f64,
    /// Mean auxiliary loss (DIEN), unweighted.
    pub aux_loss: Option<f64>,
    /// Validation AUC; `None` when the validation labels are all equal.
    pub valid_auc: Option<f64>,
    /// Validation logloss.
    pub valid_logloss: f64,
    /// Training examples per second (training only, validation excluded).
    pub samples_per_sec: f64,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Whether this epoch is the best so far (its weights are kept).
    pub improved: bool,
}

/// Figures of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Every epoch run.
    pub epochs: Vec<EpochReport>,
    /// The epoch whose weights the model has (1-based).
    pub best_epoch: usize,
    /// Its validation AUC.
    pub best_valid_auc: Option<f64>,
    /// Whether training stopped before `epochs` for lack of improvement.
    pub stopped_early: bool,
    /// The device trained on (`cpu`, `cuda:0`).
    pub device: String,
    /// Number of training examples.
    pub train_examples: usize,
    /// Number of validation examples.
    pub valid_examples: usize,
    /// Number of trainable parameters.
    pub parameters: i64,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    tch::no_grad(|| {
        vs.variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().copy()))
            .collect()
    })
}

fn restore(vs: &nn::VarStore, best: &HashMap<String, Tensor>) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vs.variables() {
            if let Some(src) = best.get(&name) {
                var.shallow_clone().f_copy_(src)?;
            }
        }
        Ok(())
    })
}

/// Trains a model on `train`, validating on `valid` after every epoch.
///
/// The vocabulary is built from `train`. Batches are shuffled with the
/// seed; weights are initialised from it too (independently of libtorch's
/// global generator), so on the CPU two runs with the same seed, data and
/// thread count give the same model. Training stops after `cfg.epochs`,
/// or after `cfg.patience` epochs without a better validation
/// `cfg.stop_metric` (AUC minus logloss by default); the returned model
/// has the weights of the best epoch.
///
/// Errors: an empty split, an invalid config, an unavailable device, or a
/// loss that is not finite.
pub fn train(
    cfg: &ModelConfig,
    train: &[Example],
    valid: &[Example],
    mut opts: TrainOptions,
) -> Result<(TrainedModel, TrainReport)> {
    let started = Instant::now();
    let mut cfg = cfg.clone();
    if let Some(seed) = opts.seed {
        cfg.seed = seed;
    }
    cfg.validate()?;
    if train.is_empty() {
        return Err(ModelError::EmptySplit { split: "train" });
    }
    if valid.is_empty() {
        return Err(ModelError::EmptySplit { split: "valid" });
    }
    if opts.n == 0 {
        return Err(ModelError::InvalidConfig(
            "the history length n must be >= 1".to_owned(),
        ));
    }
    let device = opts.device.resolve()?;
    let vocab = FeatureVocab::builder()
        .min_count(cfg.min_count)
        .min_users(cfg.min_users)
        .max_categories(cfg.max_categories)
        .max_tags(cfg.max_tags)
        .build(train);
    let net = Net::new(&cfg, &vocab, device);
    let (epochs, best_epoch, stopped_early) = fit(&cfg, &vocab, &net, train, valid, &mut opts)?;
    let best_valid_auc = epochs[best_epoch - 1].valid_auc;
    let report = TrainReport {
        epochs,
        best_epoch,
        best_valid_auc,
        stopped_early,
        device: device_name(device),
        train_examples: train.len(),
        valid_examples: valid.len(),
        parameters: net
            .vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((TrainedModel::from_parts(cfg, vocab, opts.n, net), report))
}

/// The training loop over an initialised network: returns the epoch
/// reports, the best epoch (whose weights `net` ends with) and whether
/// training stopped early.
pub(crate) fn fit(
    cfg: &ModelConfig,
    vocab: &FeatureVocab,
    net: &Net,
    train: &[Example],
    valid: &[Example],
    opts: &mut TrainOptions,
) -> Result<(Vec<EpochReport>, usize, bool)> {
    let device = net.vs.device();
    let mut opt = nn::Adam {
        wd: cfg.weight_decay,
        ..Default::default()
    }
    .build(&net.vs, cfg.learning_rate)?;
    let valid_labels: Vec<u8> = valid.iter().map(|e| e.label).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let batches = train.len().div_ceil(cfg.batch_size);
    let needs_negatives = cfg.kind == crate::ModelKind::Dien && cfg.aux_loss_weight > 0.0;

    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut aux_sum, mut has_aux) = (0.0, 0.0, false);
        let mut chunk = Vec::with_capacity(cfg.batch_size);
        for (bi, idx) in order.chunks(cfg.batch_size).enumerate() {
            chunk.clear();
            chunk.extend(idx.iter().map(|&i| &train[i]));
            let mut batch = Batch::from_refs(&chunk, vocab, opts.n, device)?;
            if needs_negatives {
                batch.sample_negatives(&mut rng);
            }
            let out = net.model.forward_t(&batch, true);
            let mut loss = out.logits.binary_cross_entropy_with_logits(
                &batch.labels,
                None::<&Tensor>,
                None::<&Tensor>,
                Reduction::Mean,
            );
            if let Some(aux) = &out.aux_loss {
                aux_sum += aux.double_value(&[]) * idx.len() as f64;
                has_aux = true;
                loss += aux * cfg.aux_loss_weight;
            }
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                return Err(ModelError::NonFiniteLoss {
                    epoch,
                    batch: bi,
                    loss: value,
                });
            }
            opt.backward_step(&loss);
            loss_sum += value * idx.len() as f64;
            if let Some(cb) = opts.progress.as_mut() {
                cb(&TrainEvent::Batch {
                    epoch,
                    batch: bi,
                    batches,
                    loss: value,
                });
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();

        let probs = net.predict(valid, vocab, opts.n, cfg.eval_batch_size)?;
        let valid_auc = auc(&probs, &valid_labels);
        let valid_logloss = logloss(&probs, &valid_labels);
        let score = cfg.stop_metric.score(valid_auc, valid_logloss);
        let improved = best.as_ref().is_none_or(|(s, _, _)| score > *s);
        if improved {
            best = Some((score, epoch, snapshot(&net.vs)));
            since_best = 0;
        } else {
            since_best += 1;
        }
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            aux_loss: has_aux.then(|| aux_sum / train.len() as f64),
            valid_auc,
            valid_logloss,
            samples_per_sec: train.len() as f64 / train_seconds.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
            improved,
        };
        if let Some(cb) = opts.progress.as_mut() {
            cb(&TrainEvent::Epoch(report.clone()));
        }
        epochs.push(report);
        if cfg.patience > 0 && since_best >= cfg.patience && epoch < cfg.epochs {
            stopped_early = true;
            break;
        }
    }

    let (_, best_epoch, weights) = best.expect("at least one epoch ran");
    restore(&net.vs, &weights)?;
    Ok((epochs, best_epoch, stopped_early))
}
