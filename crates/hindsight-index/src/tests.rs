//! Unit tests of the index: write path semantics, snapshots, refusal of
//! foreign or corrupt indexes, and the external sort.

use std::io::Write;

use hindsight_core::{AsOf, ItemFeatures};
use hindsight_logs::DatasetMapping;

use crate::{ingest, BehaviorIndex, IndexError, IngestOptions, NewBehavior};

fn taobao() -> DatasetMapping {
    DatasetMapping::preset("taobao").unwrap()
}

fn new_index(dir: &std::path::Path) -> BehaviorIndex {
    BehaviorIndex::create(dir, &taobao()).unwrap()
}

fn nb(user: u64, item: u64, cat: u64, ts: i64) -> NewBehavior {
    NewBehavior {
        user_id: user,
        item_id: item,
        features: ItemFeatures::with_categories(vec![cat]),
        behavior_type: 0,
        timestamp: ts,
    }
}

#[test]
fn append_assigns_seq_in_time_order_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    // Out of order in the batch, with a genuine repeat (same item, same second).
    let batch = vec![
        nb(7, 3, 30, 300),
        nb(7, 1, 10, 100),
        nb(7, 2, 20, 200),
        nb(7, 2, 20, 200),
    ];
    let r = index.append(&batch).unwrap();
    assert_eq!((r.added, r.duplicates), (4, 0));
    let snap = index.snapshot();
    let h = snap.history(7);
    assert_eq!(h.len(), 4);
    let newest: Vec<(u32, u64)> = h
        .newest(&AsOf::NOW, 10)
        .iter()
        .map(|b| (b.seq, b.item_id))
        .collect();
    assert_eq!(newest, vec![(3, 3), (2, 2), (1, 2), (0, 1)]);
    // Retrying the same batch adds nothing.
    let r = index.append(&batch).unwrap();
    assert_eq!((r.added, r.duplicates), (0, 4));
    // A third identical event is new.
    let r = index
        .append(&[nb(7, 2, 20, 200), nb(7, 2, 20, 200), nb(7, 2, 20, 200)])
        .unwrap();
    assert_eq!((r.added, r.duplicates), (1, 2));
    let snap = index.snapshot();
    assert_eq!(snap.history(7).len(), 5);
    assert_eq!(snap.state().behaviors, 5);
    // Item + type + one category each: the BM25 length statistics.
    assert_eq!(snap.state().min_feature_keys, Some(3));
    assert_eq!(snap.state().feature_keys, 15);
    // That third event (ts 200) arrived after ts 300 was indexed: late.
    assert!(!snap.state().ts_monotonic);
    assert_eq!(snap.history(7).next_seq(), 5);
}

#[test]
fn late_behavior_clears_monotonic_flag_and_as_of_ts_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    index
        .append(&[nb(1, 1, 1, 100), nb(1, 2, 1, 200), nb(1, 3, 1, 300)])
        .unwrap();
    assert!(index.snapshot().state().ts_monotonic);
    // Arrives after ts 300 was indexed, but happened at 150: seq 3.
    index.append(&[nb(1, 4, 1, 150)]).unwrap();
    let snap = index.snapshot();
    assert!(!snap.state().ts_monotonic);
    let h = snap.history(1);
    let before_160: Vec<u64> = h
        .newest(&AsOf::timestamp(160), 10)
        .iter()
        .map(|b| b.item_id)
        .collect();
    assert_eq!(before_160, vec![4, 1]);
    let before_seq3: Vec<u64> = h
        .newest(&AsOf::seq(3), 10)
        .iter()
        .map(|b| b.item_id)
        .collect();
    assert_eq!(before_seq3, vec![3, 2, 1]);
}

