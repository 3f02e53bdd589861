//! Retrieval latency table: p50 / p99 / p99.9 of one (user, target)
//! retrieval, top 50, per strategy and history size, single-threaded, with
//! the naive tantivy boolean query measured in the same run as baseline.
//!
//! ```text
//! cargo bench -p hindsight-benches --bench retrieval_table
//! ```
//!
//! Every call is timed on its own with `Instant`; the calls rotate over
//! 2,000 (user, target, as-of) samples of 64 users so that caches do not
//! flatter the results (see `hindsight_benches::samples`). Set
//! `HINDSIGHT_BENCH_CALLS` to change the number of timed calls per row
//! (default 20,000), and `HINDSIGHT_BENCH_FILTER` to a substring of
//! `<history>/<strategy>` (e.g. `50000/ubr`) to run only matching rows
//! (for profiling; the naive column is then absent unless it matches).
//! Prints a Markdown table on stdout.

use std::hint::black_box;
use std::time::Instant;

use hindsight_benches::{
    bench_10m, load_average, machine, samples, today_utc, Mode, Percentiles, Result, Sample,
    HISTORY_SIZES, TOP_N,
};
use hindsight_index::baseline::naive_boolean;
use hindsight_index::Snapshot;
use hindsight_retrieval::{Query, Retriever, StrategyKind};

/// The goals of DESIGN.md, in microseconds, at 50k behaviors.
const GOAL_P99_US: f64 = 50.0;
const AIM_UBR_P99_US: f64 = 15.0;
const AIM_SIM_HARD_P99_US: f64 = 5.0;

/// What a row measures.
#[derive(Clone, Copy)]
enum Subject {
    /// `Snapshot::history(user)` alone: the per-call floor every strategy pays.
    History,
    Naive,
    Strategy(StrategyKind),
}

impl Subject {
    fn name(&self) -> &'static str {
        match self {
            Subject::History => "history() only",
            Subject::Naive => "naive (baseline)",
            Subject::Strategy(k) => k.as_str(),
        }
    }
}

struct Runner {
    subject: Subject,
    retriever: Option<Retriever>,
}

impl Runner {
    fn new(subject: Subject) -> Runner {
        let retriever = match subject {
            Subject::History | Subject::Naive => None,
            Subject::Strategy(k) => Some(Retriever::new(k)),
        };
        Runner { subject, retriever }
    }

    /// One retrieval; returns the number of results.
    #[inline]
    fn run(&self, snapshot: &Snapshot, s: &Sample) -> Result<usize> {
        Ok(match (&self.retriever, self.subject) {
            (_, Subject::History) => {
                let h = snapshot.history(s.user);
                // All histories here hold more than N behaviors.
                black_box(&h);
                TOP_N
            }
            (None, _) => naive_boolean(snapshot, s.user, &s.target, TOP_N, s.as_of)?.len(),
            (Some(r), _) => r
                .retrieve(
                    snapshot,
                    s.user,
                    &Query::new(&s.target, TOP_N).as_of(s.as_of),
                )?
                .len(),
        })
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> Result<()> {
    let mode = Mode::from_args();
    let load_before = load_average();
    let (default_calls, n_samples) = match mode {
        Mode::Full => (20_000, 2_000),
        Mode::Quick => (200, 50),
    };
    let calls = env_usize("HINDSIGHT_BENCH_CALLS").unwrap_or(default_calls);
    let filter = std::env::var("HINDSIGHT_BENCH_FILTER").unwrap_or_default();
    let bench = bench_10m(mode)?;
    let snapshot = bench.snapshot.clone();

    let subjects: Vec<Subject> = [Subject::Naive, Subject::History]
        .into_iter()
        .chain(
            StrategyKind::ALL
                .into_iter()
                .filter(|k| !k.needs_embeddings())
                .map(Subject::Strategy),
        )
        .collect();

    let mut rows = Vec::new();
    for &size in &HISTORY_SIZES {
        let samples = samples(&bench, size, n_samples, 7);
        let mut naive_p50 = f64::NAN;
        for &subject in &subjects {
            if !format!("{size}/{}", subject.name()).contains(&filter) {
                continue;
            }
            let runner = Runner::new(subject);
            // Warm-up pass over every sample (untimed), checking results:
            // every subject must fill the budget (all eligible histories
            // here hold at least N behaviors).
            let mut short = 0usize;
            for s in &samples {
                if runner.run(&snapshot, s)? < TOP_N {
                    short += 1;
                }
            }
            let mut nanos = Vec::with_capacity(calls);
            for i in 0..calls {
                let s = &samples[i % samples.len()];
                let t = Instant::now();
                let n = runner.run(&snapshot, s)?;
                nanos.push(t.elapsed().as_nanos() as u64);
                black_box(n);
            }
            let p = Percentiles::of(&mut nanos);
            if let Subject::Naive = subject {
                naive_p50 = p.p50;
            }
            eprintln!(
                "{:>6} behaviors  {:<16} p50 {:>9.1} us  p99 {:>9.1} us",
                size,
                subject.name(),
                p.p50,
                p.p99
            );
            rows.push((size, subject, p, naive_p50 / p.p50, short));
        }
    }

    let s = &snapshot;
    println!();
    println!(
        "### Retrieval latency, top {TOP_N}, one thread ({})",
        today_utc()
    );
    println!();
    println!(
        "Index: {} behaviors in {} segment(s) (`SynthConfig::bench_10m`{}); {}.  ",
        s.num_behaviors(),
        s.segments().len(),
        if mode == Mode::Quick {
            ", QUICK MODE: small index"
        } else {
            ""
        },
        machine()
    );
    println!(
        "{calls} timed calls per row over {} (user, target, as-of) samples per history size; \
         naive = `naive_boolean` (tantivy `Must(user) + Should(item) + Should(category)`, \
         `FilterCollector` on `uk`); `history() only` = `Snapshot::history(user)` alone, \
         the lookup of the user's runs every strategy starts with.  ",
        n_samples
    );
    println!(
        "Load average (1/5/15 min) at start {load_before}, at end {}: the machine is shared, \
         so tails include preemption by other processes.  ",
        load_average()
    );
    println!(
        "Goals at 50k behaviors: p99 <= {GOAL_P99_US} us for every strategy; \
         aim `ubr` p99 <= {AIM_UBR_P99_US} us, `sim-hard` p99 <= {AIM_SIM_HARD_P99_US} us."
    );
    println!();
    println!(
        "| history | strategy | p50 (us) | p99 (us) | p99.9 (us) | mean (us) | naive p50 / p50 | goal (p99 at 50k) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|");
    for (size, subject, p, speedup, short) in &rows {
        let goal = match (size, subject) {
            (50_000, Subject::Strategy(k)) => {
                let aim = match k {
                    StrategyKind::Ubr => Some(AIM_UBR_P99_US),
                    StrategyKind::SimHard => Some(AIM_SIM_HARD_P99_US),
                    _ => None,
                };
                let base = if p.p99 <= GOAL_P99_US {
                    format!("<= {GOAL_P99_US}: met")
                } else {
                    format!("<= {GOAL_P99_US}: MISSED")
                };
                match aim {
                    Some(a) if p.p99 <= a => format!("{base}; aim <= {a}: met"),
                    Some(a) => format!("{base}; aim <= {a}: missed"),
                    None => base,
                }
            }
            _ => String::new(),
        };
        let name = if *short > 0 {
            format!("{} ({short} short results)", subject.name())
        } else {
            subject.name().to_owned()
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}x | {} |",
            size, name, p.p50, p.p99, p.p999, p.mean, speedup, goal
        );
    }
    println!();
    Ok(())
}
