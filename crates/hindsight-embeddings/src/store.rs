//! The embeddings file: item vectors, their ETA and SDIM codes, the
//! hyperplanes and the feature tables that give an unseen item its vector.
//!
//! # Format, version 2 (`INDEX/embeddings/store.hse`)
//!
//! Version 2 adds `combine` to the header (`concat` or `sum`: how an
//! unseen item's vector is made from its features, [`FeatureCombine`]);
//! version 1 files, which lack it, are read as `concat`. Otherwise the
//! layout is unchanged:
//!
//! All integers and floats little endian:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `HSEMBED\n` |
//! | 4 | format version (`u32`, 2) |
//! | 4 | header length `H` (`u32`) |
//! | H | header: JSON [`StoreMeta`] (dimension, counts, hash settings, seed, the checkpoint and the index it belongs to) |
//! | 8 x items | item ids (`u64`, strictly increasing): row `r` is the `r`-th id |
//! | 4 x items x dim | vectors (`f32`, row-major) |
//! | 8 x items | ETA codes (`u64`, `eta_bits` low bits used) |
//! | 8 x items | SDIM signatures (`u64`, `rounds x bits` low bits used) |
//! | 4 x dim x eta_bits | ETA hyperplanes |
//! | 4 x dim x rounds x bits | SDIM hyperplanes |
//! | 4 x item_part | the out-of-vocabulary item row |
//! | 8 x c, 4 x (c + 1) x cw | category table: ids, then the OOV row and one row per id |
//! | 8 x t, 4 x (t + 1) x tw | tag table, same (absent when `tags` is null) |
//! | 32 | sha256 of every byte before it |
//!
//! A reader checks the magic, the version, the checksum, then that the
//! header's counts give exactly the file's length, that ids increase and
//! that every float is finite: a damaged file is refused with
//! [`EmbeddingError::Corrupt`], never read half-way.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hindsight_core::{ItemFeatures, Target};
use hindsight_index::BehaviorIndex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hash::{hyperplanes, sign_bits, SdimLayout};
use crate::{EmbeddingError, Result};

const MAGIC: &[u8; 8] = b"HSEMBED\n";
/// The format version this build writes (it reads 1 and 2).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads: version 1 has no
/// `combine` in its header (its vectors are concatenated parts).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// The folder of an index that holds its embeddings.
pub const EMBEDDINGS_DIR: &str = "embeddings";
/// The file name of the attached store in [`EMBEDDINGS_DIR`].
pub const STORE_FILE: &str = "store.hse";
/// Largest accepted vector dimension.
pub const MAX_DIM: usize = 4096;

/// Where the embeddings of the index in `index_dir` live.
pub fn store_path(index_dir: &Path) -> PathBuf {
    index_dir.join(EMBEDDINGS_DIR).join(STORE_FILE)
}

/// How codes are computed from the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashSettings {
    /// Bits of the ETA SimHash code (1 to 64; default 64).
    pub eta_bits: u32,
    /// SDIM rounds (default 4).
    pub sdim_rounds: u32,
    /// Bits per SDIM round (1 to 16; `rounds x bits <= 64`; default 6).
    pub sdim_bits: u32,
    /// Seed of the hyperplanes (default 42).
    pub seed: u64,
}

impl Default for HashSettings {
    fn default() -> Self {
        HashSettings {
            eta_bits: 64,
            sdim_rounds: 4,
            sdim_bits: 6,
            seed: 42,
        }
    }
}

impl HashSettings {
    /// Fails on settings no code can have.
    pub fn validate(&self) -> Result<SdimLayout> {
        if !(1..=64).contains(&self.eta_bits) {
            return Err(EmbeddingError::InvalidInput(format!(
                "the ETA code has 1 to 64 bits, got {}",
                self.eta_bits
            )));
        }
        SdimLayout::new(self.sdim_rounds, self.sdim_bits).ok_or_else(|| {
            EmbeddingError::InvalidInput(format!(
                "SDIM needs at least 1 round of 1 to {} bits with rounds x bits <= 64, got {} rounds of {} bits",
                SdimLayout::MAX_BITS,
                self.sdim_rounds,
                self.sdim_bits
            ))
        })
    }
}

/// The checkpoint a store's vectors come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Where it was loaded from (informative).
    pub path: String,
    /// Its model kind (`din`, ...).
    pub kind: String,
    /// The sha256 of its weights file: what a model trained on this
    /// store's retrieval records, and what serving compares.
    pub weights_sha256: String,
    /// What the vector of an item is, in words.
    pub representation: String,
}