#[test]
fn users_are_isolated_and_unknown_users_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    index
        .append(&[nb(1, 1, 1, 1), nb(2, 2, 2, 2), nb(3, 3, 3, 3)])
        .unwrap();
    index.append(&[nb(2, 4, 2, 5)]).unwrap();
    let snap = index.snapshot();
    assert!(snap.history(99).is_empty());
    assert!(snap.history(0).is_empty());
    let items: Vec<u64> = snap
        .history(2)
        .newest(&AsOf::NOW, 10)
        .iter()
        .map(|b| b.item_id)
        .collect();
    assert_eq!(items, vec![4, 2]);
    assert!(snap
        .history(2)
        .newest(&AsOf::NOW, 10)
        .iter()
        .all(|b| b.user_id == 2));
    assert_eq!(snap.item_features(2).unwrap().unwrap().categories, vec![2]);
    assert_eq!(snap.item_features(12345).unwrap(), None);
    let stats = snap.stats();
    assert_eq!(
        (stats.behaviors, stats.users, stats.items, stats.max_history),
        (4, 3, 4, 2)
    );
}

#[test]
fn refuses_other_schema_versions_and_non_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    drop(new_index(&path));
    let manifest = path.join(crate::manifest::MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"schema_version\": 1", "\"schema_version\": 99"),
    )
    .unwrap();
    match BehaviorIndex::open(&path) {
        Err(IndexError::SchemaVersion {
            found: 99,
            expected: 1,
            ..
        }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened an index of schema version 99"),
    }
    let msg = BehaviorIndex::open(&path).err().unwrap().to_string();
    assert!(msg.contains("re-ingest"), "{msg}");
    assert!(matches!(
        BehaviorIndex::open(dir.path()),
        Err(IndexError::NotAnIndex(_))
    ));
    assert!(matches!(
        BehaviorIndex::open(dir.path().join("missing")),
        Err(IndexError::NotAnIndex(_))
    ));
    std::fs::write(&manifest, "{ not json").unwrap();
    assert!(matches!(
        BehaviorIndex::open(&path),
        Err(IndexError::Corrupt(_))
    ));
}

#[test]
fn other_mapping_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let ml = DatasetMapping::preset("movielens").unwrap();
    let csv = dir.path().join("x.csv");
    std::fs::write(&csv, "1,2,3,pv,4\n").unwrap();
    let err = ingest(&index, &ml, &csv, &IngestOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, IndexError::MappingMismatch { .. }), "{err}");
}

fn write_log(path: &std::path::Path, rows: &[(u64, u64, u64, &str, i64)]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (u, i, c, t, ts) in rows {
        writeln!(f, "{u},{i},{c},{t},{ts}").unwrap();
    }
}

#[test]
fn spilled_and_in_memory_ingest_give_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    // Users interleaved and out of time order, as a real unsorted log.
    let mut rows = Vec::new();
    for k in 0..3000u64 {
        let user = (k * 7919) % 13 + 1;
        let ts = 1_000 + ((k * 104_729) % 5000) as i64;
        rows.push((
            user,
            k % 97,
            k % 11,
            ["pv", "cart", "fav", "buy"][(k % 4) as usize],
            ts,
        ));
    }
    rows.push((5, 1, 1, "nope", 3)); // malformed: counted, skipped
    let csv = dir.path().join("log.csv");
    write_log(&csv, &rows);
    let mut histories = Vec::new();
    for (name, sort_buffer, threads) in [
        ("mem", 1 << 20, 1),
        ("spill", 257, 1),
        ("mem-3-threads", 1 << 20, 3),
        ("spill-3-threads", 257, 3),
    ] {
        let index = new_index(&dir.path().join(name));
        let opts = IngestOptions {
            sort_buffer,
            commit_every: 500,
            tmp_dir: Some(dir.path().to_owned()),
            indexing_threads: threads,
            ..IngestOptions::default()
        };
        let report = ingest(&index, &taobao(), &csv, &opts, &mut |_| {}).unwrap();
        assert_eq!(report.rows_read, 3001);
        assert_eq!(report.behaviors_indexed, 3000);
        assert_eq!(report.rejected_rows, 1);
        assert_eq!(report.rejected_examples[0].line, 3001);
        if sort_buffer < 1000 {
            assert!(report.spilled_runs >= 11, "{}", report.spilled_runs);
        }
        let snap = index.snapshot();
        let all: Vec<Vec<(u32, u64, i64)>> = (1..=13)
            .map(|u| {
                let mut v: Vec<_> = snap
                    .history(u)
                    .newest(&AsOf::NOW, usize::MAX)
                    .iter()
                    .map(|b| (b.seq, b.item_id, b.timestamp))
                    .collect();
                v.reverse();
                v
            })
            .collect();
        // seq follows (timestamp, line) order and is dense from 0.
        for h in &all {
            for (i, w) in h.windows(2).enumerate() {
                assert_eq!(w[0].0 as usize, i);
                assert!(w[0].2 <= w[1].2);
            }
        }
        // Each user's behaviors of one commit go to one indexing thread
        // whole: at most one run per segment, and the segments' user
        // directories agree with binary searches over `uk`.
        for seg in snap.segments() {
            for u in 0..=14 {
                assert_eq!(
                    seg.run(u).map(|r| (r.start, r.end)),
                    seg.run_by_search(u),
                    "{name}: user {u}"
                );
            }
        }
        histories.push(all);
    }
    for h in &histories[1..] {
        assert_eq!(&histories[0], h);
    }
    // No spill files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("hindsight-ingest")
        })
        .collect();
    assert!(left.is_empty());
}

