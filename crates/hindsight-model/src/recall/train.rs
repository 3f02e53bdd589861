//! SASRec's training loop: one window per user, the chosen loss, Adam,
//! full-ranking validation after every epoch and early stopping.

use std::collections::HashMap;
use std::time::Instant;

use hindsight_recall::RecallSplit;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::OptimizerConfig, Tensor};

use super::checkpoint::RecallNet;
use super::data::{bce_negatives, build_vocab, CatalogTable, ItemInput, Sampler, SeqBatch, Window};
use super::net::LossPlan;
use super::{NegativeSampling, RecallLoss, RecallStopMetric, SasRecConfig};
use crate::device::device_name;
use crate::error::{ModelError, Result};
use crate::vocab::FeatureVocab;

/// Figures of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss per position.
    pub train_loss: f64,
    /// Full-ranking HR@10 of the validation targets.
    pub valid_hr10: f64,
    /// Full-ranking NDCG@10 of the validation targets.
    pub valid_ndcg10: f64,
    /// Training positions (predicted next items) per second, training
    /// only.
    pub samples_per_sec: f64,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Whether this epoch is the best so far (its weights are kept).
    pub improved: bool,
}

/// A progress event of [`super::TrainedRecall::train`].
#[derive(Debug, Clone)]
pub enum RecallProgress {
    /// A training batch is done.
    Batch {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// The batch's mean loss.
        loss: f64,
    },
    /// An epoch, validation included, is done.
    Epoch(RecallEpoch),
}

/// Figures of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallTrainReport {
    /// Every epoch run.
    pub epochs: Vec<RecallEpoch>,
    /// The epoch whose weights the model has (1-based).
    pub best_epoch: usize,
    /// Its validation HR@10.
    pub best_valid_hr10: f64,
    /// Its validation NDCG@10.
    pub best_valid_ndcg10: f64,
    /// Whether training stopped before `epochs` for lack of improvement.
    pub stopped_early: bool,
    /// The device trained on.
    pub device: String,
    /// The loss trained with.
    pub loss: RecallLoss,
    /// Users with at least one training position.
    pub train_users: usize,
    /// Training positions per epoch.
    pub train_positions: usize,
    /// Validation users ranked each epoch.
    pub valid_users: usize,
    /// Items ranked (the split's catalog).
    pub catalog_items: usize,
    /// Items of the training vocabulary (with an id embedding).
    pub vocab_items: usize,
    /// Trainable parameters.
    pub parameters: i64,
    /// Mean training positions per second over the epochs.
    pub samples_per_sec: f64,
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

/// Full-ranking HR@10 and NDCG@10 of `targets` (index into the catalog
/// of each user's validation item) given the user vectors `[U, d]` and
/// the catalog's item vectors `[N, d]`. The rank of a target is the number
/// of catalog items with a strictly higher score (ties favour the target).
pub(crate) fn rank_metrics(users: &Tensor, items: &Tensor, targets: &[i64]) -> Result<(f64, f64)> {
    if targets.is_empty() {
        return Ok((0.0, 0.0));
    }
    let device = users.device();
    let idx = Tensor::from_slice(targets).to_device(device);
    let mut hits = 0.0;
    let mut ndcg = 0.0;
    let chunk = 1024i64;
    let u = users.size()[0];
    let mut start = 0i64;
    while start < u {
        let len = chunk.min(u - start);
        let scores = users.narrow(0, start, len).matmul(&items.transpose(0, 1));
        let target_scores = scores.gather(1, &idx.narrow(0, start, len).unsqueeze(-1), false);
        let ranks = scores
            .gt_tensor(&target_scores)
            .sum_dim_intlist(1, false, tch::Kind::Int64);
        let ranks = Vec::<i64>::try_from(ranks.to_device(tch::Device::Cpu))?;
        for r in ranks {
            if r < 10 {
                hits += 1.0;
                ndcg += 1.0 / ((r + 2) as f64).log2();
            }
        }
        start += len;
    }
    let n = targets.len() as f64;
    Ok((hits / n, ndcg / n))
}

/// The validation set: each user's history and the catalog index of the
/// validation item.
struct Valid<'a> {
    windows: Vec<Window<'a>>,
    targets: Vec<i64>,
}

