//! The write path: sequence numbers, idempotency and commits.
//!
//! Behaviors reach the index through a [`Writer`] one user at a time, each
//! user's behaviors in `(timestamp, order)` order. The writer gives each a
//! sequence number continuing the user's history and an identity key
//! `(user, item, type, timestamp, k)`, where `k` counts identical
//! `(item, type, timestamp)` events before it in the same batch; a behavior
//! whose key the index already holds is skipped. Re-ingesting a file, or
//! retrying an append, therefore adds nothing twice, while genuinely
//! repeated events in one log are all kept.
//!
//! `seq` is the order in which behaviors entered the user's history. Within
//! one batch that is `(timestamp, row)` order; a later batch continues
//! after the user's last `seq`, even for a behavior whose timestamp is
//! older than the user's newest one (a "late" behavior). Late behaviors
//! clear `IndexState::ts_monotonic`, which makes retrieval as of a
//! timestamp check each behavior's timestamp instead of binary-searching.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hindsight_core::{feature_key, FeatureKind, ItemFeatures, Seq};
use serde::{Deserialize, Serialize};
use tantivy::indexer::UserOperation;
use tantivy::{IndexWriter, TantivyDocument};

use crate::manifest::{IndexState, IngestRecord, MAX_INGEST_RECORDS};
use crate::schema::{behavior_document, key_count, MAX_SEQ, MAX_USER_ID};
use crate::snapshot::Snapshot;
use crate::{BehaviorIndex, IndexError, Result};

/// A behavior to add to the index (it gets its `seq` when added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBehavior {
    /// The user.
    pub user_id: u64,
    /// The item.
    pub item_id: u64,
    /// The item's features.
    #[serde(default)]
    pub features: ItemFeatures,
    /// Behavior type id.
    pub behavior_type: u8,
    /// Unix seconds.
    pub timestamp: i64,
}

/// What an append did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReport {
    /// Behaviors added.
    pub added: u64,
    /// Behaviors skipped because the index already held them.
    pub duplicates: u64,
}

/// At most this many documents of one user are handed to tantivy at once
/// (a longer history is split, which can give it two runs in a segment
/// pair; retrieval handles any number of runs).
const MAX_PENDING: usize = 1 << 18;

/// Identity key of a behavior (see the module docs).
fn behavior_key(user: u64, item: u64, btype: u8, ts: i64, k: u32) -> u64 {
    let a = feature_key(user, FeatureKind::Item, item);
    let b = feature_key(
        ts as u64,
        FeatureKind::BehaviorType,
        btype as u64 | ((k as u64) << 8),
    );
    a ^ b.rotate_left(17)
}

struct UserCursor {
    next_seq: Seq,
    last_ts: Option<i64>,
    /// Identity keys of the user's committed behaviors with a timestamp at
    /// or after `scanned_from` (all of them when timestamps are not
    /// monotonic), plus, for a live writer, those added since the commit.
    existing: HashSet<u64>,
    scanned_from: i64,
    /// Occurrences of (item, type) at the current timestamp.
    occurrences: HashMap<(u64, u8), u32>,
    occ_ts: i64,
    /// The batch the occurrence counts belong to.
    batch: u64,
}

