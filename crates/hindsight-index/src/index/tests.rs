//! Tests of the integrity checks, the read-only open and the writer on a
//! full disk. The mount tests need `mount` (root with CAP_SYS_ADMIN); they
//! print a note and pass vacuously where mounting is not permitted.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use hindsight_core::{AsOf, ItemFeatures};
use hindsight_logs::DatasetMapping;

use crate::{BehaviorIndex, IndexError, NewBehavior};

fn taobao() -> DatasetMapping {
    DatasetMapping::preset("taobao").unwrap()
}

/// `n` behaviors of 20 users, with pseudo-random items and categories.
fn behaviors(n: u64, salt: u64) -> Vec<NewBehavior> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            NewBehavior {
                user_id: i % 20,
                item_id: x % 100_000,
                features: ItemFeatures::with_categories(vec![x % 500, (x >> 20) % 500]),
                behavior_type: (x % 4) as u8,
                timestamp: 1_500_000_000 + i as i64,
            }
        })
        .collect()
}

/// An index with one segment of `n` behaviors.
fn index_with(dir: &Path, n: u64) {
    let index = BehaviorIndex::create(dir, &taobao()).unwrap();
    index.append(&behaviors(n, 1)).unwrap();
}

/// The files of `dir` ending in `ext`.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

/// Writes `len` pseudo-random bytes at the middle of `file`, then moves its
/// modification time on (damage by a writer changes it; set explicitly so
/// that the test does not depend on the clock's granularity).
fn damage_middle(file: &Path, len: usize) {
    let size = std::fs::metadata(file).unwrap().len();
    assert!(
        size > len as u64 * 2,
        "{} is only {size} bytes",
        file.display()
    );
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(size / 2 - len as u64 / 2)).unwrap();
    f.write_all(&bytes).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
}

/// Rewrites the first segment's `max_doc` in `meta.json` with `f`.
fn edit_max_doc(dir: &Path, f: impl Fn(u64) -> u64) {
    let path = dir.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let seg = &mut meta["segments"][0]["max_doc"];
    *seg = serde_json::Value::from(f(seg.as_u64().unwrap()));
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

fn damaged_path(r: Result<BehaviorIndex, IndexError>) -> (PathBuf, String) {
    match r {
        Err(IndexError::Damaged { path, detail }) => (path, detail),
        Err(e) => panic!("expected Damaged, got {e}"),
        Ok(_) => panic!("a damaged index was opened"),
    }
}

#[test]
fn random_bytes_in_a_fast_file_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    index_with(dir.path(), 3000);
    // Opens cleanly before the damage (and records the files as verified).
    BehaviorIndex::open(dir.path()).unwrap();
    let fast = files_with(dir.path(), ".fast");
    assert_eq!(fast.len(), 1);
    damage_middle(&fast[0], 4096);
    let (path, detail) = damaged_path(BehaviorIndex::open(dir.path()));
    assert_eq!(path, fast[0]);
    assert!(detail.contains("checksum"), "{detail}");
    let (path, _) = damaged_path(BehaviorIndex::open_read_only(dir.path()));
    assert_eq!(path, fast[0]);
    let msg = IndexError::Damaged {
        path,
        detail: String::new(),
    }
    .to_string();
    assert!(msg.contains(".fast") && msg.contains("rebuild"), "{msg}");
}

#[test]
fn damage_in_any_segment_file_is_refused() {
    for ext in [".idx", ".term", ".fieldnorm"] {
        let dir = tempfile::tempdir().unwrap();
        index_with(dir.path(), 3000);
        let files = files_with(dir.path(), ext);
        assert_eq!(files.len(), 1, "{ext}");
        let size = std::fs::metadata(&files[0]).unwrap().len() as usize;
        damage_middle(&files[0], (size / 4).clamp(1, 4096));
        let (path, _) = damaged_path(BehaviorIndex::open_read_only(dir.path()));
        assert_eq!(path, files[0], "{ext}");
    }
}