#[test]
fn strict_mode_stops_at_the_first_bad_row_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(&dir.path().join("i"));
    let csv = dir.path().join("log.csv");
    std::fs::write(&csv, "1,2,3,pv,100\n1,x,3,pv,101\n").unwrap();
    let opts = IngestOptions {
        strict: true,
        ..IngestOptions::default()
    };
    let err = ingest(&index, &taobao(), &csv, &opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, IndexError::StrictRow { line: 2, .. }),
        "{err}"
    );
    assert_eq!(index.refresh().unwrap().num_behaviors(), 0);
}

#[test]
fn second_writer_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let _w = crate::writer::Writer::new(&index, 32 << 20, 1).unwrap();
    let err = index.append(&[nb(1, 1, 1, 1)]).unwrap_err().to_string();
    assert!(err.contains("another process is writing"), "{err}");
}

#[test]
fn live_writer_batches_have_append_semantics_and_show_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    index
        .append(&[nb(1, 1, 1, 100), nb(1, 2, 1, 200), nb(1, 3, 1, 300)])
        .unwrap();
    let mut w = index.live_writer(32 << 20).unwrap();
    // Two requests in one group: the second retries the first, and the
    // third reaches back before the first's timestamps (a committed
    // behavior at ts 200 must still be recognised).
    let first = [nb(1, 4, 1, 400), nb(2, 9, 9, 50)];
    assert_eq!(w.add_batch(&first).unwrap().added, 2);
    let retry = w.add_batch(&first).unwrap();
    assert_eq!((retry.added, retry.duplicates), (0, 2));
    let back = w.add_batch(&[nb(1, 2, 1, 200), nb(1, 5, 1, 500)]).unwrap();
    assert_eq!((back.added, back.duplicates), (1, 1));
    assert_eq!(w.pending(), 3);
    // Nothing is visible before the commit.
    assert_eq!(index.snapshot().history(1).len(), 3);
    assert!(index.snapshot().history(2).is_empty());
    let snap = w.commit().unwrap();
    assert_eq!(snap.history(1).len(), 5);
    assert_eq!(index.snapshot().history(2).len(), 1);
    assert_eq!(snap.state().behaviors, 6);
    // After the commit, the same batches are still duplicates.
    assert_eq!(w.add_batch(&first).unwrap().duplicates, 2);
    // A rolled back batch leaves no trace, and may be added again.
    assert_eq!(w.add_batch(&[nb(3, 1, 1, 10)]).unwrap().added, 1);
    w.rollback().unwrap();
    assert_eq!(w.pending(), 0);
    assert_eq!(w.add_batch(&[nb(3, 1, 1, 10)]).unwrap().added, 1);
    w.close().unwrap();
    let snap = index.snapshot();
    assert_eq!(snap.history(3).len(), 1);
    assert_eq!(snap.state().behaviors, 7);
    let seqs: Vec<u32> = snap
        .history(1)
        .newest(&AsOf::NOW, 10)
        .iter()
        .map(|b| b.seq)
        .collect();
    assert_eq!(seqs, vec![4, 3, 2, 1, 0]);
}

