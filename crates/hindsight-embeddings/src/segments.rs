//! Per-segment arrays doc -> (row, ETA code, SDIM signature), so that a
//! query walks a user's run and reads codes by doc id, without a hash
//! lookup per behavior.
//!
//! Behaviors are documents of immutable tantivy segments; a segment's
//! arrays are built once (one item -> row lookup per document, through
//! `SegmentView::item`) and cached by the segment's id, across snapshots.
//! [`Embeddings::warm`] builds the arrays of every segment of a snapshot
//! and drops those of segments no longer in it (merged away); it takes
//! only a read lock when there is nothing to do, so the scorer calls it
//! with the snapshot of every request: after an append group commits, the
//! first request on the new snapshot builds the new (small) segment's
//! arrays, one lookup per appended behavior. A segment met by a query
//! through [`Embeddings::segment`] before that is built on the spot.
//!
//! Memory: 28 bytes per indexed behavior (a `u32` row, a `u64` code, a
//! `u64` signature, and the codes again transposed into bit planes for
//! `eta`'s scan, [`SegmentCodes::eta_planes`]), plus `4 x dim` bytes per distinct item the store does
//! not hold (appended after attaching: its vector comes from its features,
//! see [`crate::FeatureTables`], and its codes are computed then), plus,
//! once `sim-soft` has read the segment, its quantised vectors
//! ([`SoftBlocks`]: `ceil(dim / 4) * 4 + 4` bytes per behavior, 36 at
//! dimension 32, built on first use in one pass over the segment's docs).
//! Nothing is written to disk and the index is not changed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use hindsight_core::ItemFeatures;
use hindsight_index::{BehaviorIndex, DocId, SegmentView, Snapshot};

use crate::{EmbeddingStore, Result, SoftBlocks};

/// The codes of one segment's documents.
#[derive(Debug)]
pub struct SegmentCodes {
    rows: Vec<u32>,
    eta: Vec<u64>,
    /// `eta` transposed: see [`eta_planes`](Self::eta_planes).
    eta_planes: Vec<u64>,
    sdim: Vec<u64>,
    /// Vectors of the items the store does not hold, rows `base..`.
    extra: Vec<f32>,
    base: u32,
    dim: usize,
    /// The docs' vectors quantised for `sim-soft`, built on first use.
    soft: OnceLock<SoftBlocks>,
}

impl SegmentCodes {
    /// Builds the codes of every document of `seg`.
    pub fn build(store: &EmbeddingStore, seg: &SegmentView) -> SegmentCodes {
        let n = seg.max_doc() as usize;
        let base = store.len() as u32;
        let dim = store.dim();
        let mut codes = SegmentCodes {
            rows: Vec::with_capacity(n),
            eta: Vec::with_capacity(n),
            eta_planes: Vec::new(),
            sdim: Vec::with_capacity(n),
            extra: Vec::new(),
            base,
            dim,
            soft: OnceLock::new(),
        };
        // Items the store lacks: one computed row per distinct item.
        let mut unknown: HashMap<u64, u32> = HashMap::new();
        let mut extra_codes: Vec<(u64, u64)> = Vec::new();
        for doc in 0..n as DocId {
            let item = seg.item(doc);
            match store.row(item) {
                Some(r) => {
                    codes.rows.push(r);
                    codes.eta.push(store.eta_code(r));
                    codes.sdim.push(store.sdim_code(r));
                }
                None => {
                    let r = *unknown.entry(item).or_insert_with(|| {
                        let features = ItemFeatures {
                            categories: seg.categories(doc).collect(),
                            tags: seg.tags(doc).collect(),
                        };
                        let v = store.features_vector(&features);
                        extra_codes.push((store.eta_of(&v), store.sdim_of(&v)));
                        codes.extra.extend_from_slice(&v);
                        base + extra_codes.len() as u32 - 1
                    });
                    let (e, s) = extra_codes[(r - base) as usize];
                    codes.rows.push(r);
                    codes.eta.push(e);
                    codes.sdim.push(s);
                }
            }
        }
        codes.eta_planes = transpose_codes(&codes.eta);
        codes
    }

