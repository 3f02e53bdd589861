//! Bulk ingestion in bounded memory.
//!
//! Logs are rarely sorted the way the index needs them, (user, timestamp,
//! row). Ingestion is therefore an external merge sort feeding the writer:
//!
//! 1. **read**: rows are parsed into compact records in a sort buffer of
//!    at most `sort_buffer` records; a full buffer is sorted and spilled to
//!    a temporary run file;
//! 2. **index**: the runs (or the single in-memory buffer, for inputs that
//!    fit) are merged and handed to the writer user by user, committing
//!    every `commit_every` behaviors at a user boundary.
//!
//! Peak memory is the sort buffer plus tantivy's indexing budget, whatever
//! the input size. Every commit carries the index state, and re-ingesting
//! skips behaviors already indexed, so an interrupted ingest (even by
//! `kill -9`) leaves the last commit readable and is resumed by running
//! the same command again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hindsight_core::host::now_unix;
use hindsight_core::ItemFeatures;
use hindsight_logs::{open_source, DatasetMapping, Row, RowError};
use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};

use crate::manifest::IngestRecord;
use crate::writer::{NewBehavior, Writer};
use crate::{BehaviorIndex, IndexError, Result};

/// Settings of a bulk ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Stop at the first malformed row instead of skipping it.
    pub strict: bool,
    /// How many malformed rows to keep in the report (all are counted).
    pub max_reported_errors: usize,
    /// Commit after about this many behaviors (at a user boundary).
    pub commit_every: u64,
    /// Records held in memory before sorting and spilling a run.
    pub sort_buffer: usize,
    /// Tantivy's indexing memory budget in bytes.
    pub writer_memory: usize,
    /// Where spill files go (default: the system temporary folder).
    pub tmp_dir: Option<PathBuf>,
    /// tantivy indexing threads (each user's behaviors go to one of them
    /// whole). Default: the available cores, at most 4. Fewer are used
    /// when `writer_memory` would give a thread under 16 MiB.
    pub indexing_threads: usize,
}

/// The default [`IngestOptions::indexing_threads`]: the available cores,
/// at most 4.
pub fn default_indexing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            strict: false,
            max_reported_errors: 10,
            commit_every: 1_000_000,
            sort_buffer: 4 << 20,
            writer_memory: 256 << 20,
            tmp_dir: None,
            indexing_threads: default_indexing_threads(),
        }
    }
}

/// The phase an ingest is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Reading and parsing the input.
    Read,
    /// Writing sorted behaviors into the index.
    Index,
}

/// Progress of a running ingest.
#[derive(Debug, Clone, Serialize)]
pub struct IngestProgress {
    /// Current phase.
    pub phase: Phase,
    /// Rows read so far.
    pub rows_read: u64,
    /// Input bytes consumed so far.
    pub bytes_read: u64,
    /// Input size in bytes (0 if unknown).
    pub total_bytes: u64,
    /// Behaviors handed to the writer so far (index phase).
    pub behaviors_done: u64,
    /// Well-formed rows to index (known once reading is over).
    pub behaviors_total: u64,
}

/// The summary of an ingest.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    /// The input as given.
    pub source: String,
    /// Rows read (well-formed and malformed).
    pub rows_read: u64,
    /// Behaviors added to the index.
    pub behaviors_indexed: u64,
    /// Malformed rows skipped.
    pub rejected_rows: u64,
    /// The first malformed rows (line and reason).
    pub rejected_examples: Vec<RejectedRow>,
    /// Rows skipped because the index already held them.
    pub duplicates_skipped: u64,
    /// Distinct users in the input.
    pub users: u64,
    /// Distinct items in the input.
    pub items: u64,
    /// Sorted runs spilled to disk (0: the input fit in memory).
    pub spilled_runs: usize,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Well-formed rows per second over the whole run.
    pub behaviors_per_sec: f64,
    /// Behaviors in the index after the ingest.
    pub index_behaviors: u64,
    /// What looked suspicious in the input (see
    /// `hindsight_logs::BehaviorSource::warnings`).
    pub warnings: Vec<String>,
}