#[test]
fn out_of_range_user_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let err = index
        .append(&[nb(1, 1, 1, 1), nb(crate::schema::MAX_USER_ID + 1, 1, 1, 1)])
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidInput(_)), "{err}");
    assert!(index.snapshot().history(1).is_empty());
}

#[test]
fn creating_an_index_twice_is_already_exists() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_index(dir.path()));
    let err = BehaviorIndex::create(dir.path(), &taobao()).err().unwrap();
    assert!(
        matches!(&err, IndexError::AlreadyExists(p) if p == dir.path()),
        "{err}"
    );
    assert!(
        err.to_string().contains("an index already exists at"),
        "{err}"
    );
    // The existing index is untouched and still opens.
    BehaviorIndex::open(dir.path()).unwrap();
}

#[test]
fn writing_while_another_writer_holds_the_lock_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let _held = index.live_writer(32 << 20).unwrap();
    // Another handle on the same folder, as another process would open it.
    let other = BehaviorIndex::open(dir.path()).unwrap();
    let err = other.append(&[nb(1, 1, 1, 1)]).unwrap_err();
    assert!(
        matches!(&err, IndexError::Locked(p) if p == dir.path()),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("writer lock") && msg.contains("read-only"),
        "{msg}"
    );
    assert!(matches!(
        other.live_writer(32 << 20).err().unwrap(),
        IndexError::Locked(_)
    ));
    // Reading is not blocked.
    assert_eq!(other.snapshot().num_behaviors(), 0);
}

#[test]
fn rows_beyond_the_limits_are_counted_rejects_not_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<(u64, u64, u64, &str, i64)> = (0..6001u64)
        .map(|k| (k % 50 + 1, k, k % 7, "pv", 1_511_544_070 + k as i64))
        .collect();
    rows[3000].0 = 1 << 40; // line 3001
    let csv = dir.path().join("log.csv");
    write_log(&csv, &rows);
    let index = new_index(&dir.path().join("idx"));
    let report = ingest(
        &index,
        &taobao(),
        &csv,
        &IngestOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.rows_read, 6001);
    assert_eq!(report.behaviors_indexed, 6000);
    assert_eq!(report.rejected_rows, 1);
    assert_eq!(report.rejected_examples[0].line, 3001);
    let expected = hindsight_core::limits::LimitViolation::UserId(1 << 40).to_string();
    assert_eq!(report.rejected_examples[0].message, expected);
    assert_eq!(index.snapshot().state().behaviors, 6000);

    // Timestamps before 1970 and too many categories are rejects too...
    let csv2 = dir.path().join("neg.csv");
    write_log(
        &csv2,
        &[
            (1, 1, 1, "pv", -5),
            (1, 2, 1, "pv", 10),
            (2, 3, 1, "buy", i64::MAX),
        ],
    );
    let index = new_index(&dir.path().join("idx2"));
    let report = ingest(
        &index,
        &taobao(),
        &csv2,
        &IngestOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((report.behaviors_indexed, report.rejected_rows), (1, 2));
    let lines: Vec<u64> = report.rejected_examples.iter().map(|r| r.line).collect();
    assert_eq!(lines, [1, 3]);
    assert!(report.rejected_examples[0]
        .message
        .contains("timestamp -5 is outside"));

    // ...and stop the run under --strict, naming the line.
    let opts = IngestOptions {
        strict: true,
        ..IngestOptions::default()
    };
    let index = new_index(&dir.path().join("idx3"));
    let err = ingest(&index, &taobao(), &csv, &opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, IndexError::StrictRow { line: 3001, message } if *message == expected),
        "{err}"
    );
}

