//! Opening, creating and refreshing a behavior index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use hindsight_logs::DatasetMapping;
use tantivy::index::{IndexSettings, IndexSortByField, Order, SegmentId};
use tantivy::store::Compressor;
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::manifest::{IndexState, Manifest};
use crate::schema::{build_schema, fields_of, names, Fields};
use crate::snapshot::{SegmentView, Snapshot};
use crate::{IndexError, Result};

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

    /// Opens an existing index; refuses one of another schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<BehaviorIndex> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(IndexError::NotAnIndex(path.to_owned()));
        }
        let manifest = Manifest::load(path)?;
        let index = Index::open_in_dir(path)?;
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
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let views = Mutex::new(HashMap::new());
        let first = Self::build_snapshot(&index, &reader, &fields, &views)?;
        Ok(BehaviorIndex {
            path: path.to_owned(),
            index,
            fields,
            manifest,
            reader,
            views,
            current: RwLock::new(Arc::new(first)),
        })
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
    pub fn refresh(&self) -> Result<Arc<Snapshot>> {
        self.reader.reload()?;
        let snap = Arc::new(Self::build_snapshot(
            &self.index,
            &self.reader,
            &self.fields,
            &self.views,
        )?);
        *self.current.write().expect("snapshot lock poisoned") = snap.clone();
        Ok(snap)
    }

    fn build_snapshot(
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
            let metas = index.load_metas()?;
            let mut seg_ids: Vec<SegmentId> = searcher
                .segment_readers()
                .iter()
                .map(|r| r.segment_id())
                .collect();
            let mut meta_ids: Vec<SegmentId> = metas.segments.iter().map(|m| m.id()).collect();
            seg_ids.sort();
            meta_ids.sort();
            if seg_ids != meta_ids {
                reader.reload()?;
                continue;
            }
            let state = IndexState::from_payload(metas.payload.as_deref())?;
            let mut cache = views.lock().expect("segment cache poisoned");
            let mut segments = Vec::with_capacity(seg_ids.len());
            for r in searcher.segment_readers() {
                let view = match cache.get(&r.segment_id()) {
                    Some(v) => v.clone(),
                    None => Arc::new(SegmentView::open(r, fields)?),
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
