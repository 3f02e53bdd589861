//! The subcommands.

pub mod export;
pub mod info;
pub mod ingest;
pub mod loadtest;
pub mod report;
pub mod retrieve;
pub mod serve;
pub mod synth;
pub mod train;

/// Prints a value as one line of JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
