//! Ingest throughput and peak memory table: single runs of a cached
//! synthetic CSV (2M behaviors, then the 10M of `SynthConfig::bench_10m`)
//! into a fresh index, with the default `IngestOptions`, timed from the
//! start of the ingest until a refreshed snapshot sees every behavior.
//!
//! ```text
//! cargo bench -p hindsight-benches --bench ingest_table
//! ```
//!
//! Peak memory is the process's `VmHWM` (peak resident set, which counts
//! the index files' mapped pages the process touched), reset before each
//! run through `/proc/self/clear_refs`. Set `HINDSIGHT_BENCH_FILTER` to a
//! substring of the input's cache name (`taobao-2m`, `10m`) to run only
//! that input. Prints a Markdown table on stdout.

use std::path::Path;
use std::time::Instant;

use hindsight_benches::{
    cached_csv, config, create_index, data_dir, ingest_csv, load_average, machine, peak_rss_bytes,
    reset_peak_rss, rss_bytes, today_utc, Mode, Result,
};
use hindsight_synth::SynthConfig;

const GOAL_PER_SEC: f64 = 300_000.0;
const GOAL_PEAK_BYTES: u64 = 2 << 30;

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() -> Result<()> {
    let mode = Mode::from_args();
    let load_before = load_average();
    let inputs: Vec<(SynthConfig, &str, &str)> = match mode {
        Mode::Full => vec![
            (
                SynthConfig::taobao_like(2_000_000),
                "taobao-2m",
                "taobao_like(2M)",
            ),
            (config(mode), "10m", "bench_10m (10M)"),
        ],
        Mode::Quick => vec![(
            SynthConfig::taobao_like(20_000),
            "taobao-20k",
            "taobao_like(20k)",
        )],
    };
    let filter = std::env::var("HINDSIGHT_BENCH_FILTER").unwrap_or_default();
    let inputs: Vec<_> = inputs
        .into_iter()
        .filter(|(_, name, _)| name.contains(&filter))
        .collect();
    let peak_resets = reset_peak_rss();
    let mut rows = Vec::new();
    for (cfg, name, label) in &inputs {
        let csv = cached_csv(cfg, name)?;
        let csv_bytes = std::fs::metadata(&csv)?.len();
        let scratch = tempfile::Builder::new()
            .prefix("ingest-table-")
            .tempdir_in(data_dir())?;
        let dir = scratch.path().join("index");
        let index = create_index(&dir)?;
        let rss_before = rss_bytes().unwrap_or(0);
        reset_peak_rss();
        eprintln!(
            "ingesting {} ({} behaviors)",
            csv.display(),
            cfg.total_behaviors()
        );
        let t = Instant::now();
        let report = ingest_csv(&index, &csv, true)?;
        let snapshot = index.refresh()?;
        let secs = t.elapsed().as_secs_f64();
        let peak = peak_rss_bytes().unwrap_or(0);
        if snapshot.num_behaviors() != cfg.total_behaviors() {
            return Err(format!(
                "index holds {} behaviors, expected {}",
                snapshot.num_behaviors(),
                cfg.total_behaviors()
            )
            .into());
        }
        let per_sec = cfg.total_behaviors() as f64 / secs;
        eprintln!("  {per_sec:.0} behaviors/s, peak RSS {}", mib(peak));
        rows.push((
            *label,
            cfg.total_behaviors(),
            csv_bytes,
            secs,
            per_sec,
            peak,
            rss_before,
            report.spilled_runs,
            snapshot.segments().len(),
            dir_size(&dir),
        ));
        drop(snapshot);
        drop(index);
    }

    println!();
    println!("### Bulk ingest, CSV to searchable index ({})", today_utc());
    println!();
    println!(
        "{}; default `IngestOptions` (sort buffer 4M records, writer budget 256 MiB, \
         commit every 1M){}.  ",
        machine(),
        if mode == Mode::Quick {
            "; QUICK MODE: small input"
        } else {
            ""
        }
    );
    println!(
        "Load average (1/5/15 min) at start {load_before}, at end {}.  ",
        load_average()
    );
    println!(
        "Goals: >= {:.0}k behaviors/s; peak memory <= {} whatever the input size. \
         Peak = `VmHWM` of the process{}.",
        GOAL_PER_SEC / 1e3,
        mib(GOAL_PEAK_BYTES),
        if peak_resets {
            ", reset before each run"
        } else {
            " (could not be reset: includes earlier runs)"
        }
    );
    println!();
    println!(
        "| input | behaviors | CSV | seconds | behaviors/s | peak RSS | RSS before | spilled runs | segments | index size | goals |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (label, n, csv_bytes, secs, per_sec, peak, before, spilled, segs, size) in &rows {
        let goals = format!(
            "{}; {}",
            if *per_sec >= GOAL_PER_SEC {
                "speed met"
            } else {
                "speed MISSED"
            },
            if *peak <= GOAL_PEAK_BYTES {
                "memory met"
            } else {
                "memory MISSED"
            }
        );
        println!(
            "| {label} | {n} | {} | {secs:.1} | {per_sec:.0} | {} | {} | {spilled} | {segs} | {} | {goals} |",
            mib(*csv_bytes),
            mib(*peak),
            mib(*before),
            mib(*size),
        );
    }
    println!();
    Ok(())
}
