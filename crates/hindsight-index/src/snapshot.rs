//! Read snapshots: one tantivy searcher generation with its columns open.
//!
//! A [`Snapshot`] is cheap to clone (an `Arc`) and immutable: every
//! retrieval of one scoring request runs against the same snapshot, so it
//! sees one consistent state of the index even while behaviors are being
//! appended. Columns and inverted-index readers are opened once per segment
//! and reused across snapshots (DESIGN.md measured about 0.2 ms to open a
//! fast-field column on a 2M-document segment, many times a retrieval here).

use std::sync::{Arc, OnceLock};

use hindsight_core::{feature_key, AsOf, Behavior, FeatureKind, ItemFeatures, Seq};
use tantivy::columnar::{Column, ColumnValues};
use tantivy::index::{InvertedIndexReader, SegmentId};
use tantivy::postings::{SegmentPostings, TermInfo};
use tantivy::schema::IndexRecordOption;
use tantivy::{Searcher, SegmentReader, Term};

use crate::key_docs::KeyDocs;
use crate::manifest::IndexState;
use crate::postings::KeyPostings;
use crate::schema::{key_count, names, split_user_seq_key, user_seq_key, Fields};
use crate::Result;

/// The position of a document in its segment (tantivy's doc id). Within a
/// user's [`Run`], doc order is `seq` order.
pub type DocId = u32;

/// The open columns and inverted index of one segment.
pub struct SegmentView {
    id: SegmentId,
    max_doc: DocId,
    /// The smallest and largest `uk` of the segment: users outside
    /// `[min_uk >> SEQ_BITS, max_uk >> SEQ_BITS]` have no run here.
    min_uk: u64,
    max_uk: u64,
    /// The segment's user directory: its users ascending, and the first
    /// doc of each one's run (`starts[i]`; the run ends at `starts[i + 1]`,
    /// the last one at `max_doc`). Built by one scan of `uk` when the
    /// segment is opened (views are cached across snapshots), so that
    /// finding a run is a search in a small array instead of two binary
    /// searches over the column.
    users: Vec<u64>,
    starts: Vec<DocId>,
    uk: Arc<dyn ColumnValues<u64>>,
    ts: Arc<dyn ColumnValues<i64>>,
    item: Arc<dyn ColumnValues<u64>>,
    btype: Arc<dyn ColumnValues<u64>>,
    bkey: Arc<dyn ColumnValues<u64>>,
    cats: Column<u64>,
    tags: Column<u64>,
    keys: Arc<InvertedIndexReader>,
    keys_field: tantivy::schema::Field,
    /// Every document's behavior decoded once, when the segment is warmed
    /// ([`warm_rows`](Self::warm_rows)); `Some(None)` where the segment
    /// does not fit the layout (columns are read then).
    rows: OnceLock<Option<Rows>>,
}

/// A segment's behaviors decoded into one flat array in doc order: the
/// read path of a retrieval touches one or two cache lines per behavior
/// instead of decoding seven tantivy columns (bit-unpacking, a
/// multi-value index lookup per feature column, a cache miss each on
/// scattered docs). Costs [`ROW_BYTES`] per document plus 8 bytes per
/// category or tag, in memory only (built from the columns; nothing on
/// disk changes).
struct Rows {
    docs: Vec<Row>,
    /// The categories then the tags of each doc, at `Row::off`.
    features: Vec<u64>,
    /// The postings of the segment's (user, category) and (user, tag) keys
    /// (`None` beyond 2^32 such pairs: lookups then go to tantivy).
    keys: Option<KeyDocs>,
}

/// One document's behavior, 32 bytes (two to a cache line).
#[derive(Clone, Copy)]
#[repr(C)]
struct Row {
    uk: u64,
    item: u64,
    ts: i64,
    /// Behavior type (8 bits), number of categories (12), of tags (12).
    meta: u32,
    /// Where the doc's categories start in `Rows::features`.
    off: u32,
}

/// Docs per [`SegmentView::prefetch`] call of the row reads: many misses in
/// flight, few enough lines (64 at most) to stay in cache until read. Not
/// tuned: 32 is the only value measured (docs/benchmarks.md, session 5).
pub const PREFETCH_STRETCH: usize = 32;

