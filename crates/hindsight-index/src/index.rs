//! Opening, creating and refreshing a behavior index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hindsight_logs::DatasetMapping;
use tantivy::index::{IndexSettings, IndexSortByField, Order, SegmentId};
use tantivy::store::Compressor;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::manifest::{IndexState, Manifest};
use crate::schema::{build_schema, fields_of, names, Fields};
use crate::snapshot::{SegmentView, Snapshot};
use crate::{IndexError, Result};

mod integrity;
mod readonly;

pub use integrity::VerifyReport;

#[cfg(test)]
mod tests;

/// A behavior index on disk: a tantivy index sorted by (user, seq), its
/// manifest, and the current read snapshot.
///
/// ```no_run
/// use hindsight_index::BehaviorIndex;
/// use hindsight_core::AsOf;
///
/// let index = BehaviorIndex::open("index/taobao")?;
/// let snapshot = index.snapshot();
/// let history = snapshot.history(1);
/// for b in history.newest(&AsOf::seq(100), 5) {
///     println!("{} {} {}", b.seq, b.item_id, b.timestamp);
/// }
/// # Ok::<(), hindsight_index::IndexError>(())
/// ```
pub struct BehaviorIndex {
    path: PathBuf,
    pub(crate) index: Index,
    pub(crate) fields: Fields,
    manifest: Manifest,
    reader: IndexReader,
    views: Mutex<HashMap<SegmentId, Arc<SegmentView>>>,
    current: RwLock<Arc<Snapshot>>,
    read_only: bool,
    /// Set by [`keep_rows_warm`](Self::keep_rows_warm): every snapshot
    /// warms its new segments' row arrays.
    warm_rows: AtomicBool,
}

impl BehaviorIndex {
    /// Creates a new, empty index at `path` (the folder is created; it must
    /// not already hold an index). When creating fails, a folder this call
    /// created is removed again, so a failed start leaves nothing behind.
    pub fn create(path: impl AsRef<Path>, mapping: &DatasetMapping) -> Result<BehaviorIndex> {
        let path = path.as_ref();
        let existed = path.exists();
        let result = Self::create_in(path, mapping);
        if result.is_err() && !existed {
            let _ = std::fs::remove_dir_all(path);
        }
        result
    }

    fn create_in(path: &Path, mapping: &DatasetMapping) -> Result<BehaviorIndex> {
        std::fs::create_dir_all(path)?;
        if path.join(crate::manifest::MANIFEST_FILE).exists() || path.join("meta.json").exists() {
            return Err(IndexError::AlreadyExists(path.to_owned()));
        }
        let (schema, _) = build_schema();
        let settings = IndexSettings {
            sort_by_field: Some(IndexSortByField {
                field: names::UK.to_owned(),
                order: Order::Asc,
            }),
            docstore_compression: Compressor::None,
            ..IndexSettings::default()
        };
        // Manifest first: a folder with tantivy files but no manifest would
        // not be recognized as ours.
        Manifest::new(&mapping.name, serde_json::to_value(mapping)?).store(path)?;
        Index::builder()
            .schema(schema)
            .settings(settings)
            .create_in_dir(path)?;
        Self::open(path)
    }

    /// Opens an existing index for reading and writing; refuses one of
    /// another schema version, and a damaged one (see
    /// [`open_read_only`](Self::open_read_only) for the checks).
    pub fn open(path: impl AsRef<Path>) -> Result<BehaviorIndex> {
        Self::open_with(path.as_ref(), false)
    }

    /// Opens an existing index for reading only: no writer lock is taken
    /// and nothing in the folder is written, so an index on a read-only
    /// mount (a snapshot) opens. [`live_writer`](Self::live_writer),
    /// [`append`](Self::append) and [`ingest`](crate::ingest()) refuse it
    /// with [`IndexError::ReadOnly`].
    ///
    /// Both opens verify the index before reading it: the checksum of
    /// every segment file not verified unchanged before by this process,
    /// and each segment's document count in `meta.json` against its
    /// columns. A damaged index is refused with [`IndexError::Damaged`]
    /// naming the file; a panic inside tantivy is reported the same way.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<BehaviorIndex> {
        Self::open_with(path.as_ref(), true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<BehaviorIndex> {
        if !path.is_dir() {
            return Err(IndexError::NotAnIndex(path.to_owned()));
        }
        let manifest = Manifest::load(path)?;
        let index = integrity::guard(path, || {
            let opened = if read_only {
                readonly::ReadOnlyDirectory::open(path).and_then(Index::open)
            } else {
                Index::open_in_dir(path)
            };
            opened.map_err(|e| integrity::damaged_or(path, e))
        })?;
        let fields = fields_of(&index.schema())?;
        let sorted = index
            .settings()
            .sort_by_field
            .as_ref()
            .is_some_and(|s| s.field == names::UK && s.order == Order::Asc);
        if !sorted {
            return Err(IndexError::Corrupt(
                "the tantivy index is not sorted by (user, seq)".into(),
            ));
        }
        // Verify the files before tantivy's reader parses them.
        let metas = index
            .load_metas()
            .map_err(|e| integrity::damaged_or(path, e))?;
        integrity::verify_checksums(&index, path, &metas, false)?;
        let reader = integrity::guard(path, || {
            index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .map_err(|e| integrity::damaged_or(path, e))
        })?;
        let views = Mutex::new(HashMap::new());
        let first = Self::build_snapshot(path, &index, &reader, &fields, &views)?;
        Ok(BehaviorIndex {
            path: path.to_owned(),
            index,
            fields,
            manifest,
            reader,
            views,
            current: RwLock::new(Arc::new(first)),
            read_only,
            warm_rows: AtomicBool::new(false),
        })
    }

    /// Whether the index was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Verifies the checksum of every file of the current commit's
    /// segments, also those this process verified before (opening and
    /// refreshing skip those): what a periodic scrub or an operator's
    /// check runs. Fails with [`IndexError::Damaged`] at the first
    /// mismatch.
    pub fn verify_all(&self) -> Result<VerifyReport> {
        let metas = self
            .index
            .load_metas()
            .map_err(|e| integrity::damaged_or(&self.path, e))?;
        integrity::verify_checksums(&self.index, &self.path, &metas, true)
    }

    /// Opens the index at `path`, or creates it if the folder holds none.
    /// An existing index must have been built with the same mapping.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        mapping: &DatasetMapping,
    ) -> Result<BehaviorIndex> {
        let path = path.as_ref();
        if path.join(crate::manifest::MANIFEST_FILE).exists() {
            let index = Self::open(path)?;
            index.check_mapping(mapping)?;
            Ok(index)
        } else {
            Self::create(path, mapping)
        }
    }

