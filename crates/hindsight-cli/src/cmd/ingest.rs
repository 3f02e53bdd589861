//! `hindsight ingest`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions, IngestProgress};
use hindsight_logs::{DatasetMapping, PRESETS};
use indicatif::{ProgressBar, ProgressStyle};

/// Build or extend an index from a behavior log.
///
/// Re-running the same ingest adds nothing twice (behaviors are identified
/// by user, item, type, timestamp and occurrence), so an interrupted
/// ingest is resumed by running it again. Malformed rows are counted,
/// reported with their line numbers and skipped (or stop the run with
/// --strict).
#[derive(clap::Args)]
pub struct Args {
    /// The log: a file, or a folder for presets that join item tables
    /// (movielens: the folder holding ratings.csv, movies.csv, tags.csv).
    pub input: PathBuf,
    /// Index folder to create or extend.
    #[arg(long)]
    pub index: PathBuf,
    /// A built-in dataset mapping (taobao, movielens).
    #[arg(long, conflicts_with = "mapping", required_unless_present = "mapping")]
    pub preset: Option<String>,
    /// A dataset mapping as a JSON file (see `hindsight_logs::DatasetMapping`).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Stop at the first malformed row.
    #[arg(long)]
    pub strict: bool,
    /// Commit after about this many behaviors.
    #[arg(long, default_value_t = 1_000_000)]
    pub commit_every: u64,
    /// Rows sorted in memory before spilling a sorted run to disk.
    #[arg(long, default_value_t = 4 << 20)]
    pub sort_buffer: usize,
    /// Indexing memory budget in MiB.
    #[arg(long, default_value_t = 256)]
    pub writer_memory_mb: usize,
    /// Folder for spill files (default: the system temporary folder).
    #[arg(long)]
    pub tmp_dir: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mapping = match (&a.preset, &a.mapping) {
        (Some(p), _) => DatasetMapping::preset(p)
            .with_context(|| format!("known presets: {}", PRESETS.join(", ")))?,
        (None, Some(path)) => DatasetMapping::load(path)?,
        (None, None) => bail!("give --preset or --mapping"),
    };
    if a.writer_memory_mb < 16 {
        bail!("--writer-memory-mb must be at least 16");
    }
    if a.sort_buffer == 0 || a.commit_every == 0 {
        bail!("--sort-buffer and --commit-every must be positive");
    }
    let index = BehaviorIndex::open_or_create(&a.index, &mapping)
        .with_context(|| format!("opening index {}", a.index.display()))?;
    let opts = IngestOptions {
        strict: a.strict,
        commit_every: a.commit_every,
        sort_buffer: a.sort_buffer,
        writer_memory: a.writer_memory_mb << 20,
        tmp_dir: a.tmp_dir.clone(),
        ..IngestOptions::default()
    };
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {percent:>3}% {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("read");
    let mut on_progress = |p: &IngestProgress| match p.phase {
        hindsight_index::Phase::Read => {
            bar.set_length(p.total_bytes.max(1));
            bar.set_position(p.bytes_read);
        }
        hindsight_index::Phase::Index => {
            if bar.message() != "index" {
                bar.set_message("index");
                bar.set_length(p.behaviors_total.max(1));
                bar.reset_eta();
            }
            bar.set_position(p.behaviors_done);
        }
    };
    let report = ingest(&index, &mapping, &a.input, &opts, &mut on_progress)?;
    bar.finish_and_clear();
    if a.json {
        return super::print_json(&report);
    }
    println!(
        "ingested {}: {} rows read, {} behaviors indexed, {} rejected, {} already indexed",
        report.source,
        report.rows_read,
        report.behaviors_indexed,
        report.rejected_rows,
        report.duplicates_skipped
    );
    for r in &report.rejected_examples {
        println!("  rejected line {}: {}", r.line, r.message);
    }
    if report.rejected_rows > report.rejected_examples.len() as u64 {
        println!(
            "  ... and {} more",
            report.rejected_rows - report.rejected_examples.len() as u64
        );
    }
    println!(
        "{} users, {} items in the input; {:.2} s, {:.0} behaviors/s; index now holds {} behaviors",
        report.users,
        report.items,
        report.elapsed_secs,
        report.behaviors_per_sec,
        report.index_behaviors
    );
    Ok(())
}