/// Bytes per document of a warmed segment's row array (plus 8 per
/// category or tag).
pub const ROW_BYTES: usize = std::mem::size_of::<Row>();

impl Row {
    #[inline]
    fn btype(&self) -> u8 {
        self.meta as u8
    }
    #[inline]
    fn ncats(&self) -> usize {
        ((self.meta >> 8) & 0xfff) as usize
    }
    #[inline]
    fn ntags(&self) -> usize {
        (self.meta >> 20) as usize
    }
}

impl Rows {
    /// Decodes every doc of `view` (`None` if a doc has more than 4,095
    /// categories or tags or the segment more than 2^32 feature values:
    /// beyond the limits every entry point enforces).
    fn build(view: &SegmentView) -> Option<Rows> {
        const CHUNK: usize = 4096;
        let max_doc = view.max_doc as usize;
        let mut docs = Vec::with_capacity(max_doc);
        let mut features = Vec::new();
        let (mut uk, mut item, mut btype, mut ts) = (
            vec![0u64; CHUNK],
            vec![0u64; CHUNK],
            vec![0u64; CHUNK],
            vec![0i64; CHUNK],
        );
        let mut from = 0usize;
        while from < max_doc {
            let n = CHUNK.min(max_doc - from);
            view.uk.get_range(from as u64, &mut uk[..n]);
            view.item.get_range(from as u64, &mut item[..n]);
            view.btype.get_range(from as u64, &mut btype[..n]);
            view.ts.get_range(from as u64, &mut ts[..n]);
            for i in 0..n {
                let doc = (from + i) as DocId;
                let off = u32::try_from(features.len()).ok()?;
                features.extend(view.cats.values_for_doc(doc));
                let ncats = features.len() - off as usize;
                features.extend(view.tags.values_for_doc(doc));
                let ntags = features.len() - off as usize - ncats;
                if ncats > 0xfff || ntags > 0xfff {
                    return None;
                }
                docs.push(Row {
                    uk: uk[i],
                    item: item[i],
                    ts: ts[i],
                    meta: (btype[i] as u8) as u32 | (ncats as u32) << 8 | (ntags as u32) << 20,
                    off,
                });
            }
            from += n;
        }
        u32::try_from(features.len()).ok()?;
        features.shrink_to_fit();
        let mut rows = Rows {
            docs,
            features,
            keys: None,
        };
        rows.keys = KeyDocs::build(
            rows.docs.len(),
            |d| rows.docs[d].uk,
            |d| rows.row_features(&rows.docs[d]),
        );
        Some(rows)
    }

    #[inline]
    fn behavior(&self, doc: DocId) -> Behavior {
        let r = &self.docs[doc as usize];
        let (user_id, seq) = split_user_seq_key(r.uk);
        let (cats, tags) = self.row_features(r);
        Behavior {
            user_id,
            seq,
            item_id: r.item,
            features: ItemFeatures {
                categories: cats.to_vec(),
                tags: tags.to_vec(),
            },
            behavior_type: r.btype(),
            timestamp: r.ts,
        }
    }

    /// [`behavior`](Self::behavior) of each of `docs`, appended to `out`,
    /// a [`PREFETCH_STRETCH`] of docs at a time after
    /// [`prefetch`](Self::prefetch) unless they are consecutive.
    fn behaviors_into(&self, docs: &[DocId], out: &mut Vec<Behavior>) {
        out.reserve(docs.len());
        for stretch in docs.chunks(PREFETCH_STRETCH) {
            // Consecutive docs (`recent`, padding) are what the hardware
            // prefetcher already follows; the hint would only cost.
            let consecutive = match (stretch.first(), stretch.last()) {
                (Some(a), Some(b)) => a.abs_diff(*b) as usize + 1 == stretch.len(),
                _ => true,
            };
            if !consecutive {
                self.prefetch(stretch);
            }
            out.extend(stretch.iter().map(|&doc| self.behavior(doc)));
        }
    }

