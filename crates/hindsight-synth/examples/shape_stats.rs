//! Prints, for each [`SynthShape`], the statistics that define it, on users
//! of 1k, 10k and 50k behaviors of the benchmark mix:
//!
//! cargo run --release -p hindsight-synth --example shape_stats

use std::collections::{HashMap, HashSet};

use hindsight_synth::{SynthConfig, SynthLog, SynthShape};

fn main() {
    println!("| shape | history | new-item share | distinct items | categories touched | median matches / category | top category share |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for shape in SynthShape::ALL {
        let cfg = SynthConfig::bench_10m_shaped(shape);
        // bench_10m: users 1..=100 have 50k, 101..=400 10k, 401..=2400 1k.
        for (user, len) in [(2400u64, 1_000usize), (400, 10_000), (100, 50_000)] {
            let rows: Vec<_> = SynthLog::for_users(&cfg, user..user + 1).collect();
            assert_eq!(rows.len(), len);
            let mut seen = HashSet::new();
            let new = rows.iter().filter(|r| seen.insert(r.item_id)).count();
            let mut per: HashMap<u64, usize> = HashMap::new();
            for r in &rows {
                *per.entry(r.category_id).or_default() += 1;
            }
            let mut counts: Vec<usize> = per.into_values().collect();
            counts.sort_unstable();
            println!(
                "| {shape} | {len} | {:.3} | {} | {} | {} | {:.3} |",
                new as f64 / len as f64,
                seen.len(),
                counts.len(),
                counts[counts.len() / 2],
                *counts.last().unwrap() as f64 / len as f64
            );
        }
    }
}