/// A malformed row in a report.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedRow {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
}

impl From<RowError> for RejectedRow {
    fn from(e: RowError) -> Self {
        RejectedRow {
            line: e.line,
            message: e.message,
        }
    }
}

/// One parsed row in the sort buffer; features live in a shared arena.
#[derive(Clone, Copy)]
struct Rec {
    user: u64,
    ts: i64,
    line: u64,
    item: u64,
    feat: u32,
    ncats: u16,
    ntags: u16,
    btype: u8,
}

impl Rec {
    fn key(&self) -> (u64, i64, u64) {
        (self.user, self.ts, self.line)
    }
}

#[derive(Default)]
struct SortBuffer {
    recs: Vec<Rec>,
    arena: Vec<u64>,
}

impl SortBuffer {
    fn push(&mut self, user: u64, item: u64, btype: u8, ts: i64, line: u64, f: &ItemFeatures) {
        let ncats = f.categories.len().min(u16::MAX as usize);
        let ntags = f.tags.len().min(u16::MAX as usize);
        let feat = self.arena.len() as u32;
        self.arena.extend_from_slice(&f.categories[..ncats]);
        self.arena.extend_from_slice(&f.tags[..ntags]);
        self.recs.push(Rec {
            user,
            ts,
            line,
            item,
            feat,
            ncats: ncats as u16,
            ntags: ntags as u16,
            btype,
        });
    }

    /// Appends a record with its features (from another buffer).
    fn push_parts(&mut self, r: &Rec, cats: &[u64], tags: &[u64]) {
        let feat = self.arena.len() as u32;
        self.arena.extend_from_slice(cats);
        self.arena.extend_from_slice(tags);
        self.recs.push(Rec { feat, ..*r });
    }

    fn features(&self, r: &Rec) -> (&[u64], &[u64]) {
        let s = r.feat as usize;
        let c = s + r.ncats as usize;
        (&self.arena[s..c], &self.arena[c..c + r.ntags as usize])
    }

    fn sort(&mut self) {
        self.recs.sort_unstable_by_key(Rec::key);
    }

    fn clear(&mut self) {
        self.recs.clear();
        self.arena.clear();
    }

    /// Writes the (sorted) buffer as a run file; a full disk is reported
    /// as [`IndexError::DiskFull`] naming the spill folder.
    fn spill(&self, dir: &tempfile::TempDir, n: usize) -> Result<PathBuf> {
        self.write_run(dir, n).map_err(|e| {
            if crate::writer::is_disk_full(&e) {
                IndexError::DiskFull {
                    path: dir.path().to_owned(),
                    detail: e.to_string(),
                }
            } else {
                IndexError::OtherIo(e)
            }
        })
    }