/// The index a store belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    /// Its dataset mapping name.
    pub mapping_name: String,
    /// Its creation time (Unix seconds, from its manifest).
    pub created_at: i64,
    /// sha256 (first 16 bytes, hex) of the manifest's format, mapping name,
    /// creation time and mapping: names the index across appends and
    /// re-opens, differs for an index re-created from the same logs.
    pub id: String,
}

impl IndexRef {
    /// The identity of `index`.
    pub fn of(index: &BehaviorIndex) -> IndexRef {
        let m = index.manifest();
        let mut h = Sha256::new();
        h.update(m.format.as_bytes());
        h.update([0]);
        h.update(m.mapping_name.as_bytes());
        h.update([0]);
        h.update(m.created_at.to_le_bytes());
        h.update(m.mapping.to_string().as_bytes());
        let id = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        IndexRef {
            mapping_name: m.mapping_name.clone(),
            created_at: m.created_at,
            id,
        }
    }
}

impl std::fmt::Display for IndexRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} index {} created at {}",
            self.mapping_name, self.id, self.created_at
        )
    }
}

/// Rows of one feature table (categories or tags) by raw id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureTable {
    /// Raw ids, any order, unique.
    pub ids: Vec<u64>,
    /// `ids.len()` rows of `oov.len()` floats.
    pub rows: Vec<f32>,
    /// The row of an id the table does not hold.
    pub oov: Vec<f32>,
}

impl FeatureTable {
    fn width(&self) -> usize {
        self.oov.len()
    }
}

/// How the three parts of an item's vector from its features are put
/// together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureCombine {
    /// `[item part, category part, tag part]` (DIN's item representation).
    #[default]
    Concat,
    /// `item part + category part + tag part`, each of the full dimension
    /// (SASRec's item tower).
    Sum,
}

/// How the vector of an item the store does not hold is computed from its
/// features: the item OOV row, the mean of its category rows and the mean
/// of its tag rows (the first `max_categories` / `max_tags` of them; zeros
/// when it has none; an unknown id takes the table's OOV row), put
/// together as `combine` says. For a DIN checkpoint (concatenated) and a
/// SASRec checkpoint (summed) that is exactly the vector the model gives
/// an unseen item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureTables {
    /// Concatenated or summed parts.
    pub combine: FeatureCombine,
    /// The out-of-vocabulary item row.
    pub item_oov: Vec<f32>,
    /// Category rows.
    pub categories: FeatureTable,
    /// Tag rows (`None`: the representation has no tag part).
    pub tags: Option<FeatureTable>,
    /// At most this many categories of an item are averaged.
    pub max_categories: usize,
    /// At most this many tags of an item are averaged.
    pub max_tags: usize,
}

impl FeatureTables {
    /// The dimension of the vectors the tables make (`None`: summed parts
    /// of different widths).
    fn dim(&self) -> Option<usize> {
        combined_dim(
            self.combine,
            self.item_oov.len(),
            self.categories.width(),
            self.tags.as_ref().map(|t| t.width()),
        )
    }
}

fn combined_dim(
    combine: FeatureCombine,
    item: usize,
    category: usize,
    tag: Option<usize>,
) -> Option<usize> {
    match combine {
        FeatureCombine::Concat => Some(item + category + tag.unwrap_or(0)),
        FeatureCombine::Sum => (item == category && tag.is_none_or(|t| t == item)).then_some(item),
    }
}

/// A feature table with its id -> row map.
#[derive(Debug, Clone)]
struct Table {
    table: FeatureTable,
    row: HashMap<u64, usize>,
}

impl Table {
    fn new(table: FeatureTable) -> Table {
        let row = table
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        Table { table, row }
    }

    /// Appends the mean of the rows of `ids` (at most `max`) to `out`.
    fn mean_into(&self, ids: &[u64], max: usize, out: &mut Vec<f32>) {
        let w = self.table.width();
        let start = out.len();
        out.resize(start + w, 0.0);
        let used = &ids[..ids.len().min(max.max(1))];
        for id in used {
            let row = match self.row.get(id) {
                Some(&r) => &self.table.rows[r * w..(r + 1) * w],
                None => &self.table.oov[..],
            };
            for (o, x) in out[start..].iter_mut().zip(row) {
                *o += x;
            }
        }
        if used.len() > 1 {
            let k = used.len() as f32;
            for o in &mut out[start..] {
                *o /= k;
            }
        }
    }
}

