//! Writes a synthetic Taobao-shaped log to stdout as CSV.
//!
//! `cargo run --release -p hindsight-synth --example synth_csv -- [total_behaviors] [seed] > log.csv`
//! (defaults: `SynthConfig::bench_10m()`, seed 42).

use hindsight_synth::{write_csv, SynthConfig};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut cfg = match args.next() {
        Some(n) => SynthConfig::taobao_like(n.parse().expect("a row count")),
        None => SynthConfig::bench_10m(),
    };
    if let Some(seed) = args.next() {
        cfg.seed = seed.parse().expect("a u64 seed");
    }
    let rows = write_csv(&cfg, std::io::stdout().lock())?;
    eprintln!("{rows} rows");
    Ok(())
}
