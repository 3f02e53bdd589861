//! The subcommands.

pub mod export;
pub mod info;
pub mod ingest;
pub mod loadtest;
pub mod mapping;
pub mod report;
pub mod retrieve;
pub mod serve;
pub mod synth;
pub mod train;

/// The retrieval options shared by the commands that retrieve.
#[derive(clap::Args)]
pub struct RetrievalArgs {
    /// Retrieval strategy: recent, sim-hard, ubr, hybrid.
    #[arg(long, default_value = "ubr")]
    pub strategy: String,
    /// Budget: at most N behaviors retrieved per target.
    #[arg(short = 'n', long = "n", default_value_t = 50)]
    pub n: usize,
}

impl RetrievalArgs {
    /// The checked strategy and N.
    pub fn parse(&self) -> anyhow::Result<(hindsight_retrieval::StrategyKind, usize)> {
        let kind = self.strategy.parse()?;
        anyhow::ensure!(self.n > 0, "-n must be at least 1");
        Ok((kind, self.n))
    }
}

/// Prints a value as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