/// What the header of an embeddings file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// `hindsight-embeddings`.
    pub format: String,
    /// Vector dimension.
    pub dim: usize,
    /// Items (rows).
    pub items: usize,
    /// How the codes were computed.
    pub hash: HashSettings,
    /// The checkpoint the vectors come from.
    pub model: ModelRef,
    /// The index the store was attached to.
    pub index: IndexRef,
    /// Width of the OOV item row (the first part of a vector).
    pub item_part: usize,
    /// Category ids and row width.
    pub categories: usize,
    /// Width of a category row.
    pub category_width: usize,
    /// Tag ids (`None`: no tag part).
    pub tags: Option<usize>,
    /// Width of a tag row.
    pub tag_width: usize,
    /// See [`FeatureTables::max_categories`].
    pub max_categories: usize,
    /// See [`FeatureTables::max_tags`].
    pub max_tags: usize,
    /// See [`FeatureTables::combine`] (absent in version 1 files: concat).
    #[serde(default)]
    pub combine: FeatureCombine,
    /// Unix seconds when it was written.
    pub created_at: i64,
}

/// The codes and vector of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCodes {
    /// Its vector (the stored one, or the one of its features).
    pub vector: Vec<f32>,
    /// Its ETA code.
    pub eta: u64,
    /// Its SDIM signature.
    pub sdim: u64,
    /// Whether the store holds the item (else the vector is its features').
    pub known: bool,
}

/// Item vectors with their codes, and what computes them for new items.
/// Immutable once built; share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct EmbeddingStore {
    meta: StoreMeta,
    ids: Vec<u64>,
    row: HashMap<u64, u32>,
    vectors: Vec<f32>,
    eta: Vec<u64>,
    sdim: Vec<u64>,
    eta_planes: Vec<f32>,
    sdim_planes: Vec<f32>,
    sdim_layout: SdimLayout,
    item_oov: Vec<f32>,
    categories: Table,
    tags: Option<Table>,
}

impl EmbeddingStore {
    /// Builds a store of `ids` (any order, unique) with `vectors`
    /// (`ids.len()` rows of `dim`, row-major) and computes their codes.
    pub fn build(
        ids: Vec<u64>,
        vectors: Vec<f32>,
        dim: usize,
        tables: FeatureTables,
        hash: HashSettings,
        model: ModelRef,
        index: IndexRef,
    ) -> Result<EmbeddingStore> {
        let layout = hash.validate()?;
        if dim == 0 || dim > MAX_DIM {
            return Err(EmbeddingError::InvalidInput(format!(
                "the vector dimension must be 1 to {MAX_DIM}, got {dim}"
            )));
        }
        if vectors.len() != ids.len() * dim {
            return Err(EmbeddingError::Dimension {
                what: format!("the vectors of {} items", ids.len()),
                expected: ids.len() * dim,
                found: vectors.len(),
            });
        }
        if tables.dim() != Some(dim) {
            return Err(EmbeddingError::Dimension {
                what: format!(
                    "the feature tables' representation ({:?}: item OOV row {}, category rows {}, tag rows {:?})",
                    tables.combine,
                    tables.item_oov.len(),
                    tables.categories.width(),
                    tables.tags.as_ref().map(|t| t.width())
                ),
                expected: dim,
                found: tables.dim().unwrap_or(0),
            });
        }
        check_table("category", &tables.categories)?;
        if let Some(t) = &tables.tags {
            check_table("tag", t)?;
        }
        check_finite("vectors", &vectors)?;
        check_finite("the OOV item row", &tables.item_oov)?;
        if ids.len() > u32::MAX as usize / 2 {
            return Err(EmbeddingError::InvalidInput(format!(
                "{} items is more than a store holds",
                ids.len()
            )));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|&i| ids[i]);
        if let Some(w) = order.windows(2).find(|w| ids[w[0]] == ids[w[1]]) {
            return Err(EmbeddingError::InvalidInput(format!(
                "item {} is given twice",
                ids[w[0]]
            )));
        }
        let sorted_ids: Vec<u64> = order.iter().map(|&i| ids[i]).collect();
        let mut sorted = Vec::with_capacity(vectors.len());
        for &i in &order {
            sorted.extend_from_slice(&vectors[i * dim..(i + 1) * dim]);
        }
        let eta_planes = hyperplanes(dim, hash.eta_bits as usize, hash.seed);
        let sdim_planes = hyperplanes(
            dim,
            (hash.sdim_rounds * hash.sdim_bits) as usize,
            hindsight_core::splitmix64(hash.seed ^ 0x5d1e_5d1e_5d1e_5d1e),
        );
        let meta = StoreMeta {
            format: "hindsight-embeddings".into(),
            dim,
            items: sorted_ids.len(),
            hash,
            model,
            index,
            item_part: tables.item_oov.len(),
            categories: tables.categories.ids.len(),
            category_width: tables.categories.width(),
            tags: tables.tags.as_ref().map(|t| t.ids.len()),
            tag_width: tables.tags.as_ref().map_or(0, |t| t.width()),
            max_categories: tables.max_categories,
            max_tags: tables.max_tags,
            combine: tables.combine,
            created_at: hindsight_core::host::now_unix(),
        };
        let mut store = EmbeddingStore {
            meta,
            row: HashMap::new(),
            ids: sorted_ids,
            vectors: sorted,
            eta: Vec::new(),
            sdim: Vec::new(),
            eta_planes,
            sdim_planes,
            sdim_layout: layout,
            item_oov: tables.item_oov,
            categories: Table::new(tables.categories),
            tags: tables.tags.map(Table::new),
        };
        store.eta = store
            .vectors
            .chunks_exact(dim)
            .map(|v| store.eta_of(v))
            .collect();
        store.sdim = store
            .vectors
            .chunks_exact(dim)
            .map(|v| store.sdim_of(v))
            .collect();
        store.index_rows();
        Ok(store)
    }