#[test]
fn mapping_mismatch_names_the_fields_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let mut other = taobao();
    other.delimiter = Some(";".into());
    let csv = dir.path().join("x.csv");
    std::fs::write(&csv, "1;2;3;pv;4\n").unwrap();
    let err = ingest(&index, &other, &csv, &IngestOptions::default(), &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IndexError::MappingMismatch { .. }), "{msg}");
    assert!(
        msg.contains("\"delimiter\": (absent) in the index, \";\" given"),
        "{msg}"
    );
    // The same mapping is accepted, also when the manifest predates fields
    // added with a default (no "encoding" on tables, say).
    index.check_mapping(&taobao()).unwrap();
}

#[test]
fn a_failed_create_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    // A folder under a regular file cannot be created.
    let bad = file.join("idx");
    assert!(BehaviorIndex::create(&bad, &taobao()).is_err());
    // One that can be created but already holds an index is refused and kept.
    let path = dir.path().join("idx");
    new_index(&path);
    assert!(BehaviorIndex::create(&path, &taobao()).is_err());
    assert!(path.join("hindsight.json").exists());
    // A nested new folder whose creation fails half-way is removed.
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(&nested, "not a folder").unwrap();
    assert!(BehaviorIndex::create(nested.join("c"), &taobao()).is_err());
    assert!(!nested.join("c").exists());
}

/// Behaviors `from..from + len` of seven users, with 0 to 3 categories
/// and 0 to 2 tags, every behavior type, increasing timestamps.
fn mixed_batch(from: u64, len: u64) -> Vec<NewBehavior> {
    (from..from + len)
        .map(|i| NewBehavior {
            user_id: i % 7,
            item_id: i * 13 % 101,
            // 0 to 3 categories, 0 to 2 tags.
            features: ItemFeatures {
                categories: (0..i % 4).map(|c| c * 5 + i % 3).collect(),
                tags: (0..i % 3).map(|t| 1000 + t * 7 + i % 5).collect(),
            },
            behavior_type: (i % 4) as u8,
            timestamp: 1_000_000 + i as i64 * 17,
        })
        .collect()
}

/// Everything a segment view reads about its docs, through whichever path
/// it has (columns, or the row array once warmed).
fn read_all(snap: &crate::Snapshot) -> Vec<(hindsight_core::Behavior, u32, i64, u64, u8, u32)> {
    let mut out = Vec::new();
    for seg in snap.segments() {
        let docs: Vec<crate::DocId> = (0..seg.max_doc()).rev().collect();
        let mut batch = Vec::new();
        seg.behaviors_into(&docs, &mut batch);
        for (&doc, b) in docs.iter().zip(batch) {
            assert_eq!(b, seg.behavior(doc));
            out.push((
                b,
                seg.seq(doc),
                seg.timestamp(doc),
                seg.item(doc),
                seg.behavior_type(doc),
                seg.key_count(doc),
            ));
        }
    }
    out
}

#[test]
fn warmed_rows_read_exactly_what_the_columns_hold() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let batch = |from: u64| mixed_batch(from, 300);
    index.append(&batch(0)).unwrap();
    index.append(&batch(300)).unwrap();
    let cold = read_all(&index.snapshot());
    assert_eq!(cold.len(), 600);
    assert!(!index.snapshot().segments().iter().any(|s| s.is_warm()));
    let bytes = index.keep_rows_warm();
    assert!(bytes >= 600 * crate::ROW_BYTES, "{bytes} bytes");
    assert_eq!(read_all(&index.snapshot()), cold);
    // Segments added later are warmed by the refresh that opens them.
    index.append(&batch(600)).unwrap();
    let snap = index.snapshot();
    assert!(snap.segments().len() >= 3);
    assert!(snap.segments().iter().all(|s| s.is_warm()));
    let all = read_all(&snap);
    assert_eq!(all.len(), 900);
    assert_eq!(&all[..], &read_all(&index.snapshot())[..]);
    // And agree with a cold open of the same index.
    drop(snap);
    drop(index);
    let reopened = BehaviorIndex::open(dir.path()).unwrap();
    assert_eq!(read_all(&reopened.snapshot()), all);
}