fn valid_set<'a>(split: &'a RecallSplit, cfg: &SasRecConfig) -> Valid<'a> {
    let index: HashMap<u64, i64> = split
        .catalog
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i as i64))
        .collect();
    let limit = if cfg.valid_users == 0 {
        usize::MAX
    } else {
        cfg.valid_users
    };
    let mut windows = Vec::new();
    let mut targets = Vec::new();
    for u in &split.users {
        if windows.len() >= limit {
            break;
        }
        let Some(&t) = index.get(&u.valid().item_id) else {
            continue;
        };
        if u.valid_history().is_empty() {
            continue;
        }
        windows.push(Window::last(u.valid_history(), cfg.max_len));
        targets.push(t);
    }
    Valid { windows, targets }
}

/// User vectors `[U, d]` of `windows`, in eval mode.
pub(crate) fn user_matrix(
    net: &RecallNet,
    vocab: &FeatureVocab,
    windows: &[Window<'_>],
    cfg: &SasRecConfig,
) -> Result<Tensor> {
    let device = net.vs.device();
    tch::no_grad(|| {
        let mut parts = Vec::new();
        for chunk in windows.chunks(cfg.eval_batch_size) {
            let batch = SeqBatch::new(vocab, chunk, cfg.max_len, false, device);
            parts.push(net.net.user_vectors(&batch)?);
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, cfg.dim], (tch::Kind::Float, device)));
        }
        Ok(Tensor::cat(&parts, 0))
    })
}

/// Item vectors `[N, d]` of `items` with their features, in eval mode.
pub(crate) fn item_matrix(
    net: &RecallNet,
    vocab: &FeatureVocab,
    items: &[(u64, hindsight_core::ItemFeatures)],
) -> Tensor {
    let device = net.vs.device();
    tch::no_grad(|| {
        let parts: Vec<Tensor> = items
            .chunks(65_536)
            .map(|c| net.net.item_tower(&ItemInput::of(vocab, c, device)))
            .collect();
        if parts.is_empty() {
            return Tensor::zeros([0, net.net.dim()], (tch::Kind::Float, device));
        }
        Tensor::cat(&parts, 0)
    })
}

/// What training returns to [`super::TrainedRecall::train`].
pub(crate) struct Fitted {
    pub(crate) vocab: FeatureVocab,
    pub(crate) net: RecallNet,
    pub(crate) report: RecallTrainReport,
}

