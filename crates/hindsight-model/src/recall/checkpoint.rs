//! A trained recall model: user and item vectors, checkpoints.
//!
//! A checkpoint folder holds `config.json` (`format`
//! [`RECALL_FORMAT`], `kind` [`SASREC_KIND`], the [`SasRecConfig`], the
//! vocabulary, every parameter's shape and `weights_sha256`) and
//! `weights.safetensors`, the files a CTR checkpoint has, so that a folder
//! is recognisably one or the other: the CTR loader refuses this one and
//! [`TrainedRecall::load`] refuses a CTR checkpoint, each with a message
//! saying what to do.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use hindsight_core::{Behavior, ItemFeatures, ItemId};
use hindsight_recall::RecallSplit;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::data::{SeqBatch, Window};
use super::net::SasRecNet;
use super::train::{fit, item_matrix, RecallProgress, RecallTrainReport};
use super::SasRecConfig;
use crate::error::{ModelError, Result};
use crate::trained::{copy_finite_weights, io_err, sha256_file, CONFIG_FILE, WEIGHTS_FILE};
use crate::vocab::FeatureVocab;

/// `format` of a recall checkpoint's `config.json`.
pub const RECALL_FORMAT: &str = "hindsight-recall/1";
/// `kind` of a SASRec checkpoint.
pub const SASREC_KIND: &str = "sasrec";

/// The parameters and the network built over them.
#[derive(Debug)]
pub(crate) struct RecallNet {
    pub(crate) vs: nn::VarStore,
    pub(crate) net: SasRecNet,
}

impl RecallNet {
    pub(crate) fn new(
        cfg: &SasRecConfig,
        vocab: &FeatureVocab,
        device: tch::Device,
    ) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let net = SasRecNet::new(&vs.root(), cfg, vocab)?;
        Ok(Self { vs, net })
    }
}

/// What `config.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct RecallCheckpoint {
    format: String,
    kind: String,
    config: SasRecConfig,
    vocab: FeatureVocab,
    /// Name and shape of every tensor of `weights.safetensors`.
    parameters: BTreeMap<String, Vec<i64>>,
    /// sha256 of `weights.safetensors` (hex), verified on load.
    weights_sha256: String,
}

/// The sha256 of the weights file `vs` saves to (written to a temporary
/// file and removed).
fn weights_sha256_of(vs: &nn::VarStore) -> Result<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "hindsight-sasrec-{}-{nanos}.safetensors",
        std::process::id()
    ));
    vs.save(&path)?;
    let sha = sha256_file(&path);
    let _ = fs::remove_file(&path);
    sha
}

/// A trained SASRec: its configuration, vocabulary and weights; computes
/// user vectors from histories and item vectors from ids and features.
///
/// `Send + Sync`: libtorch tensors are not `Sync`, so the network sits
/// behind a mutex and concurrent calls run their forward passes one at a
/// time (load one model per worker for more parallelism).
#[derive(Debug)]
pub struct TrainedRecall {
    config: SasRecConfig,
    vocab: FeatureVocab,
    weights_sha256: String,
    pub(super) net: Mutex<RecallNet>,
}

impl TrainedRecall {
    /// Trains SASRec on the training parts of `split` on `device`, with
    /// early stopping on the validation targets (see [`super`]); calls
    /// `progress` after every batch and every epoch.
    ///
    /// Errors: an invalid config, `--negatives` not below the number of
    /// training items, a split without training positions or validation
    /// users, a loss that is not finite.
    pub fn train(
        split: &RecallSplit,
        cfg: &SasRecConfig,
        device: tch::Device,
        progress: impl FnMut(&RecallProgress),
    ) -> Result<(TrainedRecall, RecallTrainReport)> {
        let fitted = fit(split, cfg, device, progress)?;
        let weights_sha256 = weights_sha256_of(&fitted.net.vs)?;
        Ok((
            TrainedRecall {
                config: cfg.clone(),
                vocab: fitted.vocab,
                weights_sha256,
                net: Mutex::new(fitted.net),
            },
            fitted.report,
        ))
    }