    fn index_rows(&mut self) {
        self.row = self
            .ids
            .iter()
            .enumerate()
            .map(|(r, &id)| (id, r as u32))
            .collect();
    }

    /// The header: dimension, counts, settings, checkpoint, index.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The bits of an ETA code.
    pub fn eta_bits(&self) -> u32 {
        self.meta.hash.eta_bits
    }

    /// How SDIM signatures are packed.
    pub fn sdim_layout(&self) -> SdimLayout {
        self.sdim_layout
    }

    /// The row of an item, if held.
    #[inline]
    pub fn row(&self, item: u64) -> Option<u32> {
        self.row.get(&item).copied()
    }

    /// The item ids, by row.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The vector of a row.
    #[inline]
    pub fn vector(&self, row: u32) -> &[f32] {
        let d = self.meta.dim;
        &self.vectors[row as usize * d..(row as usize + 1) * d]
    }

    /// The ETA code of a row.
    #[inline]
    pub fn eta_code(&self, row: u32) -> u64 {
        self.eta[row as usize]
    }

    /// The SDIM signature of a row.
    #[inline]
    pub fn sdim_code(&self, row: u32) -> u64 {
        self.sdim[row as usize]
    }

    /// The ETA code of any vector of the store's dimension.
    pub fn eta_of(&self, v: &[f32]) -> u64 {
        sign_bits(&self.eta_planes, self.meta.hash.eta_bits, v)
    }

    /// The SDIM signature of any vector of the store's dimension.
    pub fn sdim_of(&self, v: &[f32]) -> u64 {
        sign_bits(
            &self.sdim_planes,
            self.meta.hash.sdim_rounds * self.meta.hash.sdim_bits,
            v,
        )
    }