    fn write_run(&self, dir: &tempfile::TempDir, n: usize) -> std::io::Result<PathBuf> {
        let path = dir.path().join(format!("run-{n:05}.bin"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        for r in &self.recs {
            let (cats, tags) = self.features(r);
            w.write_all(&r.user.to_le_bytes())?;
            w.write_all(&r.ts.to_le_bytes())?;
            w.write_all(&r.line.to_le_bytes())?;
            w.write_all(&r.item.to_le_bytes())?;
            w.write_all(&[r.btype])?;
            w.write_all(&r.ncats.to_le_bytes())?;
            w.write_all(&r.ntags.to_le_bytes())?;
            for v in cats.iter().chain(tags) {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        w.flush()?;
        Ok(path)
    }
}

/// Rows per chunk handed from the reader thread to the sorter.
const CHUNK_ROWS: usize = 32 << 10;
/// Chunks the reader may parse ahead of the sorter (it keeps parsing while
/// a full sort buffer is sorted and spilled).
const READ_AHEAD_CHUNKS: usize = 16;

/// Rows the reader thread parsed: the well-formed ones in a sort buffer,
/// the malformed ones with the position (in `buf.recs`) they came before.
struct Chunk {
    buf: SortBuffer,
    bad: Vec<(usize, RowError)>,
    /// Rows read (well-formed and malformed).
    rows: u64,
    /// Input bytes consumed after the chunk's last row.
    bytes_read: u64,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            buf: SortBuffer {
                recs: Vec::with_capacity(CHUNK_ROWS),
                arena: Vec::with_capacity(CHUNK_ROWS),
            },
            bad: Vec::new(),
            rows: 0,
            bytes_read: 0,
        }
    }
}

/// The reader thread: parses every row of `source` into chunks sent to
/// `tx`, stopping early when the receiver is gone (the sorter failed) or,
/// with `strict`, after the first malformed row. Returns the source (for
/// its warnings and position) and the vocabularies it extended.
fn read_chunks(
    mut source: Box<dyn hindsight_logs::BehaviorSource>,
    mut vocabs: hindsight_logs::Vocabularies,
    strict: bool,
    tx: std::sync::mpsc::SyncSender<Chunk>,
) -> Result<(
    Box<dyn hindsight_logs::BehaviorSource>,
    hindsight_logs::Vocabularies,
)> {
    let mut chunk = Chunk::new();
    while let Some(row) = source.next_row(&mut vocabs)? {
        chunk.rows += 1;
        // A behavior the index cannot hold (hindsight_core::limits) is a
        // rejected row like a malformed one, never the end of the run.
        let stop = match row.checked() {
            Row::Ok(b) => {
                chunk.buf.push(
                    b.user_id,
                    b.item_id,
                    b.behavior_type,
                    b.timestamp,
                    b.line,
                    &b.features,
                );
                false
            }
            Row::Bad(e) => {
                chunk.bad.push((chunk.buf.recs.len(), e));
                strict
            }
        };
        if stop || chunk.buf.recs.len() + chunk.bad.len() >= CHUNK_ROWS {
            chunk.bytes_read = source.bytes_read();
            let full = std::mem::replace(&mut chunk, Chunk::new());
            if tx.send(full).is_err() || stop {
                return Ok((source, vocabs));
            }
        }
    }
    chunk.bytes_read = source.bytes_read();
    // A send error means the sorter stopped; it reports why.
    let _ = tx.send(chunk);
    Ok((source, vocabs))
}

/// Counts a malformed row (keeping the first few), or stops a strict run.
fn reject(
    e: RowError,
    opts: &IngestOptions,
    rejected: &mut u64,
    examples: &mut Vec<RejectedRow>,
) -> Result<()> {
    if opts.strict {
        return Err(IndexError::StrictRow {
            line: e.line,
            message: e.message,
        });
    }
    *rejected += 1;
    if examples.len() < opts.max_reported_errors {
        examples.push(e.into());
    }
    Ok(())
}

/// The name prefix of the spill folders of ingests into the index at
/// `index`: `hindsight-ingest-` and a hash of its canonical path. Only an
/// ingest holding that index's writer lock creates or removes them.
fn spill_prefix(index: &Path) -> String {
    let canonical = index.canonicalize().unwrap_or_else(|_| index.to_owned());
    // FNV-1a: stable across builds and runs, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("hindsight-ingest-{h:016x}-")
}

/// Removes the spill folders that an ingest into the same index left in
/// `parent` when it was killed (a run that ends, even with an error,
/// removes its own). The caller holds the index's writer lock, so none of
/// them belongs to a running ingest. Returns (folders, bytes) removed.
pub(crate) fn remove_stale_spills(parent: &Path, prefix: &str) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return (0, 0);
    };
    let (mut folders, mut bytes) = (0u64, 0u64);
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        let size: u64 = std::fs::read_dir(&path)
            .map(|d| {
                d.flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                folders += 1;
                bytes += size;
            }
            Err(e) => tracing::warn!(
                "cannot remove the stale spill folder {}: {e}",
                path.display()
            ),
        }
    }
    (folders, bytes)
}

/// A sorted record with owned features, as the merge yields them.
struct Owned {
    key: (u64, i64, u64),
    b: NewBehavior,
}