    /// Asks for the rows of `docs` and then their features in cache.
    ///
    /// Scattered docs (a category's matches over a long history) cost two
    /// dependent cache misses each, the row and then its features, which a
    /// plain loop waits for one after another. Prefetching every row of a
    /// stretch and then (the rows now arriving) every row's features lets
    /// the misses of the stretch overlap.
    fn prefetch(&self, docs: &[DocId]) {
        for &doc in docs {
            if let Some(r) = self.docs.get(doc as usize) {
                hindsight_core::cache::prefetch(r);
            }
        }
        for &doc in docs {
            if let Some((cats, tags)) = self.features_of(doc) {
                hindsight_core::cache::prefetch_slice(cats);
                hindsight_core::cache::prefetch_slice(tags);
            }
        }
    }

    /// The categories and the tags of a row of this array (its offset and
    /// counts were written with the arena, so they are in range).
    #[inline]
    fn row_features(&self, r: &Row) -> (&[u64], &[u64]) {
        let off = r.off as usize;
        let (nc, nt) = (r.ncats(), r.ntags());
        (
            &self.features[off..off + nc],
            &self.features[off + nc..off + nc + nt],
        )
    }

    /// [`row_features`](Self::row_features) of `doc`, `None` past the end.
    #[inline]
    fn features_of(&self, doc: DocId) -> Option<(&[u64], &[u64])> {
        self.docs.get(doc as usize).map(|r| self.row_features(r))
    }

    fn bytes(&self) -> usize {
        self.docs.len() * ROW_BYTES
            + self.features.len() * 8
            + self.keys.as_ref().map_or(0, KeyDocs::bytes)
    }
}

fn full_column<T>(reader: &SegmentReader, name: &str) -> Result<Arc<dyn ColumnValues<T>>>
where
    T: tantivy::columnar::HasAssociatedColumnType + Default,
    tantivy::columnar::DynamicColumn: Into<Option<Column<T>>>,
{
    let col: Column<T> = reader.fast_fields().column_opt(name)?.ok_or_else(|| {
        crate::IndexError::Corrupt(format!(
            "segment {} lacks column {name}",
            reader.segment_id()
        ))
    })?;
    Ok(col.first_or_default_col(T::default()))
}

impl SegmentView {
    /// Opens the columns of a segment.
    pub(crate) fn open(reader: &SegmentReader, fields: &Fields) -> Result<SegmentView> {
        if reader.has_deletes() {
            // Retrieval reads doc ranges directly and never deletes; an
            // index with deletes was written by something else.
            return Err(crate::IndexError::Corrupt(format!(
                "segment {} has deleted documents, which hindsight never writes",
                reader.segment_id()
            )));
        }
        let ff = reader.fast_fields();
        let multi = |name: &str| -> Result<Column<u64>> {
            Ok(ff
                .column_opt::<u64>(name)?
                .unwrap_or_else(|| Column::build_empty_column(reader.max_doc())))
        };
        let uk = full_column::<u64>(reader, names::UK)?;
        let (min_uk, max_uk) = if reader.max_doc() == 0 {
            (u64::MAX, 0)
        } else {
            (uk.min_value(), uk.max_value())
        };
        let (users, starts) = user_directory(uk.as_ref(), reader.max_doc());
        Ok(SegmentView {
            id: reader.segment_id(),
            max_doc: reader.max_doc(),
            min_uk,
            max_uk,
            users,
            starts,
            uk,
            ts: full_column(reader, names::TS)?,
            item: full_column(reader, names::ITEM)?,
            btype: full_column(reader, names::BTYPE)?,
            bkey: full_column(reader, names::BKEY)?,
            cats: multi(names::CATS)?,
            tags: multi(names::TAGS)?,
            keys: reader.inverted_index(fields.keys)?,
            keys_field: fields.keys,
            rows: OnceLock::new(),
        })
    }

    /// Decodes the segment's behaviors into a flat row array (once; later
    /// calls return at once) so that reading a behavior, its `seq`,
    /// timestamp or item touches one cache line: what a server or a
    /// training job does before its first request. Returns the bytes the
    /// array holds (0 where the segment does not fit the layout; reads then
    /// stay on the columns, with the same results).
    pub fn warm_rows(&self) -> usize {
        self.rows
            .get_or_init(|| Rows::build(self))
            .as_ref()
            .map_or(0, Rows::bytes)
    }

    /// Whether [`warm_rows`](Self::warm_rows) has run on this segment.
    pub fn is_warm(&self) -> bool {
        self.rows.get().is_some()
    }

