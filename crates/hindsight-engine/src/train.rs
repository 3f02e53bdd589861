//! Training and evaluation on [`Prepared`] samples (feature `model`), and
//! the training progress events front ends display.

use std::time::Instant;

use hindsight_core::metrics::{auc, gauc, logloss};
use hindsight_model::{
    train, Device, EpochReport, Example, ModelConfig, ProgressFn, TrainEvent, TrainOptions,
    TrainReport, TrainedModel,
};
use hindsight_samples::Split;

use crate::{Bucket, EngineError, EvalReport, Metrics, Prepared, Result, RetrievalSettings};

/// A progress event of [`Prepared::train_with_progress`]: the model's
/// [`TrainEvent`] with the throughput figures a front end shows.
#[derive(Debug, Clone, Copy)]
pub enum TrainProgress<'a> {
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
        /// Seconds since the epoch's first batch ended.
        epoch_secs: f64,
        /// Training examples per second in this epoch so far (approximate:
        /// the last batch of an epoch may be smaller).
        samples_per_sec: f64,
    },
    /// An epoch, validation included, is done.
    Epoch(&'a EpochReport),
}

/// Turns a [`TrainProgress`] callback into the model's [`ProgressFn`].
fn progress_fn(
    mut on: impl FnMut(&TrainProgress<'_>) + Send + 'static,
    batch_size: usize,
) -> ProgressFn {
    let mut epoch_start = Instant::now();
    Box::new(move |ev: &TrainEvent| match ev {
        TrainEvent::Batch {
            epoch,
            batch,
            batches,
            loss,
        } => {
            if *batch == 0 {
                epoch_start = Instant::now();
            }
            let epoch_secs = epoch_start.elapsed().as_secs_f64();
            on(&TrainProgress::Batch {
                epoch: *epoch,
                batch: *batch,
                batches: *batches,
                loss: *loss,
                epoch_secs,
                samples_per_sec: ((batch + 1) * batch_size) as f64 / epoch_secs.max(1e-9),
            });
        }
        TrainEvent::Epoch(e) => on(&TrainProgress::Epoch(e)),
    })
}

impl RetrievalSettings {
    /// The settings recorded in a trained model.
    pub fn of(model: &TrainedModel) -> Result<RetrievalSettings> {
        serde_json::from_value(model.retrieval().clone()).map_err(|e| {
            EngineError::Mismatch(format!(
                "the model's config.json has no valid retrieval settings ({e}); retrain it with `hindsight train`"
            ))
        })
    }
}

impl Prepared {
    /// The model examples of one split.
    pub fn examples(&self, split: Split) -> Vec<Example> {
        self.samples
            .iter()
            .zip(&self.histories)
            .filter(|(s, _)| s.split == split)
            .map(|(s, h)| Example {
                user_id: s.user_id,
                label: s.label,
                target: s.target.clone(),
                timestamp: s.timestamp,
                history: h.clone(),
            })
            .collect()
    }

    /// The number of behaviors in the model input of each sample of one
    /// split (its retrieved history, at most N), in sample order.
    pub fn input_lens(&self, split: Split) -> Vec<usize> {
        self.samples
            .iter()
            .zip(&self.histories)
            .filter(|(s, _)| s.split == split)
            .map(|(_, h)| h.len().min(self.settings.n))
            .collect()
    }

    /// Trains a model on the train split, early-stopping on the valid split.
    pub fn train(
        &self,
        cfg: &ModelConfig,
        opts: TrainOptions,
    ) -> Result<(TrainedModel, TrainReport)> {
        let (tr, va) = (self.examples(Split::Train), self.examples(Split::Valid));
        let (mut model, report) = train(cfg, &tr, &va, opts)?;
        model.set_retrieval(serde_json::to_value(&self.settings).expect("settings serialize"));
        Ok((model, report))
    }

    /// Trains on `device` with the config's seed (as `hindsight train` and
    /// the [`grid`](crate::grid) do), calling `progress` after every batch
    /// and every epoch.
    pub fn train_with_progress(
        &self,
        cfg: &ModelConfig,
        device: Device,
        progress: impl FnMut(&TrainProgress<'_>) + Send + 'static,
    ) -> Result<(TrainedModel, TrainReport)> {
        let opts = TrainOptions {
            device,
            n: self.settings.n,
            seed: Some(cfg.seed),
            progress: Some(progress_fn(progress, cfg.batch_size)),
        };
        self.train(cfg, opts)
    }

    /// Evaluates a model on the test split.
    pub fn evaluate(&self, model: &TrainedModel) -> Result<EvalReport> {
        let settings = RetrievalSettings::of(model)?;
        if settings.strategy != self.settings.strategy || settings.n != self.settings.n {
            return Err(EngineError::Mismatch(format!(
                "the model was trained with {} N={} but the samples were retrieved with {} N={}",
                settings.strategy, settings.n, self.settings.strategy, self.settings.n
            )));
        }
        if settings.strategy.needs_embeddings() && settings.embeddings != self.settings.embeddings {
            let found = self
                .settings
                .embeddings
                .as_ref()
                .map_or("none".to_owned(), |e| e.to_string());
            return Err(EngineError::Mismatch(format!(
                "the model was trained on {} retrieval over {}, but the samples were retrieved over {found}; attach the model's retrieval checkpoint again or retrain",
                settings.strategy,
                settings.embeddings.as_ref().map_or("no recorded embeddings".to_owned(), |e| e.to_string()),
            )));
        }
        let test = self.examples(Split::Test);
        if test.is_empty() {
            return Err(EngineError::Mismatch("the test split is empty".into()));
        }
        let lens = self.history_lens(Split::Test);
        let new_item: Vec<bool> = self
            .samples
            .iter()
            .filter(|s| s.split == Split::Test)
            .map(|s| s.new_item)
            .collect();
        let t0 = Instant::now();
        let probs = model.score(&test)?;
        let secs = t0.elapsed().as_secs_f64();
        let labels: Vec<u8> = test.iter().map(|e| e.label).collect();
        let users: Vec<u64> = test.iter().map(|e| e.user_id).collect();
        let slice_of = |keep: &dyn Fn(usize) -> bool| {
            let idx: Vec<usize> = (0..test.len()).filter(|&i| keep(i)).collect();
            let p: Vec<f32> = idx.iter().map(|&i| probs[i]).collect();
            let l: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
            let u: Vec<u64> = idx.iter().map(|&i| users[i]).collect();
            Metrics {
                samples: idx.len(),
                auc: auc(&p, &l),
                gauc: gauc(&u, &p, &l),
                logloss: if idx.is_empty() {
                    None
                } else {
                    Some(logloss(&p, &l))
                },
            }
        };
        let slice = |keep: &dyn Fn(u32) -> bool| slice_of(&|i| keep(lens[i]));
        let long = self.settings.protocol.long_history;
        let buckets = [(20, 50), (50, 100), (100, 200), (200, 500), (500, u32::MAX)];
        Ok(EvalReport {
            model: model.config().kind.as_str().to_owned(),
            strategy: settings.strategy.as_str().to_owned(),
            n: settings.n,
            dataset: settings.mapping.clone(),
            all: slice(&|_| true),
            long_history: slice(&|l| l > long),
            long_history_threshold: long,
            new_item: Some(slice_of(&|i| new_item[i])),
            by_history: buckets
                .iter()
                .map(|&(lo, hi)| (lo, hi, slice(&|l| l >= lo && l < hi)))
                .filter(|b| b.2.samples > 0)
                .map(|(lo, hi, m)| Bucket {
                    from: lo,
                    to: hi,
                    metrics: m,
                })
                .collect(),
            inference_samples_per_sec: test.len() as f64 / secs.max(1e-9),
            device: hindsight_model::device_name(model.device()),
        })
    }
}
