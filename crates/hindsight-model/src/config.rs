//! Model and training hyper-parameters.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::models::ModelKind;

/// The activation of the hidden layers of the final MLP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Dice, the data-adaptive activation of the DIN paper (batch statistics
    /// while training, running averages at inference).
    #[default]
    Dice,
    /// PReLU with one learnt slope per unit.
    Prelu,
    /// ReLU.
    Relu,
}

/// The validation figure that early stopping maximises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    /// Validation AUC (ranking only).
    Auc,
    /// Validation AUC minus validation logloss, FuxiCTR's default monitor.
    /// Also penalises miscalibration: from the second epoch on, CTR models
    /// with large id embeddings tend to memorise the training set (the
    /// "one-epoch phenomenon", Zhang et al., CIKM 2022), and on our data
    /// validation AUC can still creep up while logloss doubles.
    #[default]
    AucMinusLogloss,
}

impl StopMetric {
    /// The figure to maximise, from an epoch's validation AUC and logloss
    /// (logloss alone when AUC is undefined).
    pub fn score(self, auc: Option<f64>, logloss: f64) -> f64 {
        match (self, auc) {
            (StopMetric::Auc, Some(a)) => a,
            (StopMetric::AucMinusLogloss, Some(a)) => a - logloss,
            (_, None) => -logloss,
        }
    }
}

impl std::str::FromStr for StopMetric {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "auc" => Ok(StopMetric::Auc),
            "auc_minus_logloss" => Ok(StopMetric::AucMinusLogloss),
            _ => Err(ModelError::InvalidConfig(format!(
                "unknown stop metric {s:?}; use auc or auc-minus-logloss"
            ))),
        }
    }
}

/// Hyper-parameters of a model and of its training, with defaults close to
/// the DIN and DIEN papers.
///
/// Serialized into every checkpoint's `config.json`; unknown fields are
/// rejected so that a typo in a checked-in config is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Which model.
    pub kind: ModelKind,
    /// Embedding size of every id field (item, category, tag, behavior
    /// type, time gap). The DIN paper uses 18 on Amazon.
    pub embedding_dim: i64,
    /// Hidden layers of the final MLP (the output layer of size 1 is added).
    pub mlp_hidden: Vec<i64>,
    /// Activation of the final MLP's hidden layers.
    pub activation: Activation,
    /// Hidden layers of DIN's local activation unit (PReLU activations; at
    /// least one). The paper's figure 2 has one layer of 36 units.
    pub attention_hidden: Vec<i64>,
    /// Hidden layers of DIEN's auxiliary network (PReLU activations).
    pub aux_hidden: Vec<i64>,
    /// Weight of DIEN's auxiliary loss (the paper's alpha).
    pub aux_loss_weight: f64,
    /// Whether DIEN's final MLP also sees the sum-pooled history item
    /// representation `s` and `target ⊙ s`, as the authors' released code
    /// does (`item_his_eb_sum`, github.com/mouna99/dien; FuxiCTR's
    /// `enable_sum_pooling`). The paper's figure 2 feeds only the final
    /// AUGRU state. Default true; a config file without the field reads
    /// false, which is what checkpoints written before the option existed
    /// were trained with.
    #[serde(default)]
    pub dien_sum_pooling: bool,
    /// Token size of ATRank's and BST's attention layers (inputs are
    /// projected to it); a multiple of `transformer_heads`.
    pub transformer_dim: i64,
    /// Attention heads of ATRank and BST (ATRank's "latent semantic
    /// spaces"; BST uses 8 heads on Taobao's larger embeddings).
    pub transformer_heads: i64,
    /// Self-attention blocks of ATRank and BST (BST found 1 best).
    pub transformer_layers: i64,
    /// Whether item tags take part (pooled like categories).
    pub use_tags: bool,
    /// Ids seen fewer times than this in the training examples map to
    /// the out-of-vocabulary id.
    pub min_count: u32,
    /// Ids seen with fewer distinct users than this in the training
    /// examples map to the out-of-vocabulary id (see
    /// [`crate::VocabBuilder::min_users`]). Default 2: on Taobao (DIN, ubr,
    /// N = 50) it gave the best validation AUC minus logloss of the
    /// thresholds tried (docs/eval/vocab.md), and it is what trains the
    /// OOV row that new items get when serving. On movielens it lowered
    /// DIN `recent` (same page): choose it per dataset on validation.
    pub min_users: u32,
    /// At most this many categories per item are used (the first ones).
    pub max_categories: usize,
    /// At most this many tags per item are used (the first ones).
    pub max_tags: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Adam weight decay (L2), 0 for none.
    pub weight_decay: f64,
    /// Training batch size.
    pub batch_size: usize,
    /// Batch size when scoring (validation, [`crate::TrainedModel::score`]).
    pub eval_batch_size: usize,
    /// Maximum number of epochs: a generous cap (20), early stopping
    /// usually ends training before.
    pub epochs: usize,
    /// Stop after this many epochs without a better `stop_metric` and keep
    /// the best weights; 0 disables early stopping.
    pub patience: usize,
    /// What early stopping and the choice of the kept epoch maximise.
    pub stop_metric: StopMetric,
    /// Seed of weight initialisation, shuffling and negative sampling.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Din,
            embedding_dim: 18,
            mlp_hidden: vec![200, 80],
            activation: Activation::Dice,
            attention_hidden: vec![36],
            aux_hidden: vec![100, 50],
            aux_loss_weight: 1.0,
            dien_sum_pooling: true,
            transformer_dim: 64,
            transformer_heads: 4,
            transformer_layers: 1,
            use_tags: true,
            min_count: 1,
            min_users: 2,
            max_categories: 8,
            max_tags: 8,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 256,
            eval_batch_size: 1024,
            epochs: 20,
            patience: 2,
            stop_metric: StopMetric::AucMinusLogloss,
            seed: 42,
        }
    }
}

