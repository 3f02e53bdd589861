//! A trained model: checkpoints and batched scoring.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::device::Device;
use crate::error::{ModelError, Result};
use crate::example::Example;
use crate::models::{build_model, CtrModel};
use crate::vocab::FeatureVocab;

/// File name of a checkpoint's configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of a checkpoint's weights.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
const FORMAT: &str = "hindsight-model/1";
/// The out-of-vocabulary row of every embedding table.
const OOV_ROW: usize = crate::vocab::OOV as usize;

/// The parameters and the network built over them.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) vs: nn::VarStore,
    pub(crate) model: Box<dyn CtrModel>,
}

impl Net {
    pub(crate) fn new(cfg: &ModelConfig, vocab: &FeatureVocab, device: tch::Device) -> Self {
        let vs = nn::VarStore::new(device);
        let model = build_model(&vs.root(), cfg, vocab);
        Self { vs, model }
    }

    /// Probabilities of `examples`, in eval mode, without gradients.
    pub(crate) fn predict(
        &self,
        examples: &[Example],
        vocab: &FeatureVocab,
        n: usize,
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(batch_size.max(1)) {
            let batch = Batch::new(chunk, vocab, n, self.vs.device())?;
            out.extend(self.predict_batch(&batch)?);
        }
        Ok(out)
    }

    pub(crate) fn predict_batch(&self, batch: &Batch) -> Result<Vec<f32>> {
        let probs = tch::no_grad(|| self.model.forward(batch, false).sigmoid());
        Ok(Vec::<f32>::try_from(probs.to_device(tch::Device::Cpu))?)
    }
}

/// What `config.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointConfig {
    format: String,
    model: ModelConfig,
    n: usize,
    #[serde(default)]
    retrieval: serde_json::Value,
    /// Name and shape of every tensor of `weights.safetensors`.
    parameters: BTreeMap<String, Vec<i64>>,
    vocab: FeatureVocab,
    /// sha256 of `weights.safetensors` (hex), verified on load; absent in
    /// checkpoints saved before it existed (they load with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weights_sha256: Option<String>,
}

/// The sha256 of a file, in lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = fs::File::open(path).map_err(|source| io_err(path, source))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| io_err(path, source))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Number of probe examples scored at load.
const PROBE_EXAMPLES: usize = 4;

/// A small fixed batch that touches the padding, out-of-vocabulary and
/// first known rows of every embedding table: a loaded model must score
/// it finitely.
fn probe_examples(vocab: &FeatureVocab, n: usize) -> Vec<Example> {
    use hindsight_core::{Behavior, ItemFeatures, Target};
    let ids = serde_json::to_value(vocab).unwrap_or_default();
    let list = |name: &str| -> Vec<u64> {
        ids[name]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).take(8).collect())
            .unwrap_or_default()
    };
    let (items, cats, tags, types) = (
        list("items"),
        list("categories"),
        list("tags"),
        list("behavior_types"),
    );
    // Element k of a list, or an id no vocabulary holds (out of vocabulary).
    let pick = |l: &[u64], k: usize| l.get(k % l.len().max(1)).copied().unwrap_or(u64::MAX);
    let features = |k: usize, known: bool| {
        let mut f =
            ItemFeatures::with_categories(vec![if known { pick(&cats, k) } else { u64::MAX }]);
        f.tags = vec![if known { pick(&tags, k) } else { u64::MAX }];
        f
    };
    let now = 1_600_000_000i64;
    (0..PROBE_EXAMPLES)
        .map(|e| {
            // 0: empty history; 1: unknown ids only; 2, 3: known ids, full.
            let known = e >= 2;
            let len = if e == 0 { 0 } else { n };
            let history = (0..len)
                .map(|j| Behavior {
                    user_id: 1,
                    seq: j as u32,
                    item_id: if known {
                        pick(&items, j + e)
                    } else {
                        u64::MAX - 1
                    },
                    features: features(j + e, known),
                    behavior_type: pick(&types, j).min(u8::MAX as u64) as u8,
                    timestamp: now - 60 * (len - j) as i64,
                })
                .collect();
            Example {
                user_id: 1,
                label: 0,
                target: Target {
                    item_id: if known { pick(&items, e) } else { u64::MAX },
                    features: features(e, known),
                },
                timestamp: now,
                history,
            }
        })
        .collect()
}

/// A model with its configuration, vocabulary and history length N: what
/// [`crate::train`] returns and what a checkpoint holds.
///
/// # Thread safety
///
/// `TrainedModel` is `Send + Sync`: it can be shared (e.g. in an `Arc`)
/// by scoring threads. libtorch tensors are not `Sync`, so the network sits
/// behind a mutex and concurrent [`score`](Self::score) calls run their
/// forward passes one at a time (each one already uses libtorch's
/// intra-op thread pool; load one model per worker for more parallelism).
/// Batches are built outside the lock.
#[derive(Debug)]
pub struct TrainedModel {
    config: ModelConfig,
    vocab: FeatureVocab,
    n: usize,
    retrieval: serde_json::Value,
    device: tch::Device,
    net: Mutex<Net>,
    weights_sha256: Option<String>,
}