    #[inline]
    fn rows(&self) -> Option<&Rows> {
        self.rows.get().and_then(Option::as_ref)
    }

    /// The in-memory category and tag postings of a warmed segment.
    #[inline]
    pub(crate) fn key_docs(&self) -> Option<&KeyDocs> {
        self.rows().and_then(|r| r.keys.as_ref())
    }

    /// The segment's id.
    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }

    /// The segment's unique id (tantivy's segment UUID as a number). A
    /// segment never changes once written, so this names its exact
    /// contents: caches of per-document data (such as the embedding
    /// codes of `hindsight-embeddings`) are keyed by it.
    pub fn uid(&self) -> u128 {
        u128::from_str_radix(&self.id.uuid_string(), 16).unwrap_or_default()
    }

    /// Number of documents.
    pub fn max_doc(&self) -> DocId {
        self.max_doc
    }

    /// First doc id in `[lo, hi)` whose `uk >= key` (binary search: `uk` is sorted).
    #[cfg(test)]
    fn lower_bound(&self, mut lo: DocId, mut hi: DocId, key: u64) -> DocId {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.uk.get_val(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The user's run of documents in this segment, if any.
    pub fn run(&self, user: u64) -> Option<Run<'_>> {
        // O(1) for the segments that cannot hold the user (most of them
        // when an ingest wrote users in order, one range per segment).
        if user_seq_key(user, 0) > self.max_uk
            || user_seq_key(user, crate::schema::MAX_SEQ) < self.min_uk
        {
            return None;
        }
        let i = self.users.binary_search(&user).ok()?;
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(self.max_doc);
        Some(Run {
            seg: self,
            user,
            start,
            end,
            first_seq: self.seq(start),
        })
    }

    /// The run of `user` found by binary search over the `uk` column (the
    /// reference [`run`](Self::run)'s directory is checked against).
    #[cfg(test)]
    pub(crate) fn run_by_search(&self, user: u64) -> Option<(DocId, DocId)> {
        let start = self.lower_bound(0, self.max_doc, user_seq_key(user, 0));
        if start >= self.max_doc || split_user_seq_key(self.uk.get_val(start)).0 != user {
            return None;
        }
        let end = self.lower_bound(start, self.max_doc, user_seq_key(user + 1, 0));
        Some((start, end))
    }

    /// The sequence number of a document.
    #[inline]
    pub fn seq(&self, doc: DocId) -> Seq {
        if let Some(r) = self.rows() {
            return split_user_seq_key(r.docs[doc as usize].uk).1;
        }
        split_user_seq_key(self.uk.get_val(doc)).1
    }

    /// The timestamp of a document.
    #[inline]
    pub fn timestamp(&self, doc: DocId) -> i64 {
        if let Some(r) = self.rows() {
            return r.docs[doc as usize].ts;
        }
        self.ts.get_val(doc)
    }

    /// The behavior type of a document.
    #[inline]
    pub fn behavior_type(&self, doc: DocId) -> u8 {
        if let Some(r) = self.rows() {
            return r.docs[doc as usize].btype();
        }
        self.btype.get_val(doc) as u8
    }

    /// The item of a document.
    #[inline]
    pub fn item(&self, doc: DocId) -> u64 {
        if let Some(r) = self.rows() {
            return r.docs[doc as usize].item;
        }
        self.item.get_val(doc)
    }

    /// The identity key of a document.
    #[inline]
    pub fn behavior_key(&self, doc: DocId) -> u64 {
        self.bkey.get_val(doc)
    }

    /// Number of feature keys of a document, its length for BM25 (see
    /// [`key_count`](crate::schema::key_count)).
    #[inline]
    pub fn key_count(&self, doc: DocId) -> u32 {
        if let Some(r) = self.rows() {
            let r = &r.docs[doc as usize];
            return key_count(r.ncats(), r.ntags());
        }
        let c = self.cats.index.value_row_ids(doc);
        let t = self.tags.index.value_row_ids(doc);
        key_count((c.end - c.start) as usize, (t.end - t.start) as usize)
    }

    /// The whole behavior stored at `doc`.
    pub fn behavior(&self, doc: DocId) -> Behavior {
        match self.rows() {
            Some(r) => r.behavior(doc),
            None => self.behavior_from_columns(doc),
        }
    }

    /// The `uk` of a document read from its tantivy column even when the
    /// segment is warm (the baselines).
    pub(crate) fn uk_from_columns(&self, doc: DocId) -> u64 {
        self.uk.get_val(doc)
    }

    /// The behavior at `doc` read from the tantivy columns even when the
    /// segment is warm (what the baselines of the benchmarks read).
    pub(crate) fn behavior_from_columns(&self, doc: DocId) -> Behavior {
        let (user_id, seq) = split_user_seq_key(self.uk.get_val(doc));
        Behavior {
            user_id,
            seq,
            item_id: self.item(doc),
            features: ItemFeatures {
                categories: self.cats.values_for_doc(doc).collect(),
                tags: self.tags.values_for_doc(doc).collect(),
            },
            behavior_type: self.behavior_type(doc),
            timestamp: self.timestamp(doc),
        }
    }

    /// The behaviors stored at `docs` (in that order), appended to `out`:
    /// [`behavior`](Self::behavior) for many documents, reading each
    /// column once per 64 documents rather than once per document.
    pub fn behaviors_into(&self, docs: &[DocId], out: &mut Vec<Behavior>) {
        if let Some(r) = self.rows() {
            r.behaviors_into(docs, out);
            return;
        }
        const CHUNK: usize = 64;
        let mut uk = [0u64; CHUNK];
        let mut item = [0u64; CHUNK];
        let mut btype = [0u64; CHUNK];
        let mut ts = [0i64; CHUNK];
        out.reserve(docs.len());
        for chunk in docs.chunks(CHUNK) {
            let n = chunk.len();
            self.uk.get_vals(chunk, &mut uk[..n]);
            self.item.get_vals(chunk, &mut item[..n]);
            self.btype.get_vals(chunk, &mut btype[..n]);
            self.ts.get_vals(chunk, &mut ts[..n]);
            for (i, &doc) in chunk.iter().enumerate() {
                let (user_id, seq) = split_user_seq_key(uk[i]);
                out.push(Behavior {
                    user_id,
                    seq,
                    item_id: item[i],
                    features: ItemFeatures {
                        categories: multi_values(&self.cats, doc),
                        tags: multi_values(&self.tags, doc),
                    },
                    behavior_type: btype[i] as u8,
                    timestamp: ts[i],
                });
            }
        }
    }

    /// A hint that the behaviors at `docs` are about to be read: brings
    /// their rows and features towards the cache (at most
    /// [`PREFETCH_STRETCH`] docs a call are useful). No effect on results,
    /// none on a segment that is not warm.
    #[inline]
    pub fn prefetch(&self, docs: &[DocId]) {
        if let Some(r) = self.rows() {
            r.prefetch(docs);
        }
    }

    /// The categories of a document.
    #[inline]
    pub fn categories(&self, doc: DocId) -> impl Iterator<Item = u64> + '_ {
        match self.rows().and_then(|r| r.features_of(doc)) {
            Some((cats, _)) => Values::Row(cats.iter()),
            None => Values::Column(self.cats.values_for_doc(doc)),
        }
    }

    /// The tags of a document.
    #[inline]
    pub fn tags(&self, doc: DocId) -> impl Iterator<Item = u64> + '_ {
        match self.rows().and_then(|r| r.features_of(doc)) {
            Some((_, tags)) => Values::Row(tags.iter()),
            None => Values::Column(self.tags.values_for_doc(doc)),
        }
    }

    /// The term info of a feature key in this segment (its document
    /// frequency and where its postings are), `None` if absent.
    pub(crate) fn term_info(&self, key: u64) -> Result<Option<TermInfo>> {
        Ok(self
            .keys
            .get_term_info(&Term::from_field_u64(self.keys_field, key))?)
    }

    /// Opens the postings of a term found by [`term_info`](Self::term_info)
    /// (no second dictionary lookup).
    pub(crate) fn postings_from(&self, info: &TermInfo) -> Result<SegmentPostings> {
        Ok(self
            .keys
            .read_postings_from_terminfo(info, IndexRecordOption::Basic)?)
    }
}