    /// Fails unless the index was built with `mapping`; the error lists
    /// the fields that differ. The stored mapping is read back first, so
    /// fields added to the mapping format later (read with their default)
    /// do not count as differences.
    pub fn check_mapping(&self, mapping: &DatasetMapping) -> Result<()> {
        let stored = match serde_json::from_value::<DatasetMapping>(self.manifest.mapping.clone()) {
            Ok(m) => serde_json::to_value(m)?,
            Err(_) => self.manifest.mapping.clone(),
        };
        let given = serde_json::to_value(mapping)?;
        if stored != given {
            let diffs = crate::manifest::mapping_differences(&stored, &given);
            return Err(IndexError::MappingMismatch {
                path: self.path.clone(),
                found: self.manifest.mapping_name.clone(),
                given: mapping.name.clone(),
                differences: diffs.join("; "),
            });
        }
        Ok(())
    }

    /// The index folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The current snapshot (as of the last [`refresh`](Self::refresh)).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("snapshot lock poisoned").clone()
    }

    /// Loads the latest commit into a new current snapshot and returns it.
    ///
    /// New segments are verified as at open; a damaged one fails the
    /// refresh with [`IndexError::Damaged`] and the current snapshot stays.
    pub fn refresh(&self) -> Result<Arc<Snapshot>> {
        let path = &self.path;
        let metas = self
            .index
            .load_metas()
            .map_err(|e| integrity::damaged_or(path, e))?;
        integrity::verify_checksums(&self.index, path, &metas, false)?;
        integrity::guard(path, || {
            self.reader
                .reload()
                .map_err(|e| integrity::damaged_or(path, e))
        })?;
        let snap = Arc::new(Self::build_snapshot(
            path,
            &self.index,
            &self.reader,
            &self.fields,
            &self.views,
        )?);
        if self.warm_rows.load(Ordering::Relaxed) {
            snap.warm_rows();
        }
        *self.current.write().expect("snapshot lock poisoned") = snap.clone();
        Ok(snap)
    }

    /// Decodes every segment's behaviors into flat row arrays now and in
    /// every later [`refresh`](Self::refresh) (for the segments it adds),
    /// for what serves many retrievals (a server, a training job, a
    /// benchmark): reading a retrieved behavior then touches one or two
    /// cache lines instead of seven columns. Costs
    /// [`ROW_BYTES`](crate::ROW_BYTES) bytes per behavior plus 8 per
    /// category or tag, in memory; returns the bytes held now.
    pub fn keep_rows_warm(&self) -> usize {
        self.warm_rows.store(true, Ordering::Relaxed);
        self.snapshot().warm_rows()
    }

    fn build_snapshot(
        path: &Path,
        index: &Index,
        reader: &IndexReader,
        fields: &Fields,
        views: &Mutex<HashMap<SegmentId, Arc<SegmentView>>>,
    ) -> Result<Snapshot> {
        // The commit payload lives in meta.json, the searcher in the reader:
        // make sure both describe the same commit (a commit may land in
        // between; then take the newer one).
        for _ in 0..8 {
            let searcher = reader.searcher();
            let metas = index
                .load_metas()
                .map_err(|e| integrity::damaged_or(path, e))?;
            let mut seg_ids: Vec<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            let mut meta_ids: Vec<SegmentId> = metas.segments.iter().map(|m| m.id()).collect();
            seg_ids.sort();
            meta_ids.sort();
            if seg_ids != meta_ids {
                integrity::verify_checksums(index, path, &metas, false)?;
                integrity::guard(path, || {
                    reader.reload().map_err(|e| integrity::damaged_or(path, e))
                })?;
                continue;
            }
            // The searcher may hold a newer commit than the one verified
            // before its reload: verify what it holds (files already
            // verified cost one stat each).
            integrity::verify_checksums(index, path, &metas, false)?;
            let state = IndexState::from_payload(metas.payload.as_deref())?;
            let mut cache = views.lock().expect("segment cache poisoned");
            let mut segments = Vec::with_capacity(seg_ids.len());
            for r in searcher.segment_readers() {
                let view = match cache.get(&r.segment_id()) {
                    Some(v) => v.clone(),
                    None => integrity::guard(path, || {
                        integrity::check_segment(r, path)?;
                        Ok(Arc::new(SegmentView::open(r, fields)?))
                    })?,
                };
                segments.push(view);
            }
            cache.clear();
            for s in &segments {
                cache.insert(s.id(), s.clone());
            }
            return Ok(Snapshot {
                searcher,
                segments,
                state: Arc::new(state),
                fields: fields.clone(),
            });
        }
        Err(IndexError::Corrupt(
            "the searcher and meta.json kept disagreeing on the segment list; is another process committing very fast?".into(),
        ))
    }
}
