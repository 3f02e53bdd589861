//! Criterion benchmark of bulk ingest throughput: a cached synthetic CSV of
//! 2M behaviors (`SynthConfig::taobao_like(2_000_000)`) into a fresh index
//! per iteration, reported in behaviors per second.
//!
//! ```text
//! cargo bench -p hindsight-benches --bench ingest
//! ```
//!
//! Each iteration takes several seconds, so the group uses flat sampling
//! with 10 samples of one iteration. The single 10M-behavior run with peak
//! memory is `ingest_table`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use hindsight_benches::{cached_csv, create_index, data_dir, ingest_csv, Mode};
use hindsight_synth::SynthConfig;

fn ingest(c: &mut Criterion) {
    let mode = Mode::from_args();
    let (total, name) = match mode {
        Mode::Full => (2_000_000, "taobao-2m"),
        Mode::Quick => (20_000, "taobao-20k"),
    };
    let cfg = SynthConfig::taobao_like(total);
    let csv = cached_csv(&cfg, name).expect("benchmark CSV");
    let scratch = data_dir();

    let mut group = c.benchmark_group("ingest");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(total));
    group.bench_function(format!("csv-{}k", total / 1_000), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                // A fresh index on the same disk as the cached data (the
                // system temporary folder may be in memory).
                let dir = tempfile::Builder::new()
                    .prefix("ingest-bench-")
                    .tempdir_in(&scratch)
                    .expect("scratch folder");
                let index = create_index(&dir.path().join("index")).expect("new index");
                let t = Instant::now();
                let report = ingest_csv(&index, &csv, false).expect("ingest");
                spent += t.elapsed();
                assert_eq!(report.behaviors_indexed, total);
                black_box(report);
                drop(index);
                drop(dir);
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