    /// ETA codes by doc id.
    ///
    /// See also [`eta_planes`](Self::eta_planes), the same codes bit-sliced.
    #[inline]
    pub fn eta(&self) -> &[u64] {
        &self.eta
    }

    /// The ETA codes bit-sliced, [`PLANE_DOCS`] docs a block: block `b`
    /// is the 256 words at `256 * b`, where the four words at `4 * j`
    /// hold bit `j` of the codes of docs `256 * b ..= 256 * b + 255`
    /// (doc `256 * b + 64 * w + i` at bit `i` of word `w`; docs past the
    /// segment's end are zero). `eta`'s scan adds the 64 planes of a block
    /// with carry-save adders, 256 Hamming distances at once.
    #[inline]
    pub fn eta_planes(&self) -> &[u64] {
        &self.eta_planes
    }

    /// SDIM signatures by doc id.
    #[inline]
    pub fn sdim(&self) -> &[u64] {
        &self.sdim
    }

    /// Rows by doc id (rows at or above the store's length are this
    /// segment's own, for items the store does not hold).
    #[inline]
    pub fn rows(&self) -> &[u32] {
        &self.rows
    }

    /// The vector of a document.
    #[inline]
    pub fn vector<'a>(&'a self, store: &'a EmbeddingStore, doc: DocId) -> &'a [f32] {
        let r = self.rows[doc as usize];
        if r < self.base {
            store.vector(r)
        } else {
            let i = (r - self.base) as usize * self.dim;
            &self.extra[i..i + self.dim]
        }
    }

    /// The docs' vectors quantised and blocked for `sim-soft`'s scan
    /// (built on the first call, once; `store` must be the one the codes
    /// were built from).
    pub fn soft(&self, store: &EmbeddingStore) -> &SoftBlocks {
        self.soft.get_or_init(|| {
            SoftBlocks::build(self.dim, self.rows.len(), |doc| self.vector(store, doc))
        })
    }

    /// Distinct items of the segment the store does not hold.
    pub fn unknown_items(&self) -> usize {
        self.extra.len() / self.dim.max(1)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.rows.len() * 4
            + self.eta.len() * 8
            + self.eta_planes.len() * 8
            + self.sdim.len() * 8
            + self.extra.len() * 4
            + self.soft.get().map_or(0, SoftBlocks::bytes)
    }
}

/// Docs per block of [`SegmentCodes::eta_planes`].
pub const PLANE_DOCS: usize = 256;

/// The bit planes of `codes` (layout in [`SegmentCodes::eta_planes`]).
pub fn transpose_codes(codes: &[u64]) -> Vec<u64> {
    let blocks = codes.len().div_ceil(PLANE_DOCS);
    let mut planes = vec![0u64; blocks * PLANE_DOCS];
    for (doc, &code) in codes.iter().enumerate() {
        let (b, lane) = (doc / PLANE_DOCS, doc % PLANE_DOCS);
        let (w, bit) = (lane / 64, lane % 64);
        let block = &mut planes[b * PLANE_DOCS..(b + 1) * PLANE_DOCS];
        let mut c = code;
        while c != 0 {
            let j = c.trailing_zeros() as usize;
            block[4 * j + w] |= 1 << bit;
            c &= c - 1;
        }
    }
    planes
}

/// What [`Embeddings::warm`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmReport {
    /// Segments whose arrays were built now.
    pub built: usize,
    /// Segments already cached.
    pub kept: usize,
    /// Cached segments dropped (no longer in the snapshot).
    pub dropped: usize,
    /// Bytes held by the cache afterwards.
    pub bytes: usize,
    /// Distinct items, summed over segments, that the store does not hold.
    pub unknown_items: usize,
}