/// The embedding rows an item representation is made of, by raw id: what
/// gives an item the model never saw its vector
/// (`[item_oov, mean category rows, mean tag rows]`), for stores that
/// compute vectors without libtorch (`hindsight-embeddings`).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFeatureTables {
    /// Width of each part (the embedding dimension).
    pub part_dim: usize,
    /// The out-of-vocabulary item row.
    pub item_oov: Vec<f32>,
    /// Raw category ids of the vocabulary.
    pub category_ids: Vec<u64>,
    /// Their rows (`category_ids.len() x part_dim`).
    pub category_rows: Vec<f32>,
    /// The out-of-vocabulary category row.
    pub category_oov: Vec<f32>,
    /// Raw tag ids, their rows and the OOV row; `None` for a model without
    /// tags.
    pub tags: Option<(Vec<u64>, Vec<f32>, Vec<f32>)>,
    /// At most this many categories of an item are averaged.
    pub max_categories: usize,
    /// At most this many tags of an item are averaged.
    pub max_tags: usize,
}

/// The category and tag rows (by raw id) and the OOV rows of a model's
/// embedding tables `names` = [item, category, tag] (the tag table
/// optional), read from its variables: what makes an item's vector from
/// its features outside libtorch ([`ItemFeatureTables`]). Shared by the
/// CTR models and SASRec, whose tables differ only by name.
pub(crate) fn feature_tables_of(
    vars: &std::collections::HashMap<String, Tensor>,
    vocab: &FeatureVocab,
    names: [&str; 3],
    kind: &str,
) -> Result<ItemFeatureTables> {
    let missing = |name: &str| {
        ModelError::InvalidConfig(format!(
            "a {kind} model has no {name} table to take item vectors from"
        ))
    };
    let rows_of = |name: &str| -> Result<(Vec<f32>, usize)> {
        let t = vars.get(name).ok_or_else(|| missing(name))?;
        let width = t.size().get(1).copied().unwrap_or(0) as usize;
        let v = Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().flatten(0, -1))?;
        Ok((v, width))
    };
    let ids = serde_json::to_value(vocab).unwrap_or_default();
    let list = |name: &str| -> Vec<u64> {
        ids[name]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    };
    // Row `dense` of a table; dense ids are 2 + position (0 padding, 1 OOV).
    let pick = |table: &[f32], w: usize, raw: &[u64], dense: &dyn Fn(u64) -> i64| {
        let mut rows = Vec::with_capacity(raw.len() * w);
        for &id in raw {
            let d = dense(id) as usize;
            rows.extend_from_slice(&table[d * w..(d + 1) * w]);
        }
        rows
    };
    let [item_name, category_name, tag_name] = names;
    let (item, w) = rows_of(item_name)?;
    let item_oov = item[OOV_ROW * w..(OOV_ROW + 1) * w].to_vec();
    let (cats, cw) = rows_of(category_name)?;
    let category_ids = list("categories");
    let category_rows = pick(&cats, cw, &category_ids, &|id| vocab.category(id));
    let category_oov = cats[OOV_ROW * cw..(OOV_ROW + 1) * cw].to_vec();
    let tags = if vars.contains_key(tag_name) {
        let (tags, tw) = rows_of(tag_name)?;
        let tag_ids = list("tags");
        let rows = pick(&tags, tw, &tag_ids, &|id| vocab.tag(id));
        Some((
            tag_ids,
            rows,
            tags[OOV_ROW * tw..(OOV_ROW + 1) * tw].to_vec(),
        ))
    } else {
        None
    };
    Ok(ItemFeatureTables {
        part_dim: w,
        item_oov,
        category_ids,
        category_rows,
        category_oov,
        tags,
        max_categories: vocab.max_categories,
        max_tags: vocab.max_tags,
    })
}

impl TrainedModel {
    /// A freshly initialised (untrained) model: for tests and benchmarks.
    pub fn init(
        config: ModelConfig,
        vocab: FeatureVocab,
        n: usize,
        device: Device,
    ) -> Result<Self> {
        config.validate()?;
        if n == 0 {
            return Err(ModelError::InvalidConfig(
                "the history length n must be >= 1".to_owned(),
            ));
        }
        let device = device.resolve()?;
        let net = Net::new(&config, &vocab, device);
        Ok(Self::from_parts(config, vocab, n, net))
    }

