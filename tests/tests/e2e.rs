//! End-to-end tests against the real logs in `../shared/data`: ingest both
//! datasets, check counts, and check the retrieval invariants on real
//! histories. Skipped (with a message) when the data folder is absent.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hindsight_core::{AsOf, Target};
use hindsight_index::{ingest, BehaviorIndex, IngestOptions};
use hindsight_logs::DatasetMapping;
use hindsight_retrieval::{Query, Retriever, StrategyKind};

fn data_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if d.join("taobao/UserBehavior.csv").exists() {
        Some(d)
    } else {
        eprintln!("skipping: {} not found", d.display());
        None
    }
}

struct Built {
    _dir: tempfile::TempDir,
    index: BehaviorIndex,
    report: hindsight_index::IngestReport,
}

fn build(preset: &str, input: &str) -> Option<Built> {
    let data = data_dir()?;
    let dir = tempfile::tempdir().unwrap();
    let mapping = DatasetMapping::preset(preset).unwrap();
    let index = BehaviorIndex::create(dir.path().join("index"), &mapping).unwrap();
    let report = ingest(
        &index,
        &mapping,
        &data.join(input),
        &IngestOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    Some(Built {
        _dir: dir,
        index,
        report,
    })
}

fn taobao() -> Option<&'static Built> {
    static T: OnceLock<Option<Built>> = OnceLock::new();
    T.get_or_init(|| build("taobao", "taobao/UserBehavior.csv"))
        .as_ref()
}

#[test]
fn taobao_ingests_with_the_real_counts() {
    let Some(t) = taobao() else { return };
    assert_eq!(t.report.rows_read, 84_474);
    assert_eq!(t.report.behaviors_indexed, 84_474);
    assert_eq!(t.report.rejected_rows, 0);
    assert_eq!(t.report.users, 815);
    // The data README says 55,233 items and 2,911 categories: those are the
    // counts of its first 84,287 rows; the whole file has these.
    assert_eq!(t.report.items, 55_367);
    let snap = t.index.snapshot();
    let stats = snap.stats();
    assert_eq!(
        (stats.behaviors, stats.users, stats.items, stats.max_history),
        (84_474, 815, 55_367, 539)
    );
    assert_eq!(
        snap.state().vocabs.behavior_types.names(),
        ["pv", "cart", "fav", "buy"]
    );
    // Per-type counts of the whole file (the README's 75,693/4,494/2,351/1,749
    // are again those of the first 84,287 rows).
    let mut per_type = [0u64; 4];
    for seg in snap.segments() {
        for doc in 0..seg.max_doc() {
            per_type[seg.behavior_type(doc) as usize] += 1;
        }
    }
    assert_eq!(per_type, [75_871, 4_497, 2_356, 1_750]);
    // docs/evaluation-protocol.md: 68,679 positives = behaviors with seq >= 20.
    let mut users = std::collections::BTreeSet::new();
    for seg in snap.segments() {
        for doc in 0..seg.max_doc() {
            users.insert(seg.behavior(doc).user_id);
        }
    }
    let positives: u64 = users
        .iter()
        .map(|&u| snap.history(u).len().saturating_sub(20))
        .sum();
    assert_eq!(positives, 68_679);
}

#[test]
fn movielens_ingests_with_the_real_counts() {
    let Some(m) = build("movielens", "movielens-small") else {
        return;
    };
    assert_eq!(m.report.rows_read, 100_836);
    assert_eq!(m.report.behaviors_indexed, 100_836);
    assert_eq!(m.report.rejected_rows, 0);
    assert_eq!(m.report.users, 610);
    let snap = m.index.snapshot();
    let st = snap.state();
    assert_eq!(st.vocabs.behavior_types.names(), ["low", "mid", "high"]);
    assert_eq!(st.vocabs.categories.len(), 19);
    let positives: u64 = (1..=610u64)
        .map(|u| snap.history(u).len().saturating_sub(20))
        .sum();
    assert_eq!(positives, 88_636);
    // Toy Story's genres are its categories.
    let toy = snap.item_features(1).unwrap().unwrap();
    let names: Vec<&str> = toy
        .categories
        .iter()
        .map(|&c| st.vocabs.categories.name(c).unwrap())
        .collect();
    for g in ["Adventure", "Animation", "Children", "Comedy", "Fantasy"] {
        assert!(names.contains(&g), "{names:?}");
    }
    // Multi-genre sim-hard: every match shares a genre with the target.
    let target = Target {
        item_id: 1,
        features: toy,
    };
    let hits = Retriever::new(StrategyKind::SimHard)
        .retrieve(&snap, 414, &Query::new(&target, 50).as_of(AsOf::seq(1000)))
        .unwrap();
    assert_eq!(hits.len(), 50);
    for h in hits.iter().filter(|h| h.score > 0.0) {
        assert!(h.behavior.seq < 1000);
        assert!(h
            .behavior
            .features
            .categories
            .iter()
            .any(|c| target.features.categories.contains(c)));
    }
}

