//! Measures generation and CSV-writing throughput.
//!
//! `cargo run --release -p hindsight-synth --example synth_rate [total_behaviors]`
//! (default: `SynthConfig::bench_10m()`).

use std::time::Instant;

use hindsight_synth::{write_csv, SynthConfig, SynthLog};

fn main() -> std::io::Result<()> {
    let cfg = match std::env::args().nth(1) {
        Some(n) => SynthConfig::taobao_like(n.parse().expect("a row count")),
        None => SynthConfig::bench_10m(),
    };
    let total = cfg.total_behaviors();

    let t = Instant::now();
    let log = SynthLog::new(&cfg);
    let setup = t.elapsed().as_secs_f64();
    let mut checksum = 0u64;
    let mut n = 0u64;
    for r in log {
        checksum = checksum.wrapping_add(r.item_id ^ r.timestamp as u64);
        n += 1;
    }
    let gen = t.elapsed().as_secs_f64();
    assert_eq!(n, total);
    println!(
        "generate: {n} rows in {gen:.3}s (catalog {setup:.3}s) = {:.2}M rows/s (checksum {checksum:x})",
        n as f64 / gen / 1e6
    );

    let t = Instant::now();
    let mut sink = CountingSink(0);
    let n = write_csv(&cfg, &mut sink)?;
    let csv = t.elapsed().as_secs_f64();
    println!(
        "write_csv: {n} rows, {:.0} MiB in {csv:.3}s = {:.2}M rows/s",
        sink.0 as f64 / (1 << 20) as f64,
        n as f64 / csv / 1e6
    );
    Ok(())
}

/// A writer that only counts bytes, to time formatting without I/O.
struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