    fn net(&self) -> MutexGuard<'_, RecallNet> {
        // Inference never writes the weights: a poisoned lock is usable.
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The feature vocabulary (raw ids to embedding rows).
    pub fn vocab(&self) -> &FeatureVocab {
        &self.vocab
    }

    /// The configuration trained with.
    pub fn config(&self) -> &SasRecConfig {
        &self.config
    }

    /// sha256 (hex) of the weights file: what [`save`](Self::save) writes
    /// and [`load`](Self::load) verifies; an ANN index built from this
    /// model records it.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// Dimension of user and item vectors.
    pub fn dim(&self) -> usize {
        self.config.dim as usize
    }

    /// The libtorch device the weights live on.
    pub fn device(&self) -> tch::Device {
        self.net().vs.device()
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        self.net()
            .vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64
    }

    /// Row-major `[histories.len(), dim]`: the output at the last position
    /// of each history (its `max_len` most recent behaviors, oldest first).
    /// An empty history is an error (there is nothing to encode; an
    /// unknown user is the caller's cold-start case).
    pub fn user_vectors(&self, histories: &[&[Behavior]]) -> Result<Vec<f32>> {
        if let Some(i) = histories.iter().position(|h| h.is_empty()) {
            return Err(ModelError::InvalidConfig(format!(
                "history {i} is empty: a user vector needs at least one behavior \
                 (serve users without behaviors from popular items)"
            )));
        }
        let net = self.net();
        let device = net.vs.device();
        let windows: Vec<Window<'_>> = histories
            .iter()
            .map(|h| Window::last(h, self.config.max_len))
            .collect();
        let mut out = Vec::with_capacity(histories.len() * self.dim());
        tch::no_grad(|| -> Result<()> {
            for chunk in windows.chunks(self.config.eval_batch_size) {
                let batch = SeqBatch::new(&self.vocab, chunk, self.config.max_len, false, device);
                let v = net.net.user_vectors(&batch)?;
                out.extend(Vec::<f32>::try_from(
                    v.to_device(tch::Device::Cpu).flatten(0, -1),
                )?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Row-major `[items.len(), dim]`: the item tower (id embedding plus
    /// pooled category and tag embeddings). An id the model never trained
    /// on uses the out-of-vocabulary id row and its features.
    pub fn item_vectors(&self, items: &[(ItemId, ItemFeatures)]) -> Result<Vec<f32>> {
        let net = self.net();
        let m = item_matrix(&net, &self.vocab, items);
        Ok(Vec::<f32>::try_from(
            m.to_device(tch::Device::Cpu).flatten(0, -1),
        )?)
    }

    /// The category and tag rows and the OOV rows of the item tower (see
    /// [`ItemFeatureTables`](crate::ItemFeatureTables)): the tower of an
    /// unseen item is `item OOV row + mean of its category rows + mean of
    /// its tag rows`, a sum of three `dim`-wide parts (where DIN's item
    /// representation concatenates them).
    pub fn item_feature_tables(&self) -> Result<crate::ItemFeatureTables> {
        crate::trained::feature_tables_of(
            &self.net().vs.variables(),
            &self.vocab,
            ["item", "category", "tag"],
            SASREC_KIND,
        )
    }

    /// Writes `config.json` and `weights.safetensors` into `dir`, creating
    /// it; each file goes to a temporary name and is renamed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let net = self.net();
        let weights = dir.join(WEIGHTS_FILE);
        let weights_tmp = dir.join("weights.tmp.safetensors");
        net.vs.save(&weights_tmp)?;
        let sha = sha256_file(&weights_tmp)?;
        fs::rename(&weights_tmp, &weights).map_err(|source| io_err(&weights, source))?;
        let cfg = RecallCheckpoint {
            format: RECALL_FORMAT.to_owned(),
            kind: SASREC_KIND.to_owned(),
            config: self.config.clone(),
            vocab: self.vocab.clone(),
            parameters: net
                .vs
                .variables()
                .into_iter()
                .map(|(name, t)| (name, t.size()))
                .collect(),
            weights_sha256: sha,
        };
        let config = dir.join(CONFIG_FILE);
        let config_tmp = dir.join("config.json.tmp");
        let json = serde_json::to_vec_pretty(&cfg).map_err(|source| ModelError::CorruptConfig {
            path: config.clone(),
            source,
        })?;
        fs::write(&config_tmp, json).map_err(|source| io_err(&config_tmp, source))?;
        fs::rename(&config_tmp, &config).map_err(|source| io_err(&config, source))?;
        Ok(())
    }

    /// Loads a checkpoint written by [`save`](Self::save) onto `device`.
    ///
    /// Refused with a clear error: a missing folder or file, a corrupt
    /// file, a CTR checkpoint ([`ModelError::NotARecallModel`]), weights
    /// whose names or shapes differ from the config, weights that do not
    /// hash to the recorded sha256, non-finite weights.
    pub fn load(dir: &Path, device: tch::Device) -> Result<TrainedRecall> {
        if !dir.is_dir() {
            return Err(ModelError::MissingCheckpoint(dir.to_path_buf()));
        }
        let config_path = dir.join(CONFIG_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        for path in [&config_path, &weights_path] {
            if !path.is_file() {
                return Err(ModelError::MissingFile(path.clone()));
            }
        }
        let text = fs::read(&config_path).map_err(|source| io_err(&config_path, source))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|source| ModelError::CorruptConfig {
                path: config_path.clone(),
                source,
            })?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(SASREC_KIND) {
            let kind = value
                .pointer("/model/kind")
                .and_then(|k| k.as_str())
                .unwrap_or("unknown")
                .to_owned();
            return Err(ModelError::NotARecallModel {
                path: dir.to_path_buf(),
                kind,
            });
        }
        let cfg: RecallCheckpoint =
            serde_json::from_value(value).map_err(|source| ModelError::CorruptConfig {
                path: config_path.clone(),
                source,
            })?;
        if cfg.format != RECALL_FORMAT {
            return Err(ModelError::InvalidConfig(format!(
                "{} has format {:?}, this build reads {RECALL_FORMAT:?}; retrain or use a matching build",
                config_path.display(),
                cfg.format
            )));
        }
        cfg.config.validate()?;
        let net = RecallNet::new(&cfg.config, &cfg.vocab, device)?;
        let tensors =
            Tensor::read_safetensors(&weights_path).map_err(|e| ModelError::CorruptWeights {
                path: weights_path.clone(),
                message: e.to_string(),
            })?;
        let tensors: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let mismatch = |detail: String| ModelError::WeightsMismatch {
            path: weights_path.clone(),
            detail,
        };
        let variables = net.vs.variables();
        if let Some(extra) = cfg.parameters.keys().find(|k| !variables.contains_key(*k)) {
            return Err(mismatch(format!(
                "config.json lists {extra}, which the model does not have"
            )));
        }
        for (name, var) in &variables {
            if cfg.parameters.get(name) != Some(&var.size()) {
                return Err(mismatch(format!(
                    "config.json describes {name} as {:?}, the model has {:?}",
                    cfg.parameters.get(name),
                    var.size()
                )));
            }
            let Some(t) = tensors.get(name) else {
                return Err(mismatch(format!("tensor {name} is missing")));
            };
            if t.size() != var.size() || t.kind() != var.kind() {
                return Err(mismatch(format!(
                    "tensor {name} is {:?} {:?}, the model expects {:?} {:?}",
                    t.kind(),
                    t.size(),
                    var.kind(),
                    var.size()
                )));
            }
        }
        if let Some(extra) = tensors.keys().find(|k| !variables.contains_key(*k)) {
            return Err(mismatch(format!("unexpected tensor {extra}")));
        }
        let found = sha256_file(&weights_path)?;
        if !found.eq_ignore_ascii_case(&cfg.weights_sha256) {
            return Err(ModelError::WeightsChecksum {
                path: weights_path.clone(),
                expected: cfg.weights_sha256.clone(),
                found,
            });
        }
        copy_finite_weights(&tensors, &variables, &weights_path)?;
        Ok(TrainedRecall {
            config: cfg.config,
            vocab: cfg.vocab,
            weights_sha256: found,
            net: Mutex::new(net),
        })
    }
}
