//! A streaming CSV/TSV record reader on `csv-core` that knows the 1-based
//! line each record starts on.
//!
//! The `csv` crate's record positions are those of the end of the previous
//! record, so they are off by one for CRLF files (movielens) and after
//! blank lines. Here every consumed byte passes through our hands, so the
//! line of a record is exact: the line of its first byte that is not a
//! line terminator. Records are read into one reused buffer; memory is
//! bounded by the longest record.
//!
//! A multi-character delimiter (`::`) is outside what `csv-core` does: such
//! files are read line by line and each line is split on the delimiter,
//! without quoting (MovieLens-1M's `.dat` files have none).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use csv_core::ReadRecordResult;

use crate::error::{LogError, Result};
use crate::mapping::Splitter;

/// Reads records of a delimited file one at a time.
pub(crate) struct RecordReader {
    rdr: BufReader<File>,
    core: csv_core::Reader,
    /// The delimiter when it has several bytes (then `core` is unused).
    multi: Option<Vec<u8>>,
    /// The current line, in multi-byte mode.
    line_buf: Vec<u8>,
    /// Field bytes of the current record, back to back.
    fields: Vec<u8>,
    /// End offset of each field in `fields`.
    ends: Vec<usize>,
    /// Number of fields of the current record.
    len: usize,
    /// Line of the next unread byte (1-based).
    line: u64,
    /// The last byte counted was a `\r` (so a `\n` next ends the same line).
    after_cr: bool,
    bytes: u64,
    total: u64,
    started: bool,
    eof: bool,
    path: PathBuf,
}

impl RecordReader {
    /// Opens `path`, split as `splitter` says.
    pub fn open(path: &Path, splitter: &Splitter) -> Result<RecordReader> {
        let (delimiter, quoting, multi) = match splitter {
            Splitter::Byte { delimiter, quoting } => (*delimiter, *quoting, None),
            Splitter::Str(d) => (b',', false, Some(d.clone())),
        };
        let file = File::open(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let core = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(quoting)
            .build();
        Ok(RecordReader {
            rdr: BufReader::with_capacity(1 << 16, file),
            core,
            multi,
            line_buf: Vec::new(),
            fields: vec![0; 1024],
            ends: vec![0; 16],
            len: 0,
            line: 1,
            after_cr: false,
            bytes: 0,
            total,
            started: false,
            eof: false,
            path: path.to_path_buf(),
        })
    }

    fn io(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads the next record; returns the line it starts on, `None` at the
    /// end of the file.
    pub fn read(&mut self) -> Result<Option<u64>> {
        if self.eof {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            let bom = match self.rdr.fill_buf() {
                Ok(input) => input.starts_with(b"\xEF\xBB\xBF"),
                Err(e) => return Err(self.io(e)),
            };
            if bom {
                self.rdr.consume(3);
                self.bytes += 3;
            }
        }
        if self.multi.is_some() {
            return self.read_split();
        }
        let (mut outlen, mut endlen) = (0, 0);
        let mut start = None;
        loop {
            let input = match self.rdr.fill_buf() {
                Ok(i) => i,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.eof = true;
                    return Err(self.io(e));
                }
            };
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.fields[outlen..], &mut self.ends[endlen..]);
            let consumed = &input[..nin];
            let mut rest = consumed;
            if start.is_none() {
                match consumed.iter().position(|&b| b != b'\n' && b != b'\r') {
                    Some(p) => {
                        self.line += count_newlines(&consumed[..p], &mut self.after_cr);
                        start = Some(self.line);
                        rest = &consumed[p..];
                    }
                    None => rest = consumed,
                }
            }
            self.line += count_newlines(rest, &mut self.after_cr);
            self.rdr.consume(nin);
            self.bytes += nin as u64;
            outlen += nout;
            endlen += nend;
            match res {
                ReadRecordResult::InputEmpty => continue,
                ReadRecordResult::OutputFull => {
                    let n = self.fields.len() * 2;
                    self.fields.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    self.len = endlen;
                    return Ok(Some(start.unwrap_or(self.line)));
                }
                ReadRecordResult::End => {
                    self.eof = true;
                    self.len = 0;
                    return Ok(None);
                }
            }
        }
    }