/// Adds to `keys` the identity keys of `history`'s behaviors with a
/// timestamp in `[from, to)`; with non-monotonic timestamps, of all of them.
fn load_keys(history: &crate::History<'_>, from: i64, to: i64, keys: &mut HashSet<u64>) {
    let monotonic = history.ts_monotonic();
    for run in history.runs() {
        let seg = run.seg;
        if !monotonic {
            keys.extend((run.start..run.end).map(|d| seg.behavior_key(d)));
            continue;
        }
        // Identical events share a timestamp: with monotonic timestamps
        // only behaviors at or after the first new one can be duplicates.
        let first_at_or_after = |ts: i64| {
            let (mut lo, mut hi) = (run.start, run.end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if seg.timestamp(mid) < ts {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let (lo, hi) = (first_at_or_after(from), first_at_or_after(to));
        keys.extend((lo..hi).map(|d| seg.behavior_key(d)));
    }
}

/// Adds behaviors user by user and commits them with the index state.
pub(crate) struct Writer<'a> {
    index: &'a BehaviorIndex,
    writer: IndexWriter,
    base: Arc<Snapshot>,
    pub(crate) state: IndexState,
    cursors: HashMap<u64, UserCursor>,
    /// Keep every touched user's cursor until the next commit (a live
    /// writer, whose batches may each touch a user again); otherwise only
    /// the current user's (ingest, where each user comes once).
    keep_cursors: bool,
    batch: u64,
    pub(crate) uncommitted: u64,
    /// Documents of the current user not yet handed to tantivy: a user's
    /// documents go to tantivy as one batch (`IndexWriter::run`), which
    /// tantivy indexes into one segment, so that with several indexing
    /// threads each user still has one run per segment written.
    pending: Vec<UserOperation<TantivyDocument>>,
    pending_user: Option<u64>,
    record: Option<IngestRecord>,
    /// The detail of the last disk-full error, until a commit or rollback.
    disk_full: Option<String>,
}

impl<'a> Writer<'a> {
    /// Opens tantivy's writer (taking its lock) on top of the current
    /// snapshot, with `threads` indexing threads sharing `memory_budget`.
    pub(crate) fn new(
        index: &'a BehaviorIndex,
        memory_budget: usize,
        threads: usize,
    ) -> Result<Writer<'a>> {
        if index.is_read_only() {
            return Err(IndexError::ReadOnly(index.path().to_owned()));
        }
        let threads = threads.clamp(1, 8);
        let writer: IndexWriter = match index.index.writer_with_num_threads(threads, memory_budget)
        {
            Ok(w) => w,
            Err(tantivy::TantivyError::LockFailure(_, _)) => {
                return Err(IndexError::Locked(index.path().to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let base = index.refresh()?;
        Ok(Writer {
            index,
            writer,
            state: base.state().clone(),
            base,
            cursors: HashMap::new(),
            keep_cursors: false,
            batch: 0,
            uncommitted: 0,
            pending: Vec::new(),
            pending_user: None,
            record: None,
            disk_full: None,
        })
    }

    /// Starts recording an ingest run in the index state.
    pub(crate) fn start_record(&mut self, record: IngestRecord) {
        self.record = Some(record);
    }

    /// The run being recorded.
    pub(crate) fn record_mut(&mut self) -> Option<&mut IngestRecord> {
        self.record.as_mut()
    }

    fn cursor_for(&mut self, user: u64, first_ts: i64) -> Result<&mut UserCursor> {
        if user > MAX_USER_ID {
            return Err(IndexError::InvalidInput(format!(
                "user id {user} exceeds the largest the index holds ({MAX_USER_ID})"
            )));
        }
        let batch = self.batch;
        if !self.cursors.contains_key(&user) {
            if !self.keep_cursors {
                self.cursors.clear();
            }
            let history = self.base.history(user);
            let mut existing = HashSet::new();
            let mut last_ts = None;
            let monotonic = history.ts_monotonic();
            if !history.is_empty() {
                load_keys(&history, first_ts, i64::MAX, &mut existing);
                // The newest behavior (largest seq) has the largest timestamp
                // while timestamps are monotonic; otherwise the flag is
                // already cleared and last_ts no longer matters.
                if let Some(last) = history.runs().iter().max_by_key(|r| r.seg.seq(r.end - 1)) {
                    last_ts = Some(last.seg.timestamp(last.end - 1));
                }
            }
            self.cursors.insert(
                user,
                UserCursor {
                    next_seq: history.next_seq(),
                    last_ts,
                    existing,
                    scanned_from: if monotonic { first_ts } else { i64::MIN },
                    occurrences: HashMap::new(),
                    occ_ts: i64::MIN,
                    batch,
                },
            );
        }
        let cursor = self.cursors.get_mut(&user).expect("cursor just set");
        if cursor.batch != batch {
            // A later batch of a live writer: its identical events are
            // counted afresh, and it may reach further back in time.
            cursor.batch = batch;
            cursor.occurrences.clear();
            cursor.occ_ts = i64::MIN;
            if first_ts < cursor.scanned_from {
                let history = self.base.history(user);
                load_keys(
                    &history,
                    first_ts,
                    cursor.scanned_from,
                    &mut cursor.existing,
                );
                cursor.scanned_from = first_ts;
            }
        }
        Ok(cursor)
    }

    /// Adds one behavior. Each user's behaviors must come together, in
    /// `(timestamp, order)` order. Returns whether it was added (false: a
    /// duplicate of an indexed behavior).
    pub(crate) fn add(&mut self, b: &NewBehavior) -> Result<bool> {
        let keep = self.keep_cursors;
        let cursor = self.cursor_for(b.user_id, b.timestamp)?;
        if cursor.occ_ts != b.timestamp {
            cursor.occurrences.clear();
            cursor.occ_ts = b.timestamp;
        }
        let k = cursor
            .occurrences
            .entry((b.item_id, b.behavior_type))
            .or_insert(0);
        let key = behavior_key(b.user_id, b.item_id, b.behavior_type, b.timestamp, *k);
        *k += 1;
        if cursor.existing.contains(&key) {
            return Ok(false);
        }
        let seq = cursor.next_seq;
        if seq > MAX_SEQ {
            return Err(IndexError::InvalidInput(format!(
                "user {} has more than {} behaviors, the most the index holds per user",
                b.user_id,
                MAX_SEQ as u64 + 1
            )));
        }
        cursor.next_seq += 1;
        if keep {
            cursor.existing.insert(key);
        }
        let late = cursor.last_ts.is_some_and(|t| b.timestamp < t);
        cursor.last_ts = Some(cursor.last_ts.map_or(b.timestamp, |t| t.max(b.timestamp)));

        if self.pending_user != Some(b.user_id) || self.pending.len() >= MAX_PENDING {
            self.flush_pending()?;
            self.pending_user = Some(b.user_id);
        }
        let doc = behavior_document(&self.index.fields, b, seq, key);
        self.pending.push(UserOperation::Add(doc));

        if late {
            self.state.ts_monotonic = false;
        }
        let keys = u64::from(key_count(
            b.features.categories.len(),
            b.features.tags.len(),
        ));
        self.state.behaviors += 1;
        self.state.feature_keys += keys;
        self.state.min_feature_keys =
            Some(self.state.min_feature_keys.map_or(keys, |m| m.min(keys)));
        self.uncommitted += 1;
        Ok(true)
    }

    /// Hands the current user's documents to tantivy as one batch.
    pub(crate) fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ops = std::mem::take(&mut self.pending);
        if let Err(e) = self.writer.run(ops) {
            return Err(self.worker_error(e));
        }
        Ok(())
    }

    /// Commits everything added so far, with the state as payload, durably.
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.flush_pending()?;
        let mut state = self.state.clone();
        if let Some(r) = &self.record {
            state.ingests.push(r.clone());
            let excess = state.ingests.len().saturating_sub(MAX_INGEST_RECORDS);
            state.ingests.drain(..excess);
        }
        let payload = serde_json::to_string(&state)?;
        let committed = match self.writer.prepare_commit() {
            Ok(mut prepared) => {
                prepared.set_payload(&payload);
                prepared.commit()
            }
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            return Err(self.fail(e));
        }
        self.uncommitted = 0;
        self.disk_full = None;
        Ok(())
    }

    /// Commits, waits for merges, refreshes the index's snapshot.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.commit()?;
        let path = self.index.path().to_owned();
        self.writer
            .wait_merging_threads()
            .map_err(|e| classify(&path, e))?;
        self.index.refresh()?;
        Ok(())
    }

    /// The error to report for a failed `add_document`. An indexing worker
    /// that failed (on a full disk, most likely) leaves tantivy with only
    /// "an index writer was killed": joining the workers (what
    /// `prepare_commit` does) returns the worker's own error. The writer
    /// holds no usable batch afterwards either way (roll back).
    fn worker_error(&mut self, e: tantivy::TantivyError) -> IndexError {
        let e = if matches!(e, tantivy::TantivyError::ErrorInThread(_)) {
            match self.writer.prepare_commit() {
                Err(cause) => cause,
                Ok(prepared) => {
                    let _ = prepared.abort();
                    // The cause was already reported (the worker died in
                    // an earlier call): say it again rather than "killed".
                    if let Some(detail) = &self.disk_full {
                        return IndexError::DiskFull {
                            path: self.index.path().to_owned(),
                            detail: format!("an earlier write failed: {detail}; roll back"),
                        };
                    }
                    e
                }
            }
        } else {
            e
        };
        self.fail(e)
    }

    /// Classifies a write-path error, remembering a full disk.
    fn fail(&mut self, e: tantivy::TantivyError) -> IndexError {
        let err = classify(self.index.path(), e);
        if let IndexError::DiskFull { detail, .. } = &err {
            self.disk_full = Some(detail.clone());
        }
        err
    }
}

/// Whether an I/O error means the file system is full (or over quota).
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT on Linux, also when the kind is not mapped.
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// Maps a tantivy error of the write path: a full disk becomes
/// [`IndexError::DiskFull`] naming the index folder.
pub(crate) fn classify(path: &std::path::Path, e: tantivy::TantivyError) -> IndexError {
    use tantivy::directory::error::OpenWriteError;
    use tantivy::TantivyError as T;
    let full = match &e {
        T::IoError(io) => is_disk_full(io),
        T::OpenWriteError(OpenWriteError::IoError { io_error, .. }) => is_disk_full(io_error),
        // Errors that crossed a thread boundary are kept as text only.
        T::ErrorInThread(text) | T::InternalError(text) => {
            text.contains("No space left on device") || text.contains("StorageFull")
        }
        _ => false,
    };
    if full {
        IndexError::DiskFull {
            path: path.to_owned(),
            detail: e.to_string(),
        }
    } else {
        IndexError::Tantivy(e)
    }
}

/// A writer kept open across many appends: the server's write path.
///
/// Holding tantivy's writer lock for its lifetime, it adds batches (one per
/// client request, each with the identity semantics of
/// [`BehaviorIndex::append`]) and commits them together, so that a burst of
/// requests costs one fsync (group commit). Nothing added is durable or
/// visible before [`commit`](Self::commit) returns.
pub struct LiveWriter<'a> {
    inner: Writer<'a>,
}

impl LiveWriter<'_> {
    /// Adds one batch. Within a user the batch is ordered by timestamp
    /// (stable for equal timestamps) before sequence numbers are given;
    /// identical events are counted within the batch, so a batch equal to
    /// one already added (committed or not) adds nothing. The batch is
    /// checked first and refused whole if a user id is out of range.
    ///
    /// On an error from tantivy the writer holds a partial batch: call
    /// [`rollback`](Self::rollback), which drops everything since the last
    /// commit.
    pub fn add_batch(&mut self, batch: &[NewBehavior]) -> Result<AppendReport> {
        if let Some(b) = batch.iter().find(|b| b.user_id > MAX_USER_ID) {
            return Err(IndexError::InvalidInput(format!(
                "user id {} exceeds the largest the index holds ({MAX_USER_ID})",
                b.user_id
            )));
        }
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| (batch[i].user_id, batch[i].timestamp, i));
        self.inner.batch += 1;
        let mut report = AppendReport::default();
        for i in order {
            let mut b = batch[i].clone();
            b.features.normalize();
            if self.inner.add(&b)? {
                report.added += 1;
            } else {
                report.duplicates += 1;
            }
        }
        // Errors of tantivy surface in the batch that caused them.
        self.inner.flush_pending()?;
        Ok(report)
    }

    /// Behaviors added since the last commit.
    pub fn pending(&self) -> u64 {
        self.inner.uncommitted
    }

    /// Commits (fsynced) everything added, with the index state, and makes
    /// it visible: the returned snapshot, now the index's current one,
    /// holds it.
    pub fn commit(&mut self) -> Result<Arc<Snapshot>> {
        self.inner.commit()?;
        let snap = self.inner.index.refresh()?;
        self.inner.base = snap.clone();
        self.inner.state = snap.state().clone();
        self.inner.cursors.clear();
        Ok(snap)
    }

    /// Drops everything added since the last commit. Also what makes the
    /// writer usable again after an error, e.g. [`IndexError::DiskFull`]
    /// once space is freed.
    pub fn rollback(&mut self) -> Result<()> {
        let path = self.inner.index.path().to_owned();
        self.inner
            .writer
            .rollback()
            .map_err(|e| classify(&path, e))?;
        self.inner.disk_full = None;
        self.inner.state = self.inner.base.state().clone();
        self.inner.cursors.clear();
        self.inner.pending.clear();
        self.inner.pending_user = None;
        self.inner.uncommitted = 0;
        Ok(())
    }

    /// Commits what is pending, waits for merges, releases the lock.
    pub fn close(self) -> Result<()> {
        self.inner.finish()
    }
}

