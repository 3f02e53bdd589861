//! The subcommands.

pub mod embeddings;
pub mod export;
pub mod export_recall;
pub mod info;
pub mod ingest;
pub mod mapping;
#[cfg(feature = "model")]
pub mod recall;
#[cfg(feature = "model")]
pub mod report;
pub mod retrieve;
#[cfg(feature = "model")]
pub mod serve;
pub mod synth;
#[cfg(feature = "model")]
pub mod train;
#[cfg(feature = "model")]
pub mod train_recall;

use hindsight_retrieval::StrategyKind;
use hindsight_samples::{Negatives, Protocol, PROTOCOL_VERSION};

/// The evaluation protocol's options (docs/evaluation-protocol.md), shared
/// by the commands that build samples.
#[derive(clap::Args, Clone, Debug)]
pub struct ProtocolArgs {
    /// Protocol version: 2 (negatives are never an item the user touched
    /// before the target) or 1 (negatives only differ from the positive,
    /// as in the reports made before v2).
    #[arg(long = "protocol", default_value_t = PROTOCOL_VERSION,
          value_parser = clap::value_parser!(u32).range(1..=PROTOCOL_VERSION as i64))]
    pub protocol_version: u32,
    /// How negatives are drawn: popularity (the main protocol) or
    /// same-category (the hard-negative variant, protocol 2 only); for
    /// `train --model sasrec`, a count: K of the sampled softmax (default 128).
    #[arg(long, default_value = "popularity")]
    pub negatives: NegativesArg,
}

/// `--negatives`: a CTR protocol sampler, or the number of sampled
/// negatives of `train --model sasrec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegativesArg {
    /// popularity or same-category.
    Sampler(Negatives),
    /// A count (SASRec's K).
    Count(usize),
}

impl std::str::FromStr for NegativesArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<usize>() {
            Ok(k) => Ok(NegativesArg::Count(k)),
            Err(_) => s
                .parse::<Negatives>()
                .map(NegativesArg::Sampler)
                .map_err(|e| format!("{e}; or a count of negatives for --model sasrec")),
        }
    }
}

impl ProtocolArgs {
    /// The protocol with the negative sampler's `seed` (the protocol fixes
    /// it at 42).
    pub fn protocol(&self, seed: u64) -> anyhow::Result<Protocol> {
        let negatives = match self.negatives {
            NegativesArg::Sampler(n) => n,
            NegativesArg::Count(k) => anyhow::bail!(
                "--negatives {k} is a count, which only `train --model sasrec` takes; \
                 the CTR protocol's negatives are popularity or same-category"
            ),
        };
        if self.protocol_version == 1 && negatives != Negatives::Popularity {
            anyhow::bail!(
                "--negatives {} needs --protocol 2 (protocol 1 only has popularity negatives)",
                negatives.as_str()
            );
        }
        Ok(Protocol {
            version: self.protocol_version,
            negatives,
            seed,
            ..Protocol::default()
        })
    }
}

/// The retrieval options shared by the commands that retrieve.
#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// Retrieval strategy: recent, sim-hard, ubr, hybrid, sim-soft, eta,
    /// sdim (the last three rank by item embeddings: attach them first with
    /// `hindsight embeddings attach`).
    #[arg(long, default_value = "ubr")]
    pub strategy: StrategyKind,
    /// Budget: at most N behaviors retrieved per target.
    #[arg(short = 'n', long = "n", default_value_t = 50, value_parser = at_least_one)]
    pub n: usize,
}

/// Parses a count that must be at least 1 (clap value parser).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a count ({e})")),
    }
}

/// Prints a value as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The arguments of a model command in a build without the `model`
/// feature: anything is accepted (`--help` included), so that the command
/// can say what is missing instead of clap's "unrecognized subcommand".
#[cfg(not(feature = "model"))]
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct NoModel {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<std::ffi::OsString>,
}

/// The one line a model command prints in a build without the `model`
/// feature.
#[cfg(any(test, not(feature = "model")))]
pub fn no_model_message(command: &str) -> String {
    format!(
        "error: `hindsight {command}` needs libtorch, and this binary was built without the \
         `model` feature; rebuild it with `cargo build --release -p hindsight-cli --features model` \
         (libtorch set up by `source scripts/env.sh`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_be_at_least_one() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").unwrap_err().contains("at least 1"));
        assert!(at_least_one("-1").is_err());
        assert!(at_least_one("x").is_err());
    }

    #[test]
    fn the_no_model_message_names_the_command_and_the_build() {
        let m = no_model_message("train");
        assert!(m.contains("`hindsight train`"), "{m}");
        assert!(m.contains("cargo build --release -p hindsight-cli --features model"));
        assert!(!m.contains('\n'));
    }
}