    pub(crate) fn from_parts(config: ModelConfig, vocab: FeatureVocab, n: usize, net: Net) -> Self {
        Self {
            config,
            vocab,
            n,
            retrieval: serde_json::Value::Null,
            device: net.vs.device(),
            net: Mutex::new(net),
            weights_sha256: None,
        }
    }

    /// The sha256 of the weights file this model was loaded from (`None`
    /// for a model not loaded from a checkpoint, or from one saved before
    /// checksums existed).
    pub fn weights_sha256(&self) -> Option<&str> {
        self.weights_sha256.as_deref()
    }

    /// Length of an item vector ([`item_vectors`](Self::item_vectors)).
    pub fn item_vector_dim(&self) -> usize {
        let tags = self.net().vs.variables().contains_key("embedding.tag");
        self.config.embedding_dim as usize * if tags { 3 } else { 2 }
    }

    /// The item representation the model gives each of `items` (its item
    /// row, out-of-vocabulary for an item it never saw, with the mean of its
    /// category rows and, with tags, of its tag rows): `items.len()` rows of
    /// [`item_vector_dim`](Self::item_vector_dim) floats, row-major, in
    /// order. What retrieval by learned embeddings (`sim-soft`, `eta`,
    /// `sdim`) ranks with.
    pub fn item_vectors(&self, items: &[hindsight_core::Target]) -> Result<Vec<f32>> {
        let dim = self.item_vector_dim();
        let mut out = Vec::with_capacity(items.len() * dim);
        let vars = self.net().vs.variables();
        for chunk in items.chunks(4096) {
            let examples: Vec<Example> = chunk
                .iter()
                .map(|t| Example {
                    user_id: 0,
                    label: 0,
                    target: t.clone(),
                    timestamp: 0,
                    history: Vec::new(),
                })
                .collect();
            let batch = Batch::new(&examples, &self.vocab, 1, self.device)?;
            let repr = tch::no_grad(|| {
                crate::layers::FeatureEmbedding::target_from_vars(&vars, &batch)
            })
            .ok_or_else(|| {
                ModelError::InvalidConfig(format!(
                    "a {} model has no embedding.item / embedding.category tables to take item vectors from",
                    self.config.kind
                ))
            })?;
            out.extend(Vec::<f32>::try_from(
                repr.to_device(tch::Device::Cpu).contiguous().flatten(0, -1),
            )?);
        }
        Ok(out)
    }

    /// The category and tag rows (by raw id) and the out-of-vocabulary
    /// rows that make the vector of any item from its features (see
    /// [`ItemFeatureTables`]).
    pub fn item_feature_tables(&self) -> Result<ItemFeatureTables> {
        let kind = self.config.kind.to_string();
        feature_tables_of(
            &self.net().vs.variables(),
            &self.vocab,
            ["embedding.item", "embedding.category", "embedding.tag"],
            &kind,
        )
    }

    fn net(&self) -> MutexGuard<'_, Net> {
        // A panic in another scoring thread leaves the weights untouched
        // (scoring never writes them), so a poisoned lock is still usable.
        self.net.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The feature vocabulary built at training time.
    pub fn vocab(&self) -> &FeatureVocab {
        &self.vocab
    }

    /// The history length N the model was trained with.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The libtorch device the weights live on.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// The retrieval metadata saved with the checkpoint (strategy, N,
    /// index id, ...), `null` when none was set.
    pub fn retrieval(&self) -> &serde_json::Value {
        &self.retrieval
    }