#[test]
fn reingest_adds_nothing() {
    let Some(data) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mapping = DatasetMapping::preset("taobao").unwrap();
    let index = BehaviorIndex::create(dir.path(), &mapping).unwrap();
    let input = data.join("taobao/UserBehavior.csv");
    ingest(
        &index,
        &mapping,
        &input,
        &IngestOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let again = ingest(
        &index,
        &mapping,
        &input,
        &IngestOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again.behaviors_indexed, 0);
    assert_eq!(again.duplicates_skipped, 84_474);
    assert_eq!(index.snapshot().num_behaviors(), 84_474);
    assert_eq!(index.snapshot().state().ingests.len(), 2);
}

#[test]
fn retrieval_invariants_on_real_histories() {
    let Some(t) = taobao() else { return };
    let snap = t.index.snapshot();
    let strategies: Vec<Retriever> = StrategyKind::ALL
        .iter()
        .filter(|k| !k.needs_embeddings())
        .map(|k| Retriever::new(*k))
        .collect();
    let mut checked = 0;
    for user in [1u64, 100, 1000, 10_000, 100_000, 500_000, 1_000_000] {
        let mut full = snap.history(user).newest(&AsOf::NOW, usize::MAX);
        if full.is_empty() {
            continue;
        }
        full.reverse();
        // Targets: each behavior of the user, as of its own seq (the sample protocol).
        for b in full.iter().step_by(7) {
            let target = Target {
                item_id: b.item_id,
                features: b.features.clone(),
            };
            for n in [20, 50] {
                let q = Query::new(&target, n).as_of(AsOf::seq(b.seq));
                for r in &strategies {
                    let hits = r.retrieve(&snap, user, &q).unwrap();
                    assert_eq!(
                        hits.len(),
                        n.min(b.seq as usize),
                        "{} user {user} seq {}",
                        r.name(),
                        b.seq
                    );
                    assert!(hits
                        .iter()
                        .all(|h| h.behavior.seq < b.seq && h.behavior.user_id == user));
                    if r.name() == "sim-hard" {
                        let first_pad = hits
                            .iter()
                            .position(|h| h.score == 0.0)
                            .unwrap_or(hits.len());
                        assert!(hits[first_pad..]
                            .iter()
                            .all(|h| h.behavior.features.categories != target.features.categories));
                        assert!(hits[..first_pad]
                            .iter()
                            .all(|h| h.behavior.features.categories == target.features.categories));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} retrievals checked");
}

#[test]
fn unknown_user_gets_an_empty_list() {
    let Some(t) = taobao() else { return };
    let snap = t.index.snapshot();
    let target = Target {
        item_id: 2268318,
        features: Default::default(),
    };
    for k in StrategyKind::ALL
        .into_iter()
        .filter(|k| !k.needs_embeddings())
    {
        let hits = Retriever::new(k)
            .retrieve(&snap, 999_999_999, &Query::new(&target, 50))
            .unwrap();
        assert!(hits.is_empty());
    }
}

#[test]
fn taobao_samples_follow_the_protocol() {
    use hindsight_samples::{build_samples, retrieve_histories, Protocol, Split};
    let Some(t) = taobao() else { return };
    let snap = t.index.snapshot();
    let (samples, counts) = build_samples(&snap, &Protocol::default()).unwrap();
    assert_eq!(counts.positives, 68_679);
    assert_eq!(samples.len(), 2 * 68_679);
    assert_eq!(
        counts.train + counts.valid + counts.test,
        samples.len() as u64
    );
    // Every user with positives has at least one test positive.
    let test_users: std::collections::BTreeSet<u64> = samples
        .iter()
        .filter(|s| s.split == Split::Test)
        .map(|s| s.user_id)
        .collect();
    assert_eq!(test_users.len() as u64, counts.users);
    assert!(samples
        .chunks(2)
        .all(|p| p[0].target.item_id != p[1].target.item_id));
    // Retrieval as of each target never reaches it (a slice: every 50th sample).
    let slice: Vec<_> = samples.iter().step_by(50).cloned().collect();
    let h = retrieve_histories(&snap, &slice, &Retriever::new(StrategyKind::Ubr), 50, 2).unwrap();
    for (s, h) in slice.iter().zip(&h) {
        assert_eq!(h.len(), 50.min(s.as_of_seq as usize));
        assert!(h.iter().all(|b| b.seq < s.as_of_seq));
    }
}