/// The categories or tags of a doc: from its row when the segment is warm,
/// else from the column.
enum Values<'a, C> {
    Row(std::slice::Iter<'a, u64>),
    Column(C),
}

impl<C: Iterator<Item = u64>> Iterator for Values<'_, C> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        match self {
            Values::Row(it) => it.next().copied(),
            Values::Column(c) => c.next(),
        }
    }
}

/// The users of a segment's `uk` column, ascending, and the first doc of
/// each one's run (one sequential scan).
fn user_directory(uk: &dyn ColumnValues<u64>, max_doc: DocId) -> (Vec<u64>, Vec<DocId>) {
    const CHUNK: usize = 4096;
    let (mut users, mut starts) = (Vec::new(), Vec::new());
    let mut buf = vec![0u64; CHUNK];
    let mut doc: DocId = 0;
    while doc < max_doc {
        let n = CHUNK.min((max_doc - doc) as usize);
        uk.get_range(doc as u64, &mut buf[..n]);
        for (i, &key) in buf[..n].iter().enumerate() {
            let user = split_user_seq_key(key).0;
            if users.last() != Some(&user) {
                users.push(user);
                starts.push(doc + i as DocId);
            }
        }
        doc += n as DocId;
    }
    users.shrink_to_fit();
    starts.shrink_to_fit();
    (users, starts)
}

