//! The binary on damaged and read-only indexes: a damaged index makes
//! `index info` and `retrieve` exit 1 with a message naming the file (never
//! a panic, exit 101); an index on a read-only mount is read.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// The shared helpers include some this file does not use.
#[allow(dead_code)]
mod common;
use common::bin;

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run hindsight")
}

/// An index of 3,000 behaviors of 10 users, built by `hindsight ingest`.
fn ingested(dir: &Path) -> PathBuf {
    let csv = dir.join("log.csv");
    let mut text = String::new();
    for k in 0..3000u64 {
        text += &format!(
            "{},{},{},pv,{}\n",
            k % 10 + 1,
            k % 700,
            k % 13,
            1_500_000_000 + k
        );
    }
    std::fs::write(&csv, text).unwrap();
    let idx = dir.join("index");
    let out = run(&[
        "ingest",
        "--preset",
        "taobao",
        csv.to_str().unwrap(),
        "--index",
        idx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    idx
}

/// `index info` and `retrieve` on `idx`.
fn info_and_retrieve(idx: &Path) -> [Output; 2] {
    let idx = idx.to_str().unwrap();
    [
        run(&["index", "info", "--index", idx]),
        run(&["retrieve", "--index", idx, "--user", "1", "--item", "5"]),
    ]
}

fn assert_refused(outs: &[Output; 2], needle: &str) {
    for out in outs {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains("is damaged"), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains("rebuild it from the logs"), "{err}");
    }
}

fn file_with(dir: &Path, ext: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    // Ingest may write one segment per indexing thread: any of them will do.
    assert!(!v.is_empty(), "no {ext} file in {}", dir.display());
    v.sort();
    v.remove(0)
}

#[test]
fn random_bytes_in_a_fast_file_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let idx = ingested(dir.path());
    for out in info_and_retrieve(&idx) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fast = file_with(&idx, ".fast");
    let len = std::fs::metadata(&fast).unwrap().len();
    assert!(len > 8192, "{len}");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(&fast).unwrap();
    f.seek(SeekFrom::Start(len / 2 - 2048)).unwrap();
    f.write_all(&noise).unwrap();
    drop(f);
    let name = fast.file_name().unwrap().to_string_lossy().into_owned();
    assert_refused(&info_and_retrieve(&idx), &name);
}

#[test]
fn a_raised_max_doc_exits_1_naming_meta_json() {
    let dir = tempfile::tempdir().unwrap();
    let idx = ingested(dir.path());
    let meta_path = idx.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let segments = meta["segments"].as_array_mut().unwrap();
    let max_doc = segments[0]["max_doc"].as_u64().unwrap();
    segments[0]["max_doc"] = serde_json::Value::from(max_doc + 5000);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert_refused(&info_and_retrieve(&idx), "meta.json");
}

#[test]
fn an_index_on_a_read_only_mount_is_read() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(mnt.path())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("note: an_index_on_a_read_only_mount_is_read skipped: cannot mount a tmpfs here ({other:?})");
            return;
        }
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt.path());
    let idx = ingested(mnt.path());
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::write(mnt.path().join("probe"), b"x").is_err());
    let [info, retrieve] = info_and_retrieve(&idx);
    for out in [&info, &retrieve] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&info.stdout).contains("3000"));
}