impl BehaviorIndex {
    /// Opens a [`LiveWriter`] with an indexing memory budget in bytes
    /// (64 MiB is plenty for appends). Fails if another writer holds the
    /// index.
    pub fn live_writer(&self, memory: usize) -> Result<LiveWriter<'_>> {
        let mut inner = Writer::new(self, memory, 1)?;
        inner.keep_cursors = true;
        Ok(LiveWriter { inner })
    }

    /// Appends a batch of behaviors durably: when this returns `Ok`, the
    /// behaviors are committed (fsynced) and visible to
    /// [`snapshot`](Self::snapshot). Behaviors already in the index are
    /// skipped (see [`NewBehavior`] identity), so retrying a batch is safe.
    ///
    /// Within a user, the batch is ordered by timestamp (stable for equal
    /// timestamps) before sequence numbers are given. Concurrent appends
    /// are serialized by tantivy's writer lock: a second writer fails with
    /// an error rather than waiting.
    pub fn append(&self, batch: &[NewBehavior]) -> Result<AppendReport> {
        self.append_with_memory(batch, 64 << 20)
    }

    /// [`append`](Self::append) with an explicit indexing memory budget.
    pub fn append_with_memory(&self, batch: &[NewBehavior], memory: usize) -> Result<AppendReport> {
        let mut writer = self.live_writer(memory)?;
        let report = writer.add_batch(batch)?;
        writer.close()?;
        Ok(report)
    }
}