/// The values of a multi-valued column at `doc` (no allocation when none).
#[inline]
fn multi_values(col: &Column<u64>, doc: DocId) -> Vec<u64> {
    let rows = col.index.value_row_ids(doc);
    if rows.is_empty() {
        return Vec::new();
    }
    let mut v = vec![0u64; (rows.end - rows.start) as usize];
    col.values.get_range(rows.start as u64, &mut v);
    v
}

/// One user's contiguous run of documents in one segment: doc ids
/// `start..end`, in strictly increasing `seq`.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// The segment.
    pub seg: &'a SegmentView,
    /// The user.
    pub user: u64,
    /// First doc id of the run.
    pub start: DocId,
    /// One past the last doc id.
    pub end: DocId,
    /// `seq` of the first document.
    pub first_seq: Seq,
}

impl<'a> Run<'a> {
    /// The postings of the user's feature `(kind, value)` in this run
    /// (`None` if no behavior of the segment has it).
    pub fn postings(&self, kind: FeatureKind, value: u64) -> Result<Option<KeyPostings<'a>>> {
        let key = feature_key(self.user, kind, value);
        if matches!(kind, FeatureKind::Category | FeatureKind::Tag) {
            if let Some(kd) = self.seg.key_docs() {
                return Ok(kd.get(key).map(|docs| KeyPostings::in_memory(*self, docs)));
            }
        }
        let info = self.seg.term_info(key)?;
        Ok(info.map(|info| KeyPostings::new(*self, info)))
    }

    /// The doc holding the behavior with this `seq`, if in this run.
    pub fn doc_of_seq(&self, seq: Seq) -> Option<DocId> {
        let doc = self.partition(self.start, self.end, |d| self.seg.seq(d) < seq);
        (doc < self.end && self.seg.seq(doc) == seq).then_some(doc)
    }

    /// Number of behaviors in the run.
    pub fn len(&self) -> u32 {
        self.end - self.start
    }

    /// Whether the run is empty (never true for runs a snapshot returns).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The first doc id at or after the as-of point: docs `start..bound` are
    /// exactly the run's behaviors strictly before it. `ts_monotonic` says
    /// whether timestamps may be binary-searched (see `IndexState`).
    pub fn bound(&self, as_of: &AsOf, ts_monotonic: bool) -> DocId {
        let mut end = self.end;
        if let Some(s) = as_of.seq {
            end = self.partition(self.start, end, |doc| self.seg.seq(doc) < s);
        }
        if let Some(t) = as_of.timestamp {
            if ts_monotonic {
                end = self.partition(self.start, end, |doc| self.seg.timestamp(doc) < t);
            }
        }
        end
    }

    /// First doc in `[lo, hi)` for which `pred` is false, given that `pred`
    /// is true on a prefix and false after it.
    fn partition(&self, mut lo: DocId, mut hi: DocId, pred: impl Fn(DocId) -> bool) -> DocId {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// An immutable, consistent view of the index for retrieval.
pub struct Snapshot {
    pub(crate) searcher: Searcher,
    pub(crate) segments: Vec<Arc<SegmentView>>,
    pub(crate) state: Arc<IndexState>,
    pub(crate) fields: Fields,
}

impl Snapshot {
    /// Warms every segment's row array ([`SegmentView::warm_rows`]);
    /// returns the bytes they hold.
    pub fn warm_rows(&self) -> usize {
        self.segments.iter().map(|s| s.warm_rows()).sum()
    }

    /// The committed state (counts, vocabularies) this snapshot belongs to.
    pub fn state(&self) -> &IndexState {
        &self.state
    }

    /// Number of behaviors visible in this snapshot.
    pub fn num_behaviors(&self) -> u64 {
        self.searcher.num_docs()
    }

    /// The open segments.
    pub fn segments(&self) -> &[Arc<SegmentView>] {
        &self.segments
    }

    /// The tantivy searcher (for the baseline).
    pub(crate) fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// The schema's field handles.
    pub(crate) fn fields(&self) -> &Fields {
        &self.fields
    }

    /// A user's history: their runs across segments, oldest run first.
    /// A user the index has never seen gets an empty history.
    pub fn history(&self, user: u64) -> History<'_> {
        let mut runs: Vec<Run<'_>> = self.segments.iter().filter_map(|s| s.run(user)).collect();
        runs.sort_unstable_by_key(|r| r.first_seq);
        History {
            user,
            runs,
            ts_monotonic: self.state.ts_monotonic,
            avg_keys: self.state.avg_keys(),
            min_keys: self.state.min_keys(),
        }
    }

    /// The features of an item as last indexed (from any user's behavior),
    /// or `None` if no behavior has the item.
    pub fn item_features(&self, item: u64) -> Result<Option<ItemFeatures>> {
        let term = Term::from_field_u64(self.fields.item, item);
        // Newest segments are usually last; any indexed copy will do.
        // `segments[i]` is the view of `segment_readers()[i]`.
        for (i, seg) in self.segments.iter().enumerate().rev() {
            let reader = self.searcher.segment_reader(i as u32);
            let inv = reader.inverted_index(self.fields.item)?;
            if let Some(info) = inv.get_term_info(&term)? {
                let postings = inv.read_postings_from_terminfo(&info, IndexRecordOption::Basic)?;
                let doc = tantivy::DocSet::doc(&postings);
                if doc != tantivy::TERMINATED {
                    let b = seg.behavior(doc);
                    return Ok(Some(b.features));
                }
            }
        }
        Ok(None)
    }
}