    /// The vector of an item the store does not hold, from its features
    /// (see [`FeatureTables`]).
    pub fn features_vector(&self, features: &ItemFeatures) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.meta.dim * 3);
        v.extend_from_slice(&self.item_oov);
        self.categories
            .mean_into(&features.categories, self.meta.max_categories, &mut v);
        if let Some(t) = &self.tags {
            t.mean_into(&features.tags, self.meta.max_tags, &mut v);
        }
        if self.meta.combine == FeatureCombine::Sum {
            // The parts were appended one after the other: add them up.
            let d = self.meta.dim;
            let (head, rest) = v.split_at_mut(d);
            for part in rest.chunks_exact(d) {
                for (o, x) in head.iter_mut().zip(part) {
                    *o += x;
                }
            }
            v.truncate(d);
        }
        v
    }

    /// The vector of a target: its stored row, or the vector of its
    /// features when the store does not hold the item (what `sim-soft`
    /// needs, without the codes [`target`](Self::target) also computes).
    pub fn target_vector(&self, target: &Target) -> std::borrow::Cow<'_, [f32]> {
        match self.row(target.item_id) {
            Some(r) => std::borrow::Cow::Borrowed(self.vector(r)),
            None => std::borrow::Cow::Owned(self.features_vector(&target.features)),
        }
    }

    /// The ETA code of a target (as in [`target`](Self::target), without
    /// its SDIM signature).
    pub fn target_eta(&self, target: &Target) -> u64 {
        match self.row(target.item_id) {
            Some(r) => self.eta_code(r),
            None => self.eta_of(&self.features_vector(&target.features)),
        }
    }

    /// The SDIM signature of a target (as in [`target`](Self::target),
    /// without its ETA code).
    pub fn target_sdim(&self, target: &Target) -> u64 {
        match self.row(target.item_id) {
            Some(r) => self.sdim_code(r),
            None => self.sdim_of(&self.features_vector(&target.features)),
        }
    }

    /// The vector and codes of a target: its stored row, or computed from
    /// its features when the store does not hold the item.
    pub fn target(&self, target: &Target) -> TargetCodes {
        match self.row(target.item_id) {
            Some(r) => TargetCodes {
                vector: self.vector(r).to_vec(),
                eta: self.eta_code(r),
                sdim: self.sdim_code(r),
                known: true,
            },
            None => {
                let vector = self.features_vector(&target.features);
                TargetCodes {
                    eta: self.eta_of(&vector),
                    sdim: self.sdim_of(&vector),
                    vector,
                    known: false,
                }
            }
        }
    }

    /// Bytes of the file this store saves to.
    pub fn file_bytes(&self) -> u64 {
        let header = serde_json::to_vec(&self.meta).map_or(0, |h| h.len());
        (16 + header + self.payload_len()) as u64 + 32
    }

    fn payload_len(&self) -> usize {
        let m = &self.meta;
        let n = m.items;
        let tag = m.tags.map_or(0, |t| 8 * t + 4 * (t + 1) * m.tag_width);
        8 * n
            + 4 * n * m.dim
            + 16 * n
            + 4 * m.dim * m.hash.eta_bits as usize
            + 4 * m.dim * (m.hash.sdim_rounds * m.hash.sdim_bits) as usize
            + 4 * m.item_part
            + 8 * m.categories
            + 4 * (m.categories + 1) * m.category_width
            + tag
    }

    /// Writes the store to `path` (temporary file, fsync, rename), creating
    /// the folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        }
        let header = serde_json::to_vec(&self.meta)
            .map_err(|e| EmbeddingError::InvalidInput(format!("cannot encode the header: {e}")))?;
        let mut buf = Vec::with_capacity(16 + header.len() + self.payload_len() + 32);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
        buf.extend_from_slice(&header);
        put_u64(&mut buf, &self.ids);
        put_f32(&mut buf, &self.vectors);
        put_u64(&mut buf, &self.eta);
        put_u64(&mut buf, &self.sdim);
        put_f32(&mut buf, &self.eta_planes);
        put_f32(&mut buf, &self.sdim_planes);
        put_f32(&mut buf, &self.item_oov);
        for t in std::iter::once(&self.categories).chain(self.tags.as_ref()) {
            put_u64(&mut buf, &t.table.ids);
            put_f32(&mut buf, &t.table.oov);
            put_f32(&mut buf, &t.table.rows);
        }
        let sum = Sha256::digest(&buf);
        buf.extend_from_slice(&sum);
        let tmp = path.with_extension("hse.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(())
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            io(path, source)
        })
    }

    /// Reads a store written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<EmbeddingStore> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EmbeddingError::Missing(path.to_path_buf()))
            }
            Err(source) => return Err(io(path, source)),
        };
        Self::decode(path, &bytes)
    }

    /// Reads the store attached to `index` and checks that it was attached
    /// to this very index.
    pub fn open_for(index: &BehaviorIndex) -> Result<EmbeddingStore> {
        let path = store_path(index.path());
        let store = Self::load(&path)?;
        let here = IndexRef::of(index);
        if store.meta.index.id != here.id {
            return Err(EmbeddingError::WrongIndex {
                path,
                expected: here.to_string(),
                found: store.meta.index.to_string(),
            });
        }
        Ok(store)
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<EmbeddingStore> {
        let corrupt = |detail: String| EmbeddingError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        if bytes.len() < 16 + 32 || &bytes[..8] != MAGIC {
            return Err(corrupt(
                "not an embeddings file (bad magic or too short)".into(),
            ));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(EmbeddingError::Version {
                path: path.to_path_buf(),
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body)[..] != sum[..] {
            return Err(corrupt("checksum mismatch".into()));
        }
        let hlen = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        if 16 + hlen > body.len() {
            return Err(corrupt(format!("header of {hlen} bytes overruns the file")));
        }
        let meta: StoreMeta = serde_json::from_slice(&body[16..16 + hlen])
            .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
        let layout = meta
            .hash
            .validate()
            .map_err(|e| corrupt(format!("header: {e}")))?;
        if meta.dim == 0 || meta.dim > MAX_DIM {
            return Err(corrupt(format!("dimension {}", meta.dim)));
        }
        if combined_dim(
            meta.combine,
            meta.item_part,
            meta.category_width,
            meta.tags.map(|_| meta.tag_width),
        ) != Some(meta.dim)
        {
            return Err(corrupt(
                "the feature tables' widths do not add up to the dimension".into(),
            ));
        }
        let mut r = Reader {
            bytes: &body[16 + hlen..],
        };
        let shape =
            |x: Option<Vec<u64>>| x.ok_or_else(|| corrupt("shorter than its header says".into()));
        let shapef =
            |x: Option<Vec<f32>>| x.ok_or_else(|| corrupt("shorter than its header says".into()));
        let n = meta.items;
        let ids = shape(r.u64s(n))?;
        let vectors = shapef(
            r.f32s(
                n.checked_mul(meta.dim)
                    .ok_or_else(|| corrupt("size".into()))?,
            ),
        )?;
        let eta = shape(r.u64s(n))?;
        let sdim = shape(r.u64s(n))?;
        let eta_planes = shapef(r.f32s(meta.dim * meta.hash.eta_bits as usize))?;
        let sdim_planes =
            shapef(r.f32s(meta.dim * (meta.hash.sdim_rounds * meta.hash.sdim_bits) as usize))?;
        let item_oov = shapef(r.f32s(meta.item_part))?;
        let mut table = |count: usize, width: usize| -> Result<FeatureTable> {
            let ids = shape(r.u64s(count))?;
            let oov = shapef(r.f32s(width))?;
            let rows = shapef(
                r.f32s(
                    count
                        .checked_mul(width)
                        .ok_or_else(|| corrupt("size".into()))?,
                ),
            )?;
            Ok(FeatureTable { ids, rows, oov })
        };
        let categories = table(meta.categories, meta.category_width)?;
        let tags = match meta.tags {
            Some(t) => Some(table(t, meta.tag_width)?),
            None => None,
        };
        if !r.bytes.is_empty() {
            return Err(corrupt(format!(
                "{} bytes more than its header says",
                r.bytes.len()
            )));
        }
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("item ids are not strictly increasing".into()));
        }
        for (what, v) in [
            ("vectors", &vectors),
            ("hyperplanes", &eta_planes),
            ("hyperplanes", &sdim_planes),
            ("the OOV item row", &item_oov),
            ("category rows", &categories.rows),
        ] {
            check_finite(what, v).map_err(|e| corrupt(e.to_string()))?;
        }
        let mut store = EmbeddingStore {
            meta,
            ids,
            row: HashMap::new(),
            vectors,
            eta,
            sdim,
            eta_planes,
            sdim_planes,
            sdim_layout: layout,
            item_oov,
            categories: Table::new(categories),
            tags: tags.map(Table::new),
        };
        store.index_rows();
        Ok(store)
    }
}

fn check_table(what: &str, t: &FeatureTable) -> Result<()> {
    if t.rows.len() != t.ids.len() * t.width() {
        return Err(EmbeddingError::Dimension {
            what: format!("the {what} table's rows"),
            expected: t.ids.len() * t.width(),
            found: t.rows.len(),
        });
    }
    check_finite(&format!("the {what} table"), &t.rows)?;
    check_finite(&format!("the {what} OOV row"), &t.oov)
}

fn check_finite(what: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(EmbeddingError::InvalidInput(format!(
            "{what} hold a non-finite value at position {i}"
        ))),
        None => Ok(()),
    }
}

fn io(path: &Path, source: std::io::Error) -> EmbeddingError {
    EmbeddingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn put_u64(buf: &mut Vec<u8>, v: &[u64]) {
    for x in v {
        buf.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_f32(buf: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        buf.extend_from_slice(&x.to_le_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Some(a)
    }

    fn u64s(&mut self, n: usize) -> Option<Vec<u64>> {
        let b = self.take(n.checked_mul(8)?)?;
        Some(
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        )
    }

    fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }
}