#[test]
fn verify_all_rereads_files_verified_before() {
    let dir = tempfile::tempdir().unwrap();
    index_with(dir.path(), 3000);
    let index = BehaviorIndex::open(dir.path()).unwrap();
    let report = index.verify_all().unwrap();
    assert!(report.files_verified >= 4, "{report:?}");
    assert!(report.bytes_verified > 0);
    assert_eq!(report.files_cached, 0);
    // Damage that keeps the stamp (bit rot): only the full pass sees it.
    let fast = files_with(dir.path(), ".fast").remove(0);
    let mtime = std::fs::metadata(&fast).unwrap().modified().unwrap();
    damage_middle(&fast, 4096);
    OpenOptions::new()
        .write(true)
        .open(&fast)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    match index.verify_all() {
        Err(IndexError::Damaged { path, .. }) => assert_eq!(path, fast),
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[test]
fn raised_or_lowered_max_doc_is_refused() {
    for (name, f) in [
        ("raised", (|n| n + 1000) as fn(u64) -> u64),
        ("lowered", |n| n - 1),
        ("huge", |_| u32::MAX as u64),
    ] {
        let dir = tempfile::tempdir().unwrap();
        index_with(dir.path(), 3000);
        edit_max_doc(dir.path(), f);
        let (path, detail) = damaged_path(BehaviorIndex::open_read_only(dir.path()));
        assert_eq!(path, dir.path().join("meta.json"), "{name}: {detail}");
        let (path, _) = damaged_path(BehaviorIndex::open(dir.path()));
        assert_eq!(path, dir.path().join("meta.json"), "{name}");
    }
}

#[test]
fn a_damaged_new_segment_fails_the_refresh_and_keeps_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    index_with(dir.path(), 3000);
    let reader = BehaviorIndex::open_read_only(dir.path()).unwrap();
    let before = files_with(dir.path(), ".fast");
    // Another handle (another process, in production) commits a segment.
    let writer = BehaviorIndex::open(dir.path()).unwrap();
    let mut live = writer.live_writer(32 << 20).unwrap();
    live.add_batch(&behaviors(3000, 2)).unwrap();
    live.commit().unwrap();
    let new: Vec<PathBuf> = files_with(dir.path(), ".fast")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(new.len(), 1);
    damage_middle(&new[0], 4096);
    match reader.refresh() {
        Err(IndexError::Damaged { path, .. }) => assert_eq!(path, new[0]),
        other => panic!(
            "expected Damaged, got {:?}",
            other.map(|s| s.num_behaviors())
        ),
    }
    assert_eq!(reader.snapshot().num_behaviors(), 3000);
    drop(live);
}

#[test]
fn a_read_only_open_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    index_with(dir.path(), 100);
    let index = BehaviorIndex::open_read_only(dir.path()).unwrap();
    assert!(index.is_read_only());
    assert_eq!(index.snapshot().history(3).len(), 5);
    for r in [
        index.append(&behaviors(1, 3)).map(|_| ()),
        index.live_writer(32 << 20).map(|_| ()),
    ] {
        match r {
            Err(IndexError::ReadOnly(p)) => assert_eq!(p, dir.path()),
            other => panic!("expected ReadOnly, got {other:?}"),
        }
    }
    // A writer in the meantime is seen by a refresh.
    BehaviorIndex::open(dir.path())
        .unwrap()
        .append(&behaviors(20, 4))
        .unwrap();
    assert_eq!(index.refresh().unwrap().num_behaviors(), 120);
}

/// A tmpfs mounted on a temporary folder for the life of the value.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size` (e.g. "4m"), or prints why not and returns None.
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "note: {test} skipped: mounting a tmpfs is not permitted here ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("note: {test} skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_snapshot_on_a_read_only_mount_opens_read_only() {
    let Some(fs) = Tmpfs::mount("16m", "a_snapshot_on_a_read_only_mount_opens_read_only") else {
        return;
    };
    let dir = fs.path().join("index");
    index_with(&dir, 500);
    fs.remount("ro");
    assert!(
        std::fs::write(fs.path().join("probe"), b"x").is_err(),
        "the mount is read-only"
    );
    let index = BehaviorIndex::open_read_only(&dir).unwrap();
    let snap = index.snapshot();
    assert_eq!(snap.num_behaviors(), 500);
    let newest = snap.history(7).newest(&AsOf::NOW, 3);
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[0].seq, 24);
    assert!(index.refresh().is_ok());
    assert!(matches!(
        index.append(&behaviors(1, 5)),
        Err(IndexError::ReadOnly(_))
    ));
    // The writable open cannot take tantivy's meta lock there.
    assert!(BehaviorIndex::open(&dir).is_err());
}

/// Fills the file system of `dir` with a file, leaving about `leave` bytes.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.flush();
    let len = std::fs::metadata(&path).unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    path
}

#[test]
fn a_full_disk_is_named_and_the_writer_recovers_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m", "a_full_disk_is_named_and_the_writer_recovers") else {
        return;
    };
    let dir = fs.path().join("index");
    index_with(&dir, 100);
    let index = BehaviorIndex::open(&dir).unwrap();
    let mut live = index.live_writer(32 << 20).unwrap();
    let filler = fill(fs.path(), 16 << 10);
    let batch = behaviors(20_000, 6);
    let err =
        add_and_commit(&mut live, &batch).expect_err("writing 20,000 behaviors into 16 KiB fails");
    match &err {
        IndexError::DiskFull { path, .. } => assert_eq!(path, &dir),
        other => panic!("expected DiskFull, got {other}"),
    }
    assert!(err.to_string().contains("full"), "{err}");
    // Still full: the next attempt names the full disk again, not a
    // killed writer.
    live.rollback().unwrap();
    let again = add_and_commit(&mut live, &batch).expect_err("still full");
    assert!(matches!(again, IndexError::DiskFull { .. }), "{again}");
    // Free the space: after a rollback the same writer commits.
    std::fs::remove_file(filler).unwrap();
    live.rollback().unwrap();
    let r = live.add_batch(&batch).unwrap();
    assert_eq!(r.added, 20_000);
    assert_eq!(live.commit().unwrap().num_behaviors(), 20_100);
    live.close().unwrap();
    drop(index);
    assert_eq!(
        BehaviorIndex::open_read_only(&dir)
            .unwrap()
            .snapshot()
            .num_behaviors(),
        20_100
    );
}

fn add_and_commit(live: &mut crate::LiveWriter<'_>, batch: &[NewBehavior]) -> crate::Result<()> {
    live.add_batch(batch)?;
    live.commit()?;
    Ok(())
}

#[test]
fn a_segment_file_shorter_than_a_footer_is_refused_naming_it() {
    // 4 to 7 bytes made tantivy's footer reader panic (found by fuzzing).
    for len in [0usize, 3, 5, 7] {
        let dir = tempfile::tempdir().unwrap();
        index_with(dir.path(), 100);
        let term = files_with(dir.path(), ".term").remove(0);
        let bytes = std::fs::read(&term).unwrap();
        std::fs::write(&term, &bytes[..len]).unwrap();
        let (path, detail) = damaged_path(BehaviorIndex::open_read_only(dir.path()));
        assert_eq!(path, term, "{len}: {detail}");
    }
}