/// Counts over a whole snapshot (a full scan of two columns).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotStats {
    /// Behaviors.
    pub behaviors: u64,
    /// Distinct users.
    pub users: u64,
    /// Distinct items.
    pub items: u64,
    /// Documents per segment.
    pub segments: Vec<u32>,
    /// Behaviors of the user with the longest history.
    pub max_history: u64,
}

impl Snapshot {
    /// Every user with at least one behavior, ascending.
    pub fn users(&self) -> Vec<u64> {
        let mut users = roaring::RoaringTreemap::new();
        for seg in &self.segments {
            let mut last = u64::MAX;
            for doc in 0..seg.max_doc {
                let user = split_user_seq_key(seg.uk.get_val(doc)).0;
                if user != last {
                    users.insert(user);
                    last = user;
                }
            }
        }
        users.iter().collect()
    }

    /// Every behavior's (item, features), in doc order (for item tables and
    /// popularity counts).
    pub fn for_each_item(&self, mut f: impl FnMut(u64, &ItemFeatures)) {
        let mut features = ItemFeatures::default();
        for seg in &self.segments {
            for doc in 0..seg.max_doc {
                features.categories.clear();
                features.categories.extend(seg.cats.values_for_doc(doc));
                features.tags.clear();
                features.tags.extend(seg.tags.values_for_doc(doc));
                f(seg.item.get_val(doc), &features);
            }
        }
    }

