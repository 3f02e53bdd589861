//! The CTR models and the trait they share.
//!
//! All the models embed features the same way (see [`Batch`] and the
//! item / behavior representations below) and differ in how they turn the
//! history into a user-interest vector:
//!
//! * an **item representation** is `[item emb, mean category emb, (mean tag
//!   emb)]`, the same tables for the target and for history items;
//! * a **behavior representation** is the item representation followed by
//!   the behavior's context `[behavior type emb, time-gap bucket emb]`;
//! * [`SumPool`] averages the behavior representations;
//! * [`Din`] weights each behavior by a local activation unit fed with the
//!   target (query) and the behavior's item representation (key) and
//!   context, and sums;
//! * [`Dien`] runs a GRU over the chronological behaviors, trains it with an
//!   auxiliary next-behavior loss, and evolves the interest towards the
//!   target with an attention-gated GRU (AUGRU);
//! * [`Atrank`] projects each behavior (with its time gap) into its
//!   behavior type's space, self-attends, then attends by the target;
//! * [`Bst`] runs a Transformer over the behaviors and the target, with
//!   the time gap as position.
//!
//! Each model ends in an MLP over `[user interest, target item
//! representation]` that outputs one logit.
//!
//! # Adding a model
//!
//! One new file here with a type implementing [`CtrModel`] and an inherent
//! `fn new(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) ->
//! Self` (its `kind()` returns its new [`ModelKind`] variant), plus one
//! line in the `registry!` call below: [`ModelKind`], its names (the
//! `kind` of `config.json`), parsing, `Display` and [`build_model`] all
//! come from that line.

use tch::{nn, Tensor};

use crate::batch::Batch;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::vocab::FeatureVocab;

/// Declares the model modules and generates [`ModelKind`] and
/// [`build_model`] from one line per model:
/// `Variant = "name" | "alias"... => module::Type,` (names in snake_case;
/// parsing also accepts `-` for `_` and any case).
macro_rules! registry {
    ($( $(#[$meta:meta])* $variant:ident = $name:literal $(| $alias:literal)* => $module:ident :: $ty:ident ),+ $(,)?) => {
        $( mod $module; pub use $module::$ty; )+

        /// Which CTR model to build (one line each in the registry of `models/mod.rs`).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub enum ModelKind {
            $( $(#[$meta])* $variant, )+
        }

        impl ModelKind {
            /// All models, in registry order.
            pub const ALL: [ModelKind; 0 $(+ registry!(@one $variant))+] = [$(ModelKind::$variant),+];

            /// Their names, in registry order.
            pub const NAMES: [&'static str; 0 $(+ registry!(@one $variant))+] = [$($name),+];

            /// Their names, comma-separated (for help texts and errors).
            pub const HELP: &'static str = registry!(@join $($name),+);

            /// The name used in configs and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $(ModelKind::$variant => $name,)+ }
            }

            /// The model named `s` (a name or an alias, after trimming,
            /// lowercasing and reading `-` as `_`).
            fn from_name(s: &str) -> Option<ModelKind> {
                match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                    $( $name $(| $alias)* => Some(ModelKind::$variant), )+
                    _ => None,
                }
            }
        }

        /// Builds the model `cfg.kind` with its parameters under `p`.
        pub fn build_model(p: &nn::Path<'_>, cfg: &ModelConfig, vocab: &FeatureVocab) -> Box<dyn CtrModel> {
            match cfg.kind {
                $( ModelKind::$variant => Box::new(<$ty>::new(p, cfg, vocab)), )+
            }
        }
    };
    (@one $x:ident) => { 1usize };
    (@join $first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

registry! {
    /// Embedding&MLP baseline: mean of the history embeddings, concatenated
    /// with the target, into an MLP.
    SumPool = "sum_pool" | "sumpool" => sum_pool::SumPool,
    /// Deep Interest Network (Zhou et al., KDD 2018).
    #[default]
    Din = "din" => din::Din,
    /// Deep Interest Evolution Network (Zhou et al., AAAI 2019).
    Dien = "dien" => dien::Dien,
    /// ATRank (Zhou et al., AAAI 2018).
    Atrank = "atrank" => atrank::Atrank,
    /// Behavior Sequence Transformer (Chen et al., DLP-KDD 2019).
    Bst = "bst" => bst::Bst,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        ModelKind::from_name(s).ok_or_else(|| {
            ModelError::InvalidConfig(format!(
                "unknown model kind {s:?}; use one of {}",
                ModelKind::HELP
            ))
        })
    }
}

// The serde form (the `kind` of a checkpoint's config.json) is exactly the
// name: older checkpoints load unchanged, and aliases are for people only.
impl serde::Serialize for ModelKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ModelKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ModelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, &ModelKind::NAMES))
    }
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ModelOutput {
    /// One logit per example, `[B]`.
    pub logits: Tensor,
    /// The model's auxiliary loss (a scalar), when it has one and the batch
    /// carries what it needs (DIEN with [`Batch::sample_negatives`]).
    pub aux_loss: Option<Tensor>,
}

/// A CTR model: a batch in, one click logit per example out.
///
/// The extension point of the crate: a new model implements this trait and
/// registers its parameters under the [`nn::Path`] it is built with.
pub trait CtrModel: Send + std::fmt::Debug {
    /// Which model this is.
    fn kind(&self) -> ModelKind;

    /// The forward pass. `train` selects batch statistics in Dice and the
    /// auxiliary loss (when the batch has negatives).
    fn forward_t(&self, batch: &Batch, train: bool) -> ModelOutput;

    /// Logits `[B]` of a forward pass.
    fn forward(&self, batch: &Batch, train: bool) -> Tensor {
        self.forward_t(batch, train).logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_display_and_serialize_from_the_registry() {
        assert_eq!(ModelKind::HELP, "sum_pool, din, dien, atrank, bst");
        assert_eq!(ModelKind::default(), ModelKind::Din);
        for k in ModelKind::ALL {
            assert_eq!(k.as_str().parse::<ModelKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.as_str());
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ModelKind>(&json).unwrap(), k);
        }
        for alias in ["sumpool", "Sum-Pool", " SUM_POOL "] {
            assert_eq!(alias.parse::<ModelKind>().unwrap(), ModelKind::SumPool);
        }
        // Checkpoints hold the exact name.
        assert!(serde_json::from_str::<ModelKind>("\"sumpool\"").is_err());
        let err = "sasrec_ctr".parse::<ModelKind>().unwrap_err().to_string();
        assert!(err.contains("sum_pool, din, dien, atrank, bst"), "{err}");
    }
}