struct RunReader {
    r: BufReader<File>,
    vals: Vec<u8>,
}

impl RunReader {
    fn new(r: BufReader<File>) -> RunReader {
        RunReader {
            r,
            vals: Vec::new(),
        }
    }

    /// Reads the next record into `o`, reusing its buffers; false at the
    /// end of the run.
    fn read_into(&mut self, o: &mut Owned) -> Result<bool> {
        let mut head = [0u8; 37];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let u = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let (user, ts, line, item) = (u(0), u(8) as i64, u(16), u(24));
        let ncats = u16::from_le_bytes([head[33], head[34]]) as usize;
        let ntags = u16::from_le_bytes([head[35], head[36]]) as usize;
        self.vals.resize(8 * (ncats + ntags), 0);
        self.r.read_exact(&mut self.vals)?;
        let mut vals = self
            .vals
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        o.key = (user, ts, line);
        o.b.user_id = user;
        o.b.item_id = item;
        o.b.behavior_type = head[32];
        o.b.timestamp = ts;
        o.b.features.categories.clear();
        o.b.features.categories.extend(vals.by_ref().take(ncats));
        o.b.features.tags.clear();
        o.b.features.tags.extend(vals);
        Ok(true)
    }
}

impl Owned {
    fn empty() -> Owned {
        Owned {
            key: (0, 0, 0),
            b: NewBehavior {
                user_id: 0,
                item_id: 0,
                features: ItemFeatures::default(),
                behavior_type: 0,
                timestamp: 0,
            },
        }
    }
}

