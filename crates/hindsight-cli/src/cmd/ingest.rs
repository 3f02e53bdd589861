//! `hindsight ingest`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hindsight_index::{
    ingest, manifest::MANIFEST_FILE, BehaviorIndex, IngestOptions, IngestProgress,
};
use hindsight_logs::{check_source, DatasetMapping, PRESETS};
use indicatif::{ProgressBar, ProgressStyle};

/// Build or extend an index from a behavior log.
///
/// Re-running the same ingest adds nothing twice (behaviors are identified
/// by user, item, type, timestamp and occurrence), so an interrupted
/// ingest is resumed by running it again. Malformed rows are counted,
/// reported with their line numbers and skipped (or stop the run with
/// --strict); so are rows the index cannot hold (user ids >= 2^40,
/// timestamps before 1970 or after 9999, too many categories or tags).
///
/// The first 1,000 rows are tried before anything is created: when none of
/// them parses (a wrong delimiter, column or unit), the command stops with
/// the reasons and leaves no index folder behind. The mapping format is
/// described in docs/mapping.md; `hindsight mapping init` writes a starting
/// point and `hindsight mapping check` tries one.
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
    /// A dataset mapping as a JSON file (docs/mapping.md; `hindsight mapping
    /// init --from LOG` writes a starting point, `hindsight mapping schema`
    /// prints its JSON schema).
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
    /// tantivy indexing threads; each user's behaviors go to one of them
    /// whole (default: the available cores, at most 4; fewer when
    /// --writer-memory-mb gives a thread under 16 MiB).
    #[arg(long)]
    pub indexing_threads: Option<usize>,
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
    if a.indexing_threads == Some(0) {
        bail!("--indexing-threads must be at least 1");
    }
    // Nothing is created before the mapping is known to fit: an existing
    // index must have been built with it, and the first rows must parse.
    let existing = a.index.join(MANIFEST_FILE).exists();
    let opened = if existing {
        let index = BehaviorIndex::open(&a.index)
            .with_context(|| format!("opening index {}", a.index.display()))?;
        index.check_mapping(&mapping)?;
        Some(index)
    } else {
        None
    };
    let probe = check_source(&mapping, &a.input, PREFLIGHT_ROWS, 3)?;
    if probe.nothing_parses() {
        bail!(
            "{}; nothing was written",
            super::mapping::nothing_parses(&probe, &a.input)
        );
    }
    if a.strict {
        if let Some(e) = probe
            .rejects
            .iter()
            .flat_map(|r| &r.examples)
            .min_by_key(|e| e.line)
        {
            bail!(
                "line {}: {} (run without --strict to skip and count malformed rows); nothing was written",
                e.line,
                e.message
            );
        }
    }
    for w in &probe.warnings {
        eprintln!("warning: {w}");
    }
    let index = match opened {
        Some(index) => index,
        None => BehaviorIndex::create(&a.index, &mapping)
            .with_context(|| format!("creating index {}", a.index.display()))?,
    };
    let opts = IngestOptions {
        strict: a.strict,
        commit_every: a.commit_every,
        sort_buffer: a.sort_buffer,
        writer_memory: a.writer_memory_mb << 20,
        tmp_dir: a.tmp_dir.clone(),
        indexing_threads: a
            .indexing_threads
            .unwrap_or_else(hindsight_index::default_indexing_threads),
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
    let result = ingest(&index, &mapping, &a.input, &opts, &mut on_progress);
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            remove_if_new_and_empty(existing, index)?;
            return Err(e.into());
        }
    };
    if report.rows_read > 0 && report.rejected_rows == report.rows_read {
        let examples: Vec<String> = report
            .rejected_examples
            .iter()
            .take(3)
            .map(|r| format!("line {}: {}", r.line, r.message))
            .collect();
        remove_if_new_and_empty(existing, index)?;
        bail!(
            "all {} rows of {} were rejected ({}); fix the mapping (docs/mapping.md, `hindsight mapping check`)",
            report.rows_read,
            report.source,
            examples.join("; ")
        );
    }
    if a.json {
        return super::print_json(&report);
    }
    // The pre-flight already printed the warnings of opening the source.
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

/// Rows tried before anything is created.
const PREFLIGHT_ROWS: u64 = 1000;

/// Removes an index this run created when it holds nothing, so that a
/// failed run leaves no folder behind.
fn remove_if_new_and_empty(existed: bool, index: BehaviorIndex) -> Result<()> {
    let behaviors = index.refresh().map_or(1, |s| s.state().behaviors);
    if existed || behaviors > 0 {
        return Ok(());
    }
    let path = index.path().to_path_buf();
    drop(index);
    std::fs::remove_dir_all(&path)
        .with_context(|| format!("removing the empty index {}", path.display()))
}