/// (user, value, doc frequency, every doc, a sub-range read with a skip).
type KeyRead = (u64, u64, u32, Vec<crate::DocId>, Vec<crate::DocId>);

/// Every (user, category) and (user, tag) key's postings, with their doc
/// frequency, and a read of a sub-range with a skip, for users 0..7.
fn read_keys(snap: &crate::Snapshot) -> Vec<KeyRead> {
    use hindsight_core::FeatureKind;
    let mut out = Vec::new();
    for user in 0..8 {
        let history = snap.history(user);
        for run in history.runs() {
            for (kind, values) in [
                (FeatureKind::Category, 0..20),
                (FeatureKind::Tag, 1000..1030),
            ] {
                for v in values {
                    let Some(p) = run.postings(kind, v).unwrap() else {
                        continue;
                    };
                    let all: Vec<_> = p.docs(0, u32::MAX).unwrap().collect();
                    let mid = run.start + run.len() / 3;
                    let mut part = p.docs(mid, run.end - 1).unwrap();
                    let first = part.next();
                    part.skip_to(mid + run.len() / 3);
                    let rest: Vec<_> = first.into_iter().chain(part).collect();
                    out.push((user, v, p.doc_freq(), all, rest));
                }
            }
        }
    }
    out
}

#[test]
fn warmed_key_postings_equal_tantivys() {
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    let batch = |from: u64| mixed_batch(from, 6000);
    index.append(&batch(0)).unwrap();
    index.append(&batch(6000)).unwrap();
    let cold = read_keys(&index.snapshot());
    assert!(cold.len() > 100, "{} keys", cold.len());
    // Some lists span several of tantivy's 128-doc blocks.
    assert!(
        cold.iter().any(|k| k.2 > 128),
        "{:?}",
        cold.iter().map(|k| k.2).max()
    );
    index.keep_rows_warm();
    let snap = index.snapshot();
    assert!(snap.segments().iter().all(|s| s.key_docs().is_some()));
    assert_eq!(read_keys(&snap), cold);
    // Keys no behavior holds stay absent.
    let run = snap.history(3).runs()[0];
    assert!(run
        .postings(hindsight_core::FeatureKind::Category, 99)
        .unwrap()
        .is_none());
}

#[test]
fn the_two_bare_tantivy_baselines_agree() {
    use crate::baseline::{postings_newest, term_newest};
    use hindsight_core::Target;
    let dir = tempfile::tempdir().unwrap();
    let index = new_index(dir.path());
    index.append(&mixed_batch(0, 700)).unwrap();
    index.append(&mixed_batch(700, 700)).unwrap();
    let snap = index.snapshot();
    let mut nonempty = 0;
    for user in 0..8 {
        for cats in [vec![0], vec![5, 1], vec![2, 7, 12], vec![99]] {
            let target = Target {
                item_id: 1,
                features: ItemFeatures::with_categories(cats),
            };
            for (n, as_of) in [(10, AsOf::NOW), (50, AsOf::seq(150)), (0, AsOf::NOW)] {
                let a = term_newest(&snap, user, &target, n, as_of).unwrap();
                let b = postings_newest(&snap, user, &target, n, as_of).unwrap();
                assert_eq!(a, b, "user {user} {target:?} n {n}");
                nonempty += usize::from(!a.is_empty());
            }
        }
    }
    assert!(nonempty > 20, "{nonempty}");
}
