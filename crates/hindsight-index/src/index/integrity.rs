//! Integrity checks run when an index is opened or refreshed.
//!
//! * **Checksums**: tantivy ends every segment file with a footer holding a
//!   CRC32 of its contents. Each file of the segments in `meta.json` is
//!   verified before tantivy parses it, once per process: a file is
//!   verified again only when its length or modification time changed
//!   (so a server's refresh after a group commit reads only the new
//!   segments' files).
//! * **Segment metadata against the files**: each segment's `max_doc` in
//!   `meta.json` must equal the row count of every column in its `.fast`
//!   file (a raised `max_doc` would make column reads run past their data).
//! * **No panic escapes**: opening runs under [`guard`], which turns a
//!   panic inside tantivy into [`IndexError::Damaged`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use tantivy::columnar::Column;
use tantivy::{Index, IndexMeta, SegmentReader, TantivyError};

use crate::schema::names;
use crate::{IndexError, Result};

/// The shortest footer tantivy writes: its length and magic number (u32
/// each) after the footer's own bytes.
const FOOTER_MIN_LEN: u64 = 8;

/// What identifies a file's contents cheaply: its length and modification time.
type Stamp = (u64, Option<SystemTime>);

/// Files whose checksum this process verified, with their stamp then.
static VERIFIED: LazyLock<Mutex<HashMap<PathBuf, Stamp>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// What a checksum pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files whose checksum was computed and matched.
    pub files_verified: u64,
    /// Bytes read to verify them.
    pub bytes_verified: u64,
    /// Files skipped because this process had verified them unchanged.
    pub files_cached: u64,
}

/// Runs `f`, turning a panic (tantivy asserts on malformed data) into
/// [`IndexError::Damaged`] about `dir`.
pub(crate) fn guard<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(IndexError::Damaged {
                path: dir.to_owned(),
                detail: format!("tantivy failed reading it: {what}"),
            })
        }
    }
}

/// Maps tantivy's data-corruption and missing-file errors to
/// [`IndexError::Damaged`]; other errors pass through.
pub(crate) fn damaged_or(dir: &Path, e: TantivyError) -> IndexError {
    use tantivy::directory::error::OpenReadError;
    match &e {
        TantivyError::DataCorruption(_) => IndexError::Damaged {
            path: dir.join("meta.json"),
            detail: e.to_string(),
        },
        TantivyError::OpenReadError(OpenReadError::FileDoesNotExist(p)) => IndexError::Damaged {
            path: dir.join(p),
            detail: "the file is missing".into(),
        },
        TantivyError::OpenReadError(OpenReadError::IncompatibleIndex(_)) => IndexError::Damaged {
            path: dir.to_owned(),
            detail: e.to_string(),
        },
        TantivyError::IncompatibleIndex(_) => IndexError::Damaged {
            path: dir.to_owned(),
            detail: e.to_string(),
        },
        _ => IndexError::Tantivy(e),
    }
}

/// Verifies the checksum of every file of the segments in `metas` (the
/// ones this process has not verified unchanged, or all with `force`).
pub(crate) fn verify_checksums(
    index: &Index,
    dir: &Path,
    metas: &IndexMeta,
    force: bool,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut files: Vec<PathBuf> = metas.list_segment_files().into_iter().collect();
    files.sort();
    for rel in files {
        let abs = dir.join(&rel);
        // The list holds candidates (e.g. positions, which this schema
        // never writes); a required file that is missing fails later, when
        // tantivy opens the segment.
        let md = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        // tantivy's footer reader panics on files of 4 to 7 bytes (it
        // checks for 4, then reads 8): found by fuzzing.
        if md.len() < FOOTER_MIN_LEN {
            return Err(IndexError::Damaged {
                path: abs,
                detail: format!(
                    "it is {} bytes long, shorter than tantivy's footer",
                    md.len()
                ),
            });
        }
        let stamp: Stamp = (md.len(), md.modified().ok());
        if !force && VERIFIED.lock().expect("verified set").get(&abs) == Some(&stamp) {
            report.files_cached += 1;
            continue;
        }
        let ok = guard(dir, || {
            index
                .directory()
                .validate_checksum(&rel)
                .map_err(|e| IndexError::Damaged {
                    path: abs.clone(),
                    detail: format!("its footer cannot be read: {e}"),
                })
        })?;
        if !ok {
            return Err(IndexError::Damaged {
                path: abs,
                detail: "its checksum does not match its contents".into(),
            });
        }
        report.files_verified += 1;
        report.bytes_verified += md.len();
        VERIFIED.lock().expect("verified set").insert(abs, stamp);
    }
    Ok(report)
}

/// Checks a segment's `max_doc` (from `meta.json`) against the row count
/// of each of its columns.
pub(crate) fn check_segment(reader: &SegmentReader, dir: &Path) -> Result<()> {
    let max_doc = reader.max_doc();
    let ff = reader.fast_fields();
    let fast_file = dir.join(format!("{}.fast", reader.segment_id().uuid_string()));
    let mut rows: Vec<(&str, u32)> = Vec::new();
    for name in [names::UK, names::ITEM, names::BTYPE, names::BKEY] {
        let col: Option<Column<u64>> = ff.column_opt(name)?;
        let col = col.ok_or_else(|| IndexError::Damaged {
            path: fast_file.clone(),
            detail: format!("the column {name} is missing"),
        })?;
        rows.push((name, col.num_docs()));
    }
    let ts: Option<Column<i64>> = ff.column_opt(names::TS)?;
    let ts = ts.ok_or_else(|| IndexError::Damaged {
        path: fast_file.clone(),
        detail: format!("the column {} is missing", names::TS),
    })?;
    rows.push((names::TS, ts.num_docs()));
    for name in [names::CATS, names::TAGS] {
        let col: Option<Column<u64>> = ff.column_opt(name)?;
        if let Some(col) = col {
            rows.push((name, col.num_docs()));
        }
    }
    if let Some((name, n)) = rows.into_iter().find(|&(_, n)| n != max_doc) {
        return Err(IndexError::Damaged {
            path: dir.join("meta.json"),
            detail: format!(
                "it records {max_doc} documents for segment {}, but column {name} of {} has {n} rows",
                reader.segment_id().uuid_string(),
                fast_file.display()
            ),
        });
    }
    Ok(())
}
