//! Rough parse throughput of a log: opens it with a preset (or a mapping
//! JSON file) and reads every row, then prints rows/s and MB/s.
//!
//! ```text
//! cargo run --release -p hindsight-logs --example parse_rate -- taobao ../shared/data/taobao/UserBehavior.csv
//! ```

use std::path::Path;
use std::time::Instant;

use hindsight_logs::{open_source, DatasetMapping, Row, Vocabularies};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mapping, input] = args.as_slice() else {
        return Err("usage: parse_rate <preset|mapping.json> <input>".into());
    };
    let mapping = if mapping.ends_with(".json") {
        DatasetMapping::load(Path::new(mapping))?
    } else {
        DatasetMapping::preset(mapping)?
    };
    let mut vocabs = Vocabularies::default();
    let start = Instant::now();
    let mut source = open_source(&mapping, Path::new(input), &mut vocabs)?;
    let (mut ok, mut bad, mut checksum) = (0u64, 0u64, 0u64);
    while let Some(row) = source.next_row(&mut vocabs)? {
        match row {
            Row::Ok(b) => {
                ok += 1;
                checksum = checksum.wrapping_add(b.item_id ^ b.timestamp as u64);
            }
            Row::Bad(_) => bad += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{ok} rows ok, {bad} bad in {secs:.3} s: {:.2} M rows/s, {:.0} MB/s (checksum {checksum})",
        (ok + bad) as f64 / secs / 1e6,
        source.bytes_read() as f64 / secs / 1e6
    );
    Ok(())
}
