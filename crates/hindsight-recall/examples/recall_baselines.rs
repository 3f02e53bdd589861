//! The recall baselines (popularity, item-to-item CF, repeat) on an index,
//! full ranking over the whole catalog, with and without masking seen
//! items (docs/recall.md):
//!
//!     cargo run --release -p hindsight-recall --example recall_baselines -- \
//!         --index index/taobao [--target test] [--json]
//!
//! Prints one Markdown table row per (baseline, masking): HR@10/50,
//! NDCG@10/50, Recall@100, the new-item subset's HR@50, users/s. The
//! baselines are deterministic (no seed), so there is no spread to report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use hindsight_index::BehaviorIndex;
use hindsight_recall::{
    evaluate_parallel, CatalogScorer, EvalOptions, ItemCf, ItemCfParams, Popularity, RecallSplit,
    Repeat, Target, TieRule,
};

#[derive(Parser)]
#[command(about = "Full-ranking recall baselines on an index")]
struct Args {
    /// Index folder.
    #[arg(long)]
    index: PathBuf,
    /// valid or test.
    #[arg(long, default_value = "test")]
    target: Target,
    /// Tie rule: average or pessimistic.
    #[arg(long, default_value = "average")]
    ties: TieRule,
    /// Users with fewer behaviors are left out.
    #[arg(long, default_value_t = 3)]
    min_behaviors: usize,
    /// Item-CF seeds (most recent distinct items).
    #[arg(long, default_value_t = 20)]
    seeds: usize,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// One JSON report per line instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let t = Instant::now();
    let split = RecallSplit::leave_last_out(&index.snapshot(), a.min_behaviors)?;
    let split_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cf = ItemCf::new(
        &split,
        ItemCfParams {
            seeds: a.seeds,
            ..ItemCfParams::default()
        },
    )?;
    let cf_s = t.elapsed().as_secs_f64();
    let scorers: Vec<Box<dyn CatalogScorer + Sync>> = vec![
        Box::new(Popularity::new(&split)),
        Box::new(cf),
        Box::new(Repeat::new(&split)),
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if !a.json {
        println!(
            "{}: {} users ({} left out), catalog {} items, {} training behaviors; split {:.2} s, item-cf table {:.2} s; target {}, ties {}; load average {}",
            a.index.display(),
            split.users.len(),
            split.skipped_users,
            split.catalog.len(),
            split.train_len(),
            split_s,
            cf_s,
            a.target.as_str(),
            a.ties.as_str(),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        println!("| baseline | seen masked | HR@10 | HR@50 | NDCG@10 | NDCG@50 | Recall@100 | new-item users | new-item HR@50 | users/s |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
    }
    for s in &scorers {
        for exclude_seen in [false, true] {
            let o = EvalOptions {
                exclude_seen,
                ties: a.ties,
                threads: a.threads,
                ..EvalOptions::default()
            };
            let r = evaluate_parallel(&split, a.target, s.as_ref(), &o, |_| {})?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
                continue;
            }
            let m = |k: usize| r.at(k).expect("default cut-offs");
            let new50 = r
                .new_item_metrics
                .iter()
                .find(|m| m.k == 50)
                .map_or(0.0, |m| m.hr);
            println!(
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.4} | {:.0} |",
                r.scorer,
                if exclude_seen { "yes" } else { "no" },
                m(10).hr,
                m(50).hr,
                m(10).ndcg,
                m(50).ndcg,
                m(100).recall,
                r.new_item_users,
                new50,
                r.users_per_second
            );
        }
    }
    Ok(())
}
