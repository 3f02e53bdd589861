//! `hindsight export-samples`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use hindsight_index::BehaviorIndex;
use hindsight_retrieval::Retriever;
use hindsight_samples::{build_samples, export, retrieve_histories, ExportMeta};

/// Export the evaluation-protocol samples with their retrieved histories.
///
/// Builds every sample of the evaluation protocol (docs/evaluation-protocol.md:
/// positives from seq >= 20, one popularity-sampled negative each that the
/// user never touched before (v2), seed 42, per-user chronological split),
/// retrieves each one's history as of its target with the strategy, and
/// writes train.csv, valid.csv, test.csv and meta.json (layout inside) for
/// peer libraries.
#[derive(clap::Args)]
pub struct Args {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    #[command(flatten)]
    pub retrieval: super::RetrievalArgs,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the negative sampler.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub protocol: super::ProtocolArgs,
    /// Retrieval threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (kind, n) = (a.retrieval.strategy, a.retrieval.n);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    // Retrieval reads every sample's behaviors: decode them once.
    index.keep_rows_warm();
    let snap = index.snapshot();
    let protocol = a.protocol.protocol(a.seed)?;
    let t0 = Instant::now();
    let (samples, counts) = build_samples(&snap, &protocol)?;
    let retriever = Retriever::for_index(kind, &index)?;
    let histories = retrieve_histories(&snap, &samples, &retriever, n, a.threads)?;
    let meta = ExportMeta {
        strategy: kind.as_str().to_owned(),
        n,
        protocol,
        counts: counts.clone(),
        index: a.index.display().to_string(),
        layout: String::new(),
    };
    export(&a.out, &samples, &histories, meta)?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        return super::print_json(&serde_json::json!({
            "out": a.out, "strategy": kind.as_str(), "n": n, "counts": counts, "elapsed_secs": secs,
        }));
    }
    println!(
        "exported {} samples ({} positives; train {}, valid {}, test {}) with {} N={} histories to {} in {:.1} s",
        samples.len(), counts.positives, counts.train, counts.valid, counts.test, kind, n, a.out.display(), secs
    );
    Ok(())
}
