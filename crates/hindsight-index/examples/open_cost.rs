//! What the integrity checks cost when an index is opened.
//!
//! `cargo run --release -p hindsight-index --example open_cost -- INDEX`
//! opens the index read-only twice in one process (the first open verifies
//! every segment file's checksum, the second finds them verified and skips
//! the checksums), then runs a full `verify_all`, and prints the times.

use std::time::Instant;

use hindsight_index::BehaviorIndex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: open_cost INDEX_FOLDER")?;
    let t = Instant::now();
    let first = BehaviorIndex::open_read_only(&path)?;
    let with_check = t.elapsed();
    let behaviors = first.snapshot().num_behaviors();
    drop(first);
    let t = Instant::now();
    let second = BehaviorIndex::open_read_only(&path)?;
    let without_check = t.elapsed();
    let t = Instant::now();
    let report = second.verify_all()?;
    let verify = t.elapsed();
    println!(
        "{{\"behaviors\":{behaviors},\"open_with_checksums_s\":{:.3},\"open_files_already_verified_s\":{:.3},\"verify_all_s\":{:.3},\"files\":{},\"bytes\":{}}}",
        with_check.as_secs_f64(),
        without_check.as_secs_f64(),
        verify.as_secs_f64(),
        report.files_verified,
        report.bytes_verified
    );
    Ok(())
}