/// Trains SASRec on `split` (see the module docs of [`super`]).
pub(crate) fn fit(
    split: &RecallSplit,
    cfg: &SasRecConfig,
    device: tch::Device,
    mut progress: impl FnMut(&RecallProgress),
) -> Result<Fitted> {
    let started = Instant::now();
    cfg.validate()?;
    let vocab = build_vocab(split, cfg);
    let vocab_items = (vocab.item_table_size() - 2) as usize;
    let windows: Vec<Window<'_>> = split
        .users
        .iter()
        .flat_map(|u| {
            if cfg.all_windows {
                Window::training_all(u.train(), cfg.max_len)
            } else {
                Window::training(u.train(), cfg.max_len)
                    .into_iter()
                    .collect()
            }
        })
        .collect();
    if windows.is_empty() || vocab_items == 0 {
        return Err(ModelError::EmptySplit { split: "train" });
    }
    if let RecallLoss::SampledSoftmax { negatives } = cfg.loss {
        if negatives >= vocab_items {
            return Err(ModelError::InvalidConfig(format!(
                "--negatives {negatives} is not below the {vocab_items} items the model trains on; \
                 use fewer negatives (at most {}) or --loss full-softmax",
                vocab_items.saturating_sub(1)
            )));
        }
    }
    if cfg.loss == RecallLoss::Bce && vocab_items < 2 {
        return Err(ModelError::InvalidConfig(
            "--loss bce needs at least 2 training items to draw a negative from".to_owned(),
        ));
    }
    let valid = valid_set(split, cfg);
    if valid.windows.is_empty() {
        return Err(ModelError::EmptySplit { split: "valid" });
    }
    let positions: usize = windows.iter().map(Window::positions).sum();
    tch::manual_seed(cfg.seed as i64);
    let net = RecallNet::new(cfg, &vocab, device)?;
    let table = CatalogTable::new(&vocab, &split.catalog, device);
    let sampler = match cfg.sampling {
        NegativeSampling::Uniform => Sampler::uniform(table.rows),
        NegativeSampling::Popularity => {
            let mut counts = vec![0u64; table.rows as usize];
            for w in &windows {
                for b in &w.seq[w.end - w.len + 1..=w.end] {
                    counts[vocab.item(b.item_id) as usize] += 1;
                }
            }
            Sampler::popularity(&counts, device)
        }
    };
    let mut opt = nn::Adam {
        beta1: 0.9,
        beta2: 0.98,
        ..Default::default()
    }
    .build(&net.vs, cfg.lr)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..windows.len()).collect();
    let batches = windows.len().div_ceil(cfg.batch_size);

    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    let mut chunk = Vec::with_capacity(cfg.batch_size);
    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (bi, idx) in order.chunks(cfg.batch_size).enumerate() {
            chunk.clear();
            chunk.extend(idx.iter().map(|&i| windows[i]));
            let batch = SeqBatch::new(&vocab, &chunk, cfg.max_len, true, device);
            let plan = match cfg.loss {
                RecallLoss::SampledSoftmax { negatives } => LossPlan::Sampled {
                    negatives: Tensor::from_slice(&sampler.draw_many(negatives, &mut rng))
                        .to_device(device),
                    log_q: sampler.log_q.as_ref().map(Tensor::shallow_clone),
                },
                RecallLoss::FullSoftmax => LossPlan::Full,
                RecallLoss::Bce => {
                    let targets = batch.targets.as_ref().expect("training batch");
                    let t =
                        Vec::<i64>::try_from(targets.flatten(0, -1).to_device(tch::Device::Cpu))?;
                    let neg = bce_negatives(&t, &sampler, &mut rng);
                    LossPlan::Bce {
                        negatives: Tensor::from_slice(&neg)
                            .view(targets.size().as_slice())
                            .to_device(device),
                    }
                }
            };
            let loss = net.net.loss(&batch, &table, &plan)?;
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                return Err(ModelError::NonFiniteLoss {
                    epoch,
                    batch: bi,
                    loss: value,
                });
            }
            opt.backward_step(&loss);
            let n: usize = chunk.iter().map(Window::positions).sum();
            loss_sum += value * n as f64;
            progress(&RecallProgress::Batch {
                epoch,
                batch: bi,
                batches,
                loss: value,
            });
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let users = user_matrix(&net, &vocab, &valid.windows, cfg)?;
        let items = item_matrix(&net, &vocab, &split.catalog);
        let (hr, ndcg) = rank_metrics(&users, &items, &valid.targets)?;
        let score = match cfg.stop_metric {
            RecallStopMetric::Ndcg10 => ndcg,
            RecallStopMetric::Hr10 => hr,
        };
        let improved = best.as_ref().is_none_or(|(s, _, _)| score > *s);
        if improved {
            best = Some((score, epoch, snapshot(&net.vs)));
            since_best = 0;
        } else {
            since_best += 1;
        }
        let report = RecallEpoch {
            epoch,
            train_loss: loss_sum / positions as f64,
            valid_hr10: hr,
            valid_ndcg10: ndcg,
            samples_per_sec: positions as f64 / train_seconds.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
            improved,
        };
        progress(&RecallProgress::Epoch(report.clone()));
        epochs.push(report);
        if cfg.patience > 0 && since_best >= cfg.patience && epoch < cfg.epochs {
            stopped_early = true;
            break;
        }
    }
    let (_, best_epoch, weights) = best.expect("at least one epoch ran");
    restore(&net.vs, &weights)?;
    let best_report = &epochs[best_epoch - 1];
    let report = RecallTrainReport {
        best_epoch,
        best_valid_hr10: best_report.valid_hr10,
        best_valid_ndcg10: best_report.valid_ndcg10,
        stopped_early,
        device: device_name(device),
        loss: cfg.loss,
        train_users: split.users.iter().filter(|u| u.train().len() >= 2).count(),
        train_positions: positions,
        valid_users: valid.windows.len(),
        catalog_items: split.catalog.len(),
        vocab_items,
        parameters: net
            .vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64,
        samples_per_sec: epochs.iter().map(|e| e.samples_per_sec).sum::<f64>()
            / epochs.len() as f64,
        seconds: started.elapsed().as_secs_f64(),
        epochs,
    };
    Ok(Fitted { vocab, net, report })
}