    /// [`read`](Self::read) for a multi-byte delimiter: the next non-blank
    /// line, split on the delimiter.
    fn read_split(&mut self) -> Result<Option<u64>> {
        loop {
            self.line_buf.clear();
            let n = match self.rdr.read_until(b'\n', &mut self.line_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.eof = true;
                    return Err(self.io(e));
                }
            };
            if n == 0 {
                self.eof = true;
                self.len = 0;
                return Ok(None);
            }
            self.bytes += n as u64;
            let line = self.line;
            self.line += 1;
            let mut text = self.line_buf.as_slice();
            while let Some((b'\n' | b'\r', rest)) = text.split_last() {
                text = rest;
            }
            if text.is_empty() {
                continue;
            }
            let delim = self.multi.as_deref().expect("multi-byte mode");
            self.fields.clear();
            let mut nfields = 0;
            let mut rest = text;
            loop {
                let (field, next) = match find(rest, delim) {
                    Some(p) => (&rest[..p], Some(&rest[p + delim.len()..])),
                    None => (rest, None),
                };
                self.fields.extend_from_slice(field);
                if self.ends.len() <= nfields {
                    self.ends.resize(nfields * 2 + 1, 0);
                }
                self.ends[nfields] = self.fields.len();
                nfields += 1;
                match next {
                    Some(n) => rest = n,
                    None => break,
                }
            }
            self.len = nfields;
            return Ok(Some(line));
        }
    }

    /// Number of fields of the current record.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Field `i` of the current record (empty when out of range).
    #[inline]
    pub fn field(&self, i: usize) -> &[u8] {
        if i >= self.len {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.fields[start..self.ends[i]]
    }

    /// All fields of the current record as strings (lossy UTF-8, trimmed),
    /// for a header.
    pub fn names(&self) -> Vec<String> {
        (0..self.len)
            .map(|i| String::from_utf8_lossy(self.field(i)).trim().to_owned())
            .collect()
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Size of the file.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }
}

/// The first position of `needle` (non-empty) in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Line terminators in `b`: `\n`, `\r\n` and a lone `\r` (which csv-core
/// also ends a record at) each end one line; `after_cr` carries a `\r` at
/// the end of one chunk over to a `\n` at the start of the next.
#[inline]
fn count_newlines(b: &[u8], after_cr: &mut bool) -> u64 {
    let mut n = 0;
    for &c in b {
        match c {
            b'\n' if *after_cr => *after_cr = false,
            b'\n' => n += 1,
            b'\r' => {
                n += 1;
                *after_cr = true;
            }
            _ => *after_cr = false,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(content: &[u8]) -> Vec<(u64, Vec<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, content).unwrap();
        let comma = Splitter::Byte {
            delimiter: b',',
            quoting: true,
        };
        let mut r = RecordReader::open(&p, &comma).unwrap();
        let mut out = Vec::new();
        while let Some(line) = r.read().unwrap() {
            out.push((line, r.names()));
        }
        assert_eq!(r.bytes_read(), r.total_bytes());
        assert_eq!(r.read().unwrap(), None);
        out
    }

    #[test]
    fn exact_lines_with_lf_crlf_blank_lines_and_quotes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            lines(b"a\nb\n\nc\n\"x\ny\",1\nz"),
            [
                (1, s(&["a"])),
                (2, s(&["b"])),
                (4, s(&["c"])),
                (5, s(&["x\ny", "1"])),
                (7, s(&["z"])),
            ]
        );
        assert_eq!(
            lines(b"\xEF\xBB\xBFh,i\r\n1,2\r\n\r\n3,4\r\n"),
            [
                (1, s(&["h", "i"])),
                (2, s(&["1", "2"])),
                (4, s(&["3", "4"]))
            ]
        );
        assert_eq!(lines(b""), []);
        assert_eq!(lines(b"\n\n\r\n"), []);
        assert_eq!(lines(b",\n"), [(1, s(&["", ""]))]);
        // A lone \r ends a line (and a record) too: found by fuzzing, the
        // second record was reported on line 1.
        assert_eq!(lines(b"0\r0\n"), [(1, s(&["0"])), (2, s(&["0"]))]);
        assert_eq!(
            lines(b"a\r\rb\r\nc"),
            [(1, s(&["a"])), (3, s(&["b"])), (4, s(&["c"]))]
        );
    }

    #[test]
    fn long_records_grow_the_buffers() {
        let mut content = vec![b'7'; 100_000];
        content.extend(std::iter::repeat_n(b",", 100).flatten());
        content.extend_from_slice(b"\nlast");
        let got = lines(&content);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), 101);
        assert_eq!(got[0].1[0].len(), 100_000);
        assert_eq!(got[1].0, 2);
    }

    #[test]
    fn multi_byte_delimiter_splits_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dat");
        std::fs::write(&p, b"\xEF\xBB\xBF1::2::3\r\n\n::a,\"b::\n7\n8::").unwrap();
        let mut r = RecordReader::open(&p, &Splitter::Str(b"::".to_vec())).unwrap();
        let mut out = Vec::new();
        while let Some(line) = r.read().unwrap() {
            out.push((line, r.names()));
        }
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            out,
            [
                (1, s(&["1", "2", "3"])),
                (3, s(&["", "a,\"b", ""])),
                (4, s(&["7"])),
                (5, s(&["8", ""])),
            ]
        );
        assert_eq!(r.bytes_read(), r.total_bytes());
        assert_eq!(r.read().unwrap(), None);
    }
}
