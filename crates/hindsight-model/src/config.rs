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
    /// Maximum number of epochs.
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
            use_tags: true,
            min_count: 1,
            min_users: 2,
            max_categories: 8,
            max_tags: 8,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 256,
            eval_batch_size: 1024,
            epochs: 5,
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
    }
}