/// An [`EmbeddingStore`] attached to an index: the store and the cache of
/// per-segment code arrays. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Embeddings {
    store: Arc<EmbeddingStore>,
    segments: RwLock<HashMap<u128, Arc<SegmentCodes>>>,
}

impl Embeddings {
    /// Wraps a store (no segment built yet).
    pub fn new(store: EmbeddingStore) -> Embeddings {
        Embeddings {
            store: Arc::new(store),
            segments: RwLock::new(HashMap::new()),
        }
    }

    /// Loads the store attached to `index` (checking it belongs to it) and
    /// builds the arrays of the index's current snapshot.
    pub fn open(index: &BehaviorIndex) -> Result<Embeddings> {
        let e = Embeddings::new(EmbeddingStore::open_for(index)?);
        e.warm(&index.snapshot());
        Ok(e)
    }

    /// The store.
    pub fn store(&self) -> &EmbeddingStore {
        &self.store
    }

    /// The codes of a segment, built now if not cached.
    pub fn segment(&self, seg: &SegmentView) -> Arc<SegmentCodes> {
        let uid = seg.uid();
        if let Some(c) = self
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&uid)
        {
            return c.clone();
        }
        let built = Arc::new(SegmentCodes::build(&self.store, seg));
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(uid)
            .or_insert(built)
            .clone()
    }

    /// [`warm`](Self::warm), then builds the quantised vectors `sim-soft`
    /// reads ([`SegmentCodes::soft`]) of every segment of `snapshot` that
    /// lacks them, so that no query pays for it (one pass over a segment's
    /// docs; on the movielens index, 100k behaviors at dimension 64, the
    /// first `sim-soft` retrieval, which builds them, took 25.7 ms against
    /// 38 us for `eta`).
    pub fn warm_soft(&self, snapshot: &Snapshot) -> WarmReport {
        let mut report = self.warm(snapshot);
        let mut extra = 0;
        for seg in snapshot.segments() {
            let codes = self.segment(seg);
            if codes.soft.get().is_none() {
                extra += codes.soft(&self.store).bytes();
            }
        }
        report.bytes += extra;
        report
    }

    /// Builds the arrays of every segment of `snapshot` not cached yet and
    /// drops the cached segments it no longer has.
    pub fn warm(&self, snapshot: &Snapshot) -> WarmReport {
        let mut report = WarmReport::default();
        let live: Vec<(u128, &SegmentView)> = snapshot
            .segments()
            .iter()
            .map(|s| (s.uid(), &**s))
            .collect();
        let missing: Vec<(u128, &SegmentView)> = {
            let cache = self.segments.read().unwrap_or_else(|e| e.into_inner());
            let missing: Vec<(u128, &SegmentView)> = live
                .iter()
                .filter(|(uid, _)| !cache.contains_key(uid))
                .copied()
                .collect();
            if missing.is_empty() && cache.len() == live.len() {
                // Nothing to build or drop: the read lock only (cheap
                // enough to call on every request).
                report.kept = live.len();
                report.bytes = cache.values().map(|c| c.bytes()).sum();
                report.unknown_items = cache.values().map(|c| c.unknown_items()).sum();
                return report;
            }
            missing
        };
        // Build outside the lock: queries keep reading the cache meanwhile.
        let built: Vec<(u128, Arc<SegmentCodes>)> = missing
            .iter()
            .map(|&(uid, seg)| (uid, Arc::new(SegmentCodes::build(&self.store, seg))))
            .collect();
        let mut cache = self.segments.write().unwrap_or_else(|e| e.into_inner());
        report.built = built.len();
        report.kept = live.len() - built.len();
        for (uid, codes) in built {
            cache.entry(uid).or_insert(codes);
        }
        let before = cache.len();
        cache.retain(|uid, _| live.iter().any(|(u, _)| u == uid));
        report.dropped = before - cache.len();
        report.bytes = cache.values().map(|c| c.bytes()).sum();
        report.unknown_items = cache.values().map(|c| c.unknown_items()).sum();
        report
    }
}
