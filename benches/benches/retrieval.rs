//! Criterion benchmark of retrieval latency: one (user, target) retrieval,
//! top 50, for every strategy and the naive tantivy baseline, for users
//! with 1k, 10k and 50k behaviors in the 10M-behavior index.
//!
//! ```text
//! cargo bench -p hindsight-benches --bench retrieval
//! cargo bench -p hindsight-benches --bench retrieval -- 50k/ubr
//! ```
//!
//! Each iteration takes the next of 2,000 (user, target, as-of) samples,
//! so that caches do not flatter the results. Criterion reports means and
//! medians; `retrieval_table` reports tail percentiles.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hindsight_benches::{bench_10m, samples, Mode, HISTORY_SIZES, TOP_N};
use hindsight_index::baseline::naive_boolean;
use hindsight_retrieval::{Query, Retriever, StrategyKind};

fn retrieval(c: &mut Criterion) {
    let mode = Mode::from_args();
    let bench = bench_10m(mode).expect("benchmark index");
    let snapshot = bench.snapshot.clone();
    for &size in &HISTORY_SIZES {
        let samples = samples(&bench, size, 2_000, 7);
        let mut group = c.benchmark_group(format!("{}k", size / 1_000));
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        let mut i = 0usize;
        group.bench_function("naive", |b| {
            b.iter(|| {
                let s = &samples[i % samples.len()];
                i += 1;
                black_box(
                    naive_boolean(&snapshot, s.user, &s.target, TOP_N, s.as_of)
                        .expect("naive retrieval"),
                )
            })
        });
        // The embedding strategies: benches/benches/embedding_table.rs.
        for kind in StrategyKind::ALL
            .into_iter()
            .filter(|k| !k.needs_embeddings())
        {
            let retriever = Retriever::new(kind);
            let mut i = 0usize;
            group.bench_function(kind.as_str(), |b| {
                b.iter(|| {
                    let s = &samples[i % samples.len()];
                    i += 1;
                    let q = Query::new(&s.target, TOP_N).as_of(s.as_of);
                    black_box(
                        retriever
                            .retrieve(&snapshot, s.user, &q)
                            .expect("retrieval"),
                    )
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, retrieval);
criterion_main!(benches);
