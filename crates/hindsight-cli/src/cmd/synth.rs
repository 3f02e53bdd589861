//! `hindsight synth`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hindsight_synth::{write_csv, SynthConfig, SynthShape};

/// Write a seeded synthetic log in the Taobao CSV format
/// (user_id,item_id,category_id,behavior_type,timestamp; no header).
#[derive(clap::Args)]
pub struct Args {
    /// Output file (`-` for stdout).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of behaviors (a Taobao-like mix of 1k, 10k and 50k users).
    #[arg(long, conflicts_with = "bench_10m")]
    pub behaviors: Option<u64>,
    /// The benchmark log: 100 users x 50k + 300 x 10k + 2000 x 1k = 10M behaviors.
    #[arg(long)]
    pub bench_10m: bool,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Shape of the log: taobao-like (dense preferred categories, one item
    /// per 10 behaviors), big-catalog (>= 5M items and growing, >= 80% of
    /// behaviors on items new to the user), sparse-categories (hundreds of
    /// categories per user, 10-100 matches per (user, category) at 50k),
    /// dense (one category >= 20% of each history).
    #[arg(long, default_value = "taobao-like")]
    pub shape: SynthShape,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = match (a.behaviors, a.bench_10m) {
        (_, true) => SynthConfig::bench_10m_shaped(a.shape),
        (Some(n), false) if n > 0 => SynthConfig::shaped(a.shape, n),
        _ => bail!("give --behaviors N (N > 0) or --bench-10m"),
    }
    .with_seed(a.seed);
    let rows = if a.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let n = write_csv(&cfg, &mut w)?;
        w.flush()?;
        n
    } else {
        let f = std::fs::File::create(&a.out)
            .with_context(|| format!("creating {}", a.out.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let n = write_csv(&cfg, &mut w)?;
        w.flush()?;
        n
    };
    eprintln!("wrote {rows} behaviors to {}", a.out.display());
    Ok(())
}
