//! Property-driven fuzzing of the index opener: an index whose
//! `meta.json` or segment files are mutated is refused with an error or
//! opens and answers retrievals; nothing panics. A few seconds in the
//! normal suite; `scripts/fuzz.sh SECONDS` runs it for a bounded time (see
//! docs/reliability.md).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hindsight_core::{AsOf, ItemFeatures};
use hindsight_index::{BehaviorIndex, NewBehavior};
use hindsight_logs::DatasetMapping;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

#[path = "../../../tests/support/fuzz.rs"]
mod harness;
use harness::fuzz;

/// A two-segment index of 12 users, built once; each case mutates a copy.
fn base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let index =
            BehaviorIndex::create(dir.path(), &DatasetMapping::preset("taobao").unwrap()).unwrap();
        for round in 0..2u64 {
            let batch: Vec<NewBehavior> = (0..600u64)
                .map(|i| NewBehavior {
                    user_id: i % 12,
                    item_id: (i * 31 + round) % 211,
                    features: ItemFeatures::with_categories(vec![i % 17, 100 + i % 5]),
                    behavior_type: (i % 4) as u8,
                    timestamp: 1_000 + (round * 600 + i) as i64,
                })
                .collect();
            index.append(&batch).unwrap();
        }
        dir
    })
    .path()
}

fn copy_of(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite bytes of a file (meta.json or a segment file).
    Bytes {
        file: Index,
        edits: Vec<(Index, u8)>,
    },
    /// Cut a file at a point.
    Truncate { file: Index, at: Index },
    /// Set a field of a segment in meta.json.
    MetaField {
        segment: Index,
        field: &'static str,
        value: i64,
    },
    /// Remove a segment from meta.json, or duplicate one.
    MetaSegments { segment: Index, duplicate: bool },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), prop::collection::vec((any::<Index>(), any::<u8>()), 1..16))
            .prop_map(|(file, edits)| Mutation::Bytes { file, edits }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(file, at)| Mutation::Truncate { file, at }),
        2 => (
            any::<Index>(),
            prop_oneof![Just("max_doc"), Just("segment_id"), Just("deletes")],
            prop_oneof![Just(0i64), Just(-1), Just(1), Just(599), Just(601), Just(1 << 31), any::<i64>()],
        )
            .prop_map(|(segment, field, value)| Mutation::MetaField { segment, field, value }),
        1 => (any::<Index>(), any::<bool>())
            .prop_map(|(segment, duplicate)| Mutation::MetaSegments { segment, duplicate }),
    ]
}

/// meta.json and the segment files (the manifest is checked elsewhere).
fn targets(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == "meta.json" || (!n.starts_with('.') && !n.starts_with("hindsight"))
        })
        .collect();
    v.sort();
    v
}

fn apply(dir: &Path, m: &Mutation) {
    let files = targets(dir);
    match m {
        Mutation::Bytes { file, edits } => {
            let path = file.get(&files);
            let mut bytes = std::fs::read(path).unwrap();
            if bytes.is_empty() {
                return;
            }
            for (i, v) in edits {
                let at = i.index(bytes.len());
                bytes[at] = *v;
            }
            std::fs::write(path, bytes).unwrap();
        }
        Mutation::Truncate { file, at } => {
            let path = file.get(&files);
            let bytes = std::fs::read(path).unwrap();
            let at = at.index(bytes.len().max(1)).min(bytes.len());
            std::fs::write(path, &bytes[..at]).unwrap();
        }
        Mutation::MetaField {
            segment,
            field,
            value,
        } => {
            edit_meta(dir, |segs| {
                let i = segment.index(segs.len());
                segs[i][*field] = if *field == "segment_id" {
                    serde_json::Value::from(format!("{:032x}", *value as u64))
                } else if *field == "deletes" {
                    serde_json::json!({"num_deleted_docs": value, "opstamp": 1})
                } else {
                    serde_json::Value::from(*value)
                };
            });
        }
        Mutation::MetaSegments { segment, duplicate } => {
            edit_meta(dir, |segs| {
                let i = segment.index(segs.len());
                if *duplicate {
                    let s = segs[i].clone();
                    segs.push(s);
                } else {
                    segs.remove(i);
                }
            });
        }
    }
}

fn edit_meta(dir: &Path, f: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let path = dir.join("meta.json");
    let Ok(mut meta) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap())
    else {
        return;
    };
    let mut segs = meta["segments"].as_array().cloned().unwrap_or_default();
    if segs.is_empty() {
        return;
    }
    f(&mut segs);
    meta["segments"] = serde_json::Value::Array(segs);
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

fn open_and_read(dir: &Path) -> Result<(), TestCaseError> {
    match BehaviorIndex::open_read_only(dir) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(index) => {
            let snap = index.snapshot();
            for user in 0..13 {
                let h = snap.history(user);
                let newest = h.newest(&AsOf::NOW, 40);
                prop_assert!(newest.len() as u64 <= h.len());
                let _ = h.newest(&AsOf::seq(10), 5);
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_index_opener() {
    let base = base();
    fuzz("index_opener", 48, mutation(), |m| {
        let copy = copy_of(base);
        apply(copy.path(), &m);
        open_and_read(copy.path())
    });
}

#[test]
fn the_unmutated_copy_opens() {
    let copy = copy_of(base());
    let index = BehaviorIndex::open_read_only(copy.path()).unwrap();
    assert_eq!(index.snapshot().num_behaviors(), 1200);
}
