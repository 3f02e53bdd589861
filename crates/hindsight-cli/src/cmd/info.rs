//! `hindsight index info`.

use std::path::PathBuf;

use anyhow::Result;
use hindsight_index::BehaviorIndex;
use serde_json::json;

/// Show an index's manifest, counts, vocabularies and ingest history.
#[derive(clap::Args)]
pub struct Args {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(a: Args) -> Result<()> {
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let snap = index.snapshot();
    let stats = snap.stats();
    let state = snap.state();
    let m = index.manifest();
    let bytes = dir_size(&a.index);
    if a.json {
        return super::print_json(&json!({
            "path": a.index,
            "format": m.format,
            "schema_version": m.schema_version,
            "mapping": m.mapping_name,
            "created_at": m.created_at,
            "behaviors": stats.behaviors,
            "users": stats.users,
            "items": stats.items,
            "max_history": stats.max_history,
            "segments": stats.segments,
            "disk_bytes": bytes,
            "ts_monotonic": state.ts_monotonic,
            "avg_feature_keys": state.avg_keys(),
            "behavior_types": state.vocabs.behavior_types.names(),
            "categories_vocab": state.vocabs.categories.len(),
            "tags_vocab": state.vocabs.tags.len(),
            "ingests": state.ingests,
        }));
    }
    println!(
        "index {} (schema v{}, mapping {})",
        a.index.display(),
        m.schema_version,
        m.mapping_name
    );
    println!(
        "  {} behaviors, {} users, {} items; longest history {}",
        stats.behaviors, stats.users, stats.items, stats.max_history
    );
    let per_behavior = if stats.behaviors == 0 {
        "no behaviors yet".to_owned()
    } else {
        format!(
            "{:.1} bytes/behavior",
            bytes as f64 / stats.behaviors as f64
        )
    };
    println!(
        "  {} segments {:?}, {:.1} MiB on disk ({per_behavior})",
        stats.segments.len(),
        stats.segments,
        bytes as f64 / (1 << 20) as f64,
    );
    println!(
        "  behavior types: {}; {} named categories; {} tags; timestamps monotonic per user: {}",
        state.vocabs.behavior_types.names().join(", "),
        state.vocabs.categories.len(),
        state.vocabs.tags.len(),
        state.ts_monotonic
    );
    for r in &state.ingests {
        println!(
            "  ingest {} at {}: {} rows, {} indexed, {} rejected, {} duplicates{}",
            r.source,
            r.started_at,
            r.rows_read,
            r.behaviors_indexed,
            r.rejected_rows,
            r.duplicates_skipped,
            if r.complete { "" } else { " (interrupted)" }
        );
    }
    Ok(())
}