impl ModelConfig {
    /// The default configuration of a model kind.
    pub fn new(kind: ModelKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Checks every value; call before building anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::InvalidConfig(msg));
        if self.embedding_dim < 1 {
            return bad(format!(
                "embedding_dim must be >= 1, got {}",
                self.embedding_dim
            ));
        }
        for (name, layers) in [
            ("mlp_hidden", &self.mlp_hidden),
            ("attention_hidden", &self.attention_hidden),
            ("aux_hidden", &self.aux_hidden),
        ] {
            if let Some(w) = layers.iter().find(|&&w| w < 1) {
                return bad(format!("{name} layer sizes must be >= 1, got {w}"));
            }
        }
        if self.transformer_dim < 1
            || self.transformer_heads < 1
            || self.transformer_dim % self.transformer_heads != 0
        {
            return bad(format!(
                "transformer_dim ({}) must be a positive multiple of transformer_heads ({})",
                self.transformer_dim, self.transformer_heads
            ));
        }
        if self.transformer_layers < 1 {
            return bad(format!(
                "transformer_layers must be >= 1, got {}",
                self.transformer_layers
            ));
        }
        if self.attention_hidden.is_empty() {
            return bad("attention_hidden needs at least one layer".to_owned());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(format!(
                "learning_rate must be in (0, 1], got {}",
                self.learning_rate
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(self.aux_loss_weight.is_finite() && self.aux_loss_weight >= 0.0) {
            return bad(format!(
                "aux_loss_weight must be >= 0, got {}",
                self.aux_loss_weight
            ));
        }
        if self.batch_size < 2 {
            return bad(format!("batch_size must be >= 2, got {}", self.batch_size));
        }
        if self.eval_batch_size < 1 {
            return bad("eval_batch_size must be >= 1".to_owned());
        }
        if self.epochs < 1 {
            return bad("epochs must be >= 1".to_owned());
        }
        if self.max_categories < 1 || self.max_tags < 1 {
            return bad("max_categories and max_tags must be >= 1".to_owned());
        }
        Ok(())
    }
}

/// `2 * in * out` floating-point operations of a dense layer.
fn dense(input: i64, output: i64) -> f64 {
    2.0 * input as f64 * output as f64
}

/// Dense-layer operations of an MLP with hidden layers `hidden` and one
/// output.
fn mlp(input: i64, hidden: &[i64]) -> f64 {
    let mut prev = input;
    let mut total = 0.0;
    for &h in hidden {
        total += dense(prev, h);
        prev = h;
    }
    total + dense(prev, 1)
}

impl ModelConfig {
    /// Floating-point operations of one forward pass (inference) of one
    /// sample whose history has `n` behaviors, estimated analytically:
    /// `2 * in * out` per dense layer and per matrix product as the models
    /// compute them, embedding look-ups and element-wise operations left
    /// out (they are a few percent). `behavior_types` is the number of rows
    /// of the behavior-type table (ATRank projects into every type space);
    /// it does not change the other models.
    pub fn flops_per_sample(&self, n: usize, behavior_types: i64) -> f64 {
        let d = self.embedding_dim;
        let di = d * if self.use_tags { 3 } else { 2 };
        let dc = 2 * d;
        let db = di + dc;
        let n = n as f64;
        let dm = self.transformer_dim;
        // One self-attention block over `l` tokens of size dm.
        let block = |l: f64| {
            l * (4.0 * dense(dm, dm) + dense(dm, 4 * dm) + dense(4 * dm, dm))
                + 2.0 * 2.0 * l * l * dm as f64
        };
        let layers = self.transformer_layers as f64;
        match self.kind {
            ModelKind::SumPool => mlp(db + di, &self.mlp_hidden),
            ModelKind::Din => {
                let (first, rest) = self
                    .attention_hidden
                    .split_first()
                    .map_or((1, &[][..]), |(f, r)| (*f, r));
                // The per-target matrix and the query term, once.
                let per_target = dense(di, first) * 2.0;
                let per_behavior =
                    dense(di, first) + dense(dc, first) + mlp(first, rest) + 2.0 * db as f64;
                per_target + n * per_behavior + mlp(db + di, &self.mlp_hidden)
            }
            ModelKind::Dien => {
                let h = db;
                let gru = dense(h, 3 * h) + dense(h, 3 * h);
                let pooled = if self.dien_sum_pooling { 2 * di } else { 0 };
                dense(di, h)
                    + n * (2.0 * gru + 2.0 * h as f64)
                    + mlp(h + di + pooled, &self.mlp_hidden)
            }
            ModelKind::Atrank => {
                let projection = n * dense(di + d, behavior_types.max(1) * dm);
                let target_attention = dense(di, dm)
                    + n * 2.0 * dense(dm, dm)
                    + 2.0 * 2.0 * n * dm as f64
                    + dense(dm, dm);
                projection + layers * block(n) + target_attention + mlp(dm + di, &self.mlp_hidden)
            }
            ModelKind::Bst => {
                let tokens = n + 1.0;
                tokens * dense(db, dm) + layers * block(tokens) + mlp(2 * dm + di, &self.mlp_hidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_rejects_typos() {
        let cfg = ModelConfig::new(ModelKind::Dien);
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"kind\":\"dien\""));
        let back: ModelConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        let partial: ModelConfig = serde_json::from_str(r#"{"kind":"sum_pool"}"#).unwrap();
        assert_eq!(partial.kind, ModelKind::SumPool);
        assert_eq!(partial.embedding_dim, 18);
        // Checkpoints from before the option existed keep their architecture.
        assert!(!partial.dien_sum_pooling);
        assert!(ModelConfig::new(ModelKind::Dien).dien_sum_pooling);
        assert!(serde_json::from_str::<ModelConfig>(r#"{"embeding_dim":4}"#).is_err());
        assert_eq!("sum-pool".parse::<ModelKind>().unwrap(), ModelKind::SumPool);
        assert_eq!(
            "auc-minus-logloss".parse::<StopMetric>().unwrap(),
            StopMetric::AucMinusLogloss
        );
        assert_eq!("AUC".parse::<StopMetric>().unwrap(), StopMetric::Auc);
        assert!("logloss".parse::<StopMetric>().is_err());
        let bad = ModelConfig {
            learning_rate: 0.0,
            ..ModelConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ModelConfig {
            transformer_dim: 30,
            transformer_heads: 4,
            ..ModelConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("multiple of transformer_heads"), "{err}");
    }

    #[test]
    fn flops_grow_with_n_as_each_model_computes() {
        // DIN by hand at the defaults (d = 18, tags on: di = 54, dc = 36,
        // attention [36], mlp [200, 80]).
        let din = ModelConfig::new(ModelKind::Din);
        let (di, dc, db) = (54.0, 36.0, 90.0);
        let per_behavior = 2.0 * di * 36.0 + 2.0 * dc * 36.0 + 2.0 * 36.0 + 2.0 * db;
        let head =
            2.0 * 2.0 * di * 36.0 + 2.0 * (db + di) * 200.0 + 2.0 * 200.0 * 80.0 + 2.0 * 80.0;
        let got = din.flops_per_sample(50, 6);
        assert!((got - (head + 50.0 * per_behavior)).abs() < 1e-6, "{got}");
        for kind in ModelKind::ALL {
            let cfg = ModelConfig::new(kind);
            let (a, b, c) = (
                cfg.flops_per_sample(20, 6),
                cfg.flops_per_sample(50, 6),
                cfg.flops_per_sample(1000, 6),
            );
            assert!(a > 0.0, "{kind}");
            if kind == ModelKind::SumPool {
                assert_eq!(a, c, "sum pooling's dense layers do not depend on N");
            } else {
                assert!(a < b && b < c, "{kind}: {a} {b} {c}");
            }
        }
    }
}