/// Ingests every row of the log at `input` (read with `mapping`) into
/// `index` (see the module docs). `progress` is called every few tens of
/// thousands of rows.
pub fn ingest(
    index: &BehaviorIndex,
    mapping: &DatasetMapping,
    input: &Path,
    opts: &IngestOptions,
    progress: &mut dyn FnMut(&IngestProgress),
) -> Result<IngestReport> {
    let started = Instant::now();
    index.check_mapping(mapping)?;
    // Take the writer lock first: the vocabularies the source extends must
    // be those of the last commit.
    let threads = opts
        .indexing_threads
        .clamp(1, (opts.writer_memory >> 24).max(1));
    let mut writer = Writer::new(index, opts.writer_memory, threads)?;
    let mut vocabs = writer.state.vocabs.clone();
    let spill_parent = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let prefix = spill_prefix(index.path());
    let (stale, stale_bytes) = remove_stale_spills(&spill_parent, &prefix);
    if stale > 0 {
        tracing::warn!(
            "removed {stale} spill folder(s) ({stale_bytes} bytes) left in {} by an interrupted ingest into {}",
            spill_parent.display(),
            index.path().display()
        );
    }
    let source = open_source(mapping, input, &mut vocabs)?;
    let source_name = input.display().to_string();
    let source_name = source_name.as_str();

    // Phase 1: read, sort, spill. A reader thread parses the input into
    // chunks of rows while this thread fills, sorts and spills the sort
    // buffer (both cores busy).
    let mut buf = SortBuffer::default();
    let mut runs: Vec<PathBuf> = Vec::new();
    let mut spill_dir: Option<tempfile::TempDir> = None;
    let (mut rows_read, mut rejected, mut good) = (0u64, 0u64, 0u64);
    let mut examples: Vec<RejectedRow> = Vec::new();
    let (mut users, mut items) = (RoaringTreemap::new(), RoaringTreemap::new());
    let mut prog = IngestProgress {
        phase: Phase::Read,
        rows_read: 0,
        bytes_read: 0,
        total_bytes: source.total_bytes(),
        behaviors_done: 0,
        behaviors_total: 0,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(READ_AHEAD_CHUNKS);
    let strict = opts.strict;
    let (source, vocabs) = std::thread::scope(|scope| -> Result<_> {
        let reader = scope.spawn(move || read_chunks(source, vocabs, strict, tx));
        let mut last_user = None;
        let mut chunks = rx.into_iter();
        let mut process = |chunk: Chunk| -> Result<()> {
            let mut bad = chunk.bad.into_iter().peekable();
            for (i, r) in chunk.buf.recs.iter().enumerate() {
                // Malformed rows before this one, in input order.
                while let Some((_, e)) = bad.next_if(|(at, _)| *at <= i) {
                    reject(e, opts, &mut rejected, &mut examples)?;
                }
                good += 1;
                if last_user != Some(r.user) {
                    users.insert(r.user);
                    last_user = Some(r.user);
                }
                items.insert(r.item);
                let (cats, tags) = chunk.buf.features(r);
                buf.push_parts(r, cats, tags);
                if buf.recs.len() >= opts.sort_buffer.max(1) {
                    buf.sort();
                    let dir = match &mut spill_dir {
                        Some(d) => d,
                        None => spill_dir.insert(
                            tempfile::Builder::new()
                                .prefix(&prefix)
                                .tempdir_in(&spill_parent)?,
                        ),
                    };
                    runs.push(buf.spill(dir, runs.len())?);
                    buf.clear();
                }
            }
            for (_, e) in bad {
                reject(e, opts, &mut rejected, &mut examples)?;
            }
            rows_read += chunk.rows;
            prog.rows_read = rows_read;
            prog.bytes_read = chunk.bytes_read;
            progress(&prog);
            Ok(())
        };
        let mut consumed = Ok(());
        for chunk in chunks.by_ref() {
            if let Err(e) = process(chunk) {
                consumed = Err(e);
                break;
            }
        }
        // On an error, stop the reader (its next send fails) before joining.
        drop(chunks);
        let read = reader.join().expect("the ingest reader thread panicked");
        consumed?;
        read
    })?;
    prog.rows_read = rows_read;
    prog.bytes_read = source.bytes_read();
    prog.phase = Phase::Index;
    prog.behaviors_total = good;
    progress(&prog);

    writer.state.vocabs = vocabs;
    writer.start_record(IngestRecord {
        source: source_name.to_owned(),
        started_at: now_unix(),
        rows_read,
        rejected_rows: rejected,
        ..Default::default()
    });

    // Phase 2: merge the sorted runs into the writer.
    buf.sort();
    let spilled_runs = runs.len();
    let (mut added, mut dupes, mut done) = (0u64, 0u64, 0u64);
    let mut last_user: Option<u64> = None;
    let mut handle = |writer: &mut Writer<'_>, b: &NewBehavior| -> Result<()> {
        if last_user != Some(b.user_id) {
            if last_user.is_some() && writer.uncommitted >= opts.commit_every {
                let rec = writer.record_mut().expect("record started");
                rec.behaviors_indexed = added;
                rec.duplicates_skipped = dupes;
                writer.commit()?;
            }
            last_user = Some(b.user_id);
        }
        if writer.add(b)? {
            added += 1;
        } else {
            dupes += 1;
        }
        done += 1;
        if done % 65_536 == 0 {
            prog.behaviors_done = done;
            progress(&prog);
        }
        Ok(())
    };
    if runs.is_empty() {
        let mut b = NewBehavior {
            user_id: 0,
            item_id: 0,
            features: ItemFeatures::default(),
            behavior_type: 0,
            timestamp: 0,
        };
        for r in &buf.recs {
            let (cats, tags) = buf.features(r);
            b.user_id = r.user;
            b.item_id = r.item;
            b.behavior_type = r.btype;
            b.timestamp = r.ts;
            b.features.categories.clear();
            b.features.categories.extend_from_slice(cats);
            b.features.tags.clear();
            b.features.tags.extend_from_slice(tags);
            handle(&mut writer, &b)?;
        }
    } else {
        if !buf.recs.is_empty() {
            let dir = spill_dir.as_ref().expect("runs imply a spill dir");
            runs.push(buf.spill(dir, runs.len())?);
        }
        drop(buf);
        let mut readers: Vec<RunReader> = runs
            .iter()
            .map(|p| {
                Ok(RunReader::new(BufReader::with_capacity(
                    256 << 10,
                    File::open(p)?,
                )))
            })
            .collect::<Result<_>>()?;
        // The head record of each run, refilled in place.
        let mut heads: Vec<Owned> = Vec::with_capacity(readers.len());
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let mut h = Owned::empty();
            if r.read_into(&mut h)? {
                heap.push(Reverse((h.key, i)));
            }
            heads.push(h);
        }
        while let Some(Reverse((_, i))) = heap.pop() {
            handle(&mut writer, &heads[i].b)?;
            if readers[i].read_into(&mut heads[i])? {
                heap.push(Reverse((heads[i].key, i)));
            }
        }
    }
    let rec = writer.record_mut().expect("record started");
    rec.behaviors_indexed = added;
    rec.duplicates_skipped = dupes;
    rec.complete = true;
    let index_behaviors = writer.state.behaviors;
    writer.finish()?;
    drop(spill_dir);

    let elapsed = started.elapsed().as_secs_f64();
    Ok(IngestReport {
        source: source_name.to_owned(),
        rows_read,
        behaviors_indexed: added,
        rejected_rows: rejected,
        rejected_examples: examples,
        duplicates_skipped: dupes,
        users: users.len(),
        items: items.len(),
        spilled_runs,
        elapsed_secs: elapsed,
        behaviors_per_sec: if elapsed > 0.0 {
            good as f64 / elapsed
        } else {
            0.0
        },
        index_behaviors,
        warnings: source.warnings().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use hindsight_logs::DatasetMapping;

    use super::spill_prefix;
    use crate::{ingest, BehaviorIndex, IndexError, IngestOptions};

    fn log(path: &Path, rows: u64, bad_at: Option<u64>) {
        let mut f = std::fs::File::create(path).unwrap();
        for k in 1..=rows {
            if Some(k) == bad_at {
                writeln!(f, "1,2,3,nope,4").unwrap();
            } else {
                writeln!(f, "{},{},{},pv,{}", k % 7 + 1, k % 50, k % 5, 1000 + k).unwrap();
            }
        }
    }

    fn spill_folders(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hindsight-ingest-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn stale_spill_folders_of_the_same_index_are_removed_on_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mapping = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path().join("i"), &mapping).unwrap();
        // What a killed ingest into this index left, and another index's.
        let stale = tmp.join(format!("{}x1y2z3", spill_prefix(index.path())));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("run-00000.bin"), vec![7u8; 1 << 20]).unwrap();
        let other = tmp.join("hindsight-ingest-0123456789abcdef-keep");
        std::fs::create_dir(&other).unwrap();
        let csv = dir.path().join("log.csv");
        log(&csv, 2000, None);
        let opts = IngestOptions {
            sort_buffer: 300,
            tmp_dir: Some(tmp.clone()),
            ..IngestOptions::default()
        };
        let report = ingest(&index, &mapping, &csv, &opts, &mut |_| {}).unwrap();
        assert!(report.spilled_runs >= 6, "{}", report.spilled_runs);
        assert_eq!(report.behaviors_indexed, 2000);
        assert!(!stale.exists(), "the stale spill folder is removed");
        // Only the other index's folder is left: this run removed its own.
        assert_eq!(
            spill_folders(&tmp),
            vec!["hindsight-ingest-0123456789abcdef-keep".to_owned()]
        );
    }

    #[test]
    fn a_failed_run_removes_its_spill_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mapping = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path().join("i"), &mapping).unwrap();
        let csv = dir.path().join("log.csv");
        log(&csv, 2000, Some(1500));
        let opts = IngestOptions {
            strict: true,
            sort_buffer: 300,
            tmp_dir: Some(dir.path().to_owned()),
            ..IngestOptions::default()
        };
        let err = ingest(&index, &mapping, &csv, &opts, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, IndexError::StrictRow { line: 1500, .. }),
            "{err}"
        );
        assert!(spill_folders(dir.path()).is_empty());
    }
}