    /// Scans the snapshot for its counts (tens of milliseconds per million
    /// behaviors).
    pub fn stats(&self) -> SnapshotStats {
        let mut users = roaring::RoaringTreemap::new();
        let mut items = roaring::RoaringTreemap::new();
        let mut per_user: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        for seg in &self.segments {
            let mut run_user = u64::MAX;
            let mut run_len = 0u64;
            for doc in 0..seg.max_doc {
                let user = split_user_seq_key(seg.uk.get_val(doc)).0;
                if user != run_user {
                    if run_len > 0 {
                        *per_user.entry(run_user).or_default() += run_len;
                    }
                    run_user = user;
                    run_len = 0;
                    users.insert(user);
                }
                run_len += 1;
                items.insert(seg.item.get_val(doc));
            }
            if run_len > 0 {
                *per_user.entry(run_user).or_default() += run_len;
            }
        }
        SnapshotStats {
            behaviors: self.num_behaviors(),
            users: users.len(),
            items: items.len(),
            segments: self.segments.iter().map(|s| s.max_doc).collect(),
            max_history: per_user.values().copied().max().unwrap_or(0),
        }
    }
}

/// A user's history within a snapshot.
pub struct History<'a> {
    /// The user.
    pub user: u64,
    runs: Vec<Run<'a>>,
    ts_monotonic: bool,
    avg_keys: f32,
    min_keys: f32,
}

impl<'a> History<'a> {
    /// The user's runs, ordered by their first `seq`.
    pub fn runs(&self) -> &[Run<'a>] {
        &self.runs
    }

    /// Whether timestamps are non-decreasing in `seq` (index-wide).
    pub fn ts_monotonic(&self) -> bool {
        self.ts_monotonic
    }

    /// Average number of feature keys per behavior over the whole index
    /// (BM25's average document length).
    pub fn avg_feature_keys(&self) -> f32 {
        self.avg_keys
    }

    /// The fewest feature keys of any behavior in the index (BM25's
    /// shortest document length).
    pub fn min_feature_keys(&self) -> f32 {
        self.min_keys
    }

    /// Number of behaviors of the user.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.len() as u64).sum()
    }

    /// Whether the user has no behavior.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The next `seq` an appended behavior gets (0 for a new user).
    pub fn next_seq(&self) -> Seq {
        self.runs
            .iter()
            .map(|r| r.seg.seq(r.end - 1) + 1)
            .max()
            .unwrap_or(0)
    }

    /// The largest timestamp of the user's behaviors, if any.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.runs
            .iter()
            .flat_map(|r| (r.start..r.end).map(move |d| r.seg.timestamp(d)))
            .max()
    }

    /// Visits the eligible behaviors newest first (descending `seq`), across
    /// runs, until `visit` returns false. `as_of` is applied exactly; docs
    /// are passed as (run index, doc id).
    pub fn for_each_newest_first(&self, as_of: &AsOf, mut visit: impl FnMut(usize, DocId) -> bool) {
        // Cursor per run: the next doc to visit going down (exclusive).
        let mut cursors: Vec<DocId> = self
            .runs
            .iter()
            .map(|r| r.bound(as_of, self.ts_monotonic))
            .collect();
        let needs_ts_check = as_of.timestamp.is_some() && !self.ts_monotonic;
        loop {
            // Pick the run whose next doc has the largest seq (few runs: linear).
            let mut best: Option<(usize, Seq)> = None;
            for (i, r) in self.runs.iter().enumerate() {
                if cursors[i] > r.start {
                    let s = r.seg.seq(cursors[i] - 1);
                    if best.is_none_or(|(_, bs)| s > bs) {
                        best = Some((i, s));
                    }
                }
            }
            let Some((i, _)) = best else { return };
            cursors[i] -= 1;
            let doc = cursors[i];
            if needs_ts_check
                && as_of
                    .timestamp
                    .is_some_and(|t| self.runs[i].seg.timestamp(doc) >= t)
            {
                continue;
            }
            if !visit(i, doc) {
                return;
            }
        }
    }

    /// The user's eligible behaviors, newest first, at most `limit`.
    pub fn newest(&self, as_of: &AsOf, limit: usize) -> Vec<Behavior> {
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return out;
        }
        self.for_each_newest_first(as_of, |i, doc| {
            out.push(self.runs[i].seg.behavior(doc));
            out.len() < limit
        });
        out
    }
}