    /// Sets the retrieval metadata saved with the checkpoint.
    pub fn set_retrieval(&mut self, retrieval: serde_json::Value) {
        self.retrieval = retrieval;
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

    /// Builds the batch of `examples` for this model (its vocabulary, N and
    /// device), to score it with [`score_batch`](Self::score_batch) any
    /// number of times.
    pub fn batch(&self, examples: &[Example]) -> Result<Batch> {
        Batch::new(examples, &self.vocab, self.n, self.device)
    }

    /// Click probabilities of a batch built by [`batch`](Self::batch): one
    /// forward pass in eval mode, without gradients.
    pub fn score_batch(&self, batch: &Batch) -> Result<Vec<f32>> {
        self.net().predict_batch(batch)
    }

    /// Click probabilities of `examples`, in order, in batches of
    /// `eval_batch_size`. Labels are ignored.
    pub fn score(&self, examples: &[Example]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(self.config.eval_batch_size.max(1)) {
            let batch = self.batch(chunk)?;
            out.extend(self.score_batch(&batch)?);
        }
        Ok(out)
    }

    /// Writes `config.json` (model config, N, vocabulary, retrieval
    /// metadata, parameter shapes) and `weights.safetensors` into `dir`,
    /// creating it. Each file is written to a temporary name and renamed.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        let net = self.net();
        let parameters = net
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.size()))
            .collect();
        let cfg = CheckpointConfig {
            format: FORMAT.to_owned(),
            model: self.config.clone(),
            n: self.n,
            retrieval: self.retrieval.clone(),
            parameters,
            vocab: self.vocab.clone(),
            weights_sha256: None,
        };
        let weights = dir.join(WEIGHTS_FILE);
        let weights_tmp = dir.join("weights.tmp.safetensors");
        net.vs.save(&weights_tmp)?;
        let cfg = CheckpointConfig {
            weights_sha256: Some(sha256_file(&weights_tmp)?),
            ..cfg
        };
        fs::rename(&weights_tmp, &weights).map_err(|source| io_err(&weights, source))?;
        let config = dir.join(CONFIG_FILE);
        let config_tmp = dir.join("config.json.tmp");
        let json = serde_json::to_vec_pretty(&cfg).map_err(|e| ModelError::CorruptConfig {
            path: config.clone(),
            source: e,
        })?;
        fs::write(&config_tmp, json).map_err(|source| io_err(&config_tmp, source))?;
        fs::rename(&config_tmp, &config).map_err(|source| io_err(&config, source))?;
        Ok(())
    }

    /// Loads a checkpoint written by [`save`](Self::save) onto `device`.
    ///
    /// Fails with a clear error for a missing directory or file, a corrupt
    /// file, weights whose names or shapes differ from what the config
    /// describes, weights that do not hash to the sha256 recorded in
    /// `config.json` ([`ModelError::WeightsChecksum`]; a checkpoint saved
    /// before the checksum existed loads with a warning), weights holding
    /// NaN or infinite values ([`ModelError::NonFiniteWeights`]), and a
    /// model whose scores on a small built-in probe batch are not all
    /// finite ([`ModelError::NonFiniteScores`]), and a recall (SASRec)
    /// checkpoint ([`ModelError::RecallModel`]).
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Self> {
        let dir = dir.as_ref();
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
        if crate::recall::is_recall_config(&text) {
            return Err(ModelError::RecallModel {
                path: dir.to_path_buf(),
            });
        }
        let cfg: CheckpointConfig =
            serde_json::from_slice(&text).map_err(|source| ModelError::CorruptConfig {
                path: config_path.clone(),
                source,
            })?;
        if cfg.format != FORMAT {
            return Err(ModelError::InvalidConfig(format!(
                "{} has format {:?}, this build reads {FORMAT:?}; retrain or use a matching build",
                config_path.display(),
                cfg.format
            )));
        }
        cfg.model.validate()?;
        let device = device.resolve()?;
        let net = Net::new(&cfg.model, &cfg.vocab, device);

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
            let expected = cfg.parameters.get(name);
            if expected != Some(&var.size()) {
                return Err(mismatch(format!(
                    "config.json describes {name} as {expected:?}, the model has {:?}",
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
        // After the structural checks, so that an unreadable file or the
        // weights of another model are reported as such.
        match &cfg.weights_sha256 {
            Some(expected) => {
                let found = sha256_file(&weights_path)?;
                if !found.eq_ignore_ascii_case(expected) {
                    return Err(ModelError::WeightsChecksum {
                        path: weights_path.clone(),
                        expected: expected.clone(),
                        found,
                    });
                }
            }
            None => tracing::warn!(
                "{} records no weights checksum (saved by an older build); its weights are loaded unverified, save the model again to add one",
                config_path.display()
            ),
        }
        copy_finite_weights(&tensors, &variables, &weights_path)?;
        let mut model = Self::from_parts(cfg.model, cfg.vocab, cfg.n, net);
        model.retrieval = cfg.retrieval;
        model.weights_sha256 = cfg.weights_sha256;
        let scores = model.score(&probe_examples(&model.vocab, model.n))?;
        let count = scores.iter().filter(|s| !s.is_finite()).count();
        if count > 0 {
            return Err(ModelError::NonFiniteScores {
                path: dir.to_path_buf(),
                count,
                total: scores.len(),
            });
        }
        Ok(model)
    }
}

/// Copies the loaded `tensors` into the model's `variables` (same names,
/// shapes checked by the caller), refusing any floating-point tensor with
/// a NaN or infinite value.
pub(crate) fn copy_finite_weights(
    tensors: &BTreeMap<String, Tensor>,
    variables: &std::collections::HashMap<String, Tensor>,
    weights_path: &Path,
) -> Result<()> {
    for (name, t) in tensors {
        if !t.is_floating_point() {
            continue;
        }
        let count = t
            .isfinite()
            .logical_not()
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        if count > 0 {
            return Err(ModelError::NonFiniteWeights {
                path: weights_path.to_path_buf(),
                tensor: name.clone(),
                count,
            });
        }
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in variables {
            var.shallow_clone().f_copy_(&tensors[name])?;
        }
        Ok(())
    })
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
#[path = "trained_tests.rs"]
mod tests;
