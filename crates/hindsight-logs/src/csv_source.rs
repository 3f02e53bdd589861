//! The streaming CSV/TSV source: reads one record at a time into a reused
//! buffer through a buffered file ([`RecordReader`]), so memory stays
//! bounded by the longest line whatever the size of the log. Fields are
//! parsed as bytes (no UTF-8 validation on the hot path).

use std::path::Path;

use crate::error::Result;
use crate::mapping::{DatasetMapping, InputFormat, Splitter};
use crate::parse::{ItemTable, RowSpec, Value};
use crate::record::RecordReader;
use crate::vocab::Vocabularies;
use crate::{BehaviorSource, MappedColumn, RejectReason, Row, RowError};

/// A CSV or TSV log read row by row.
pub(crate) struct CsvSource {
    reader: RecordReader,
    /// `None` for an empty file (no header line where one was expected).
    spec: Option<RowSpec>,
    /// The exact field count every row must have, when known (header or
    /// `columns`).
    width: Option<usize>,
    min_width: usize,
    warnings: Vec<String>,
    columns: Vec<MappedColumn>,
}

impl CsvSource {
    /// Opens `path`, reads and checks the header; `tables` are resolved
    /// lazily by the caller through `load_tables` once the header checked.
    pub fn open(
        mapping: &DatasetMapping,
        path: &Path,
        format: InputFormat,
        type_ids: Vec<u8>,
        load_tables: impl FnOnce() -> Result<(Option<ItemTable>, Option<ItemTable>, Vec<String>)>,
    ) -> Result<CsvSource> {
        let splitter = Splitter::new(mapping.delimiter.as_deref(), format);
        let mut reader = RecordReader::open(path, &splitter)?;
        let names = if mapping.has_header {
            if reader.read()?.is_some() {
                Some(reader.names())
            } else {
                // An empty file: nothing to check and nothing to read.
                return Ok(CsvSource {
                    reader,
                    spec: None,
                    width: None,
                    min_width: 0,
                    warnings: Vec::new(),
                    columns: Vec::new(),
                });
            }
        } else {
            mapping.columns.clone()
        };
        let spec = RowSpec::new(mapping, names.as_deref(), path, type_ids)?;
        let (categories, tags, warnings) = load_tables()?;
        let spec = spec.with_tables(categories, tags);
        Ok(CsvSource {
            reader,
            warnings,
            columns: spec.mapped(),
            width: names.as_ref().map(Vec::len),
            min_width: spec.min_width(),
            spec: Some(spec),
        })
    }
}

impl BehaviorSource for CsvSource {
    fn next_row(&mut self, _vocabs: &mut Vocabularies) -> Result<Option<Row>> {
        let Some(spec) = &self.spec else {
            return Ok(None);
        };
        let Some(line) = self.reader.read()? else {
            return Ok(None);
        };
        let rec = &self.reader;
        let n = rec.len();
        if let Some(w) = self.width {
            if n != w {
                return Ok(Some(Row::Bad(RowError {
                    line,
                    reason: RejectReason::Columns,
                    message: columns_message(&format!("{w}"), n),
                })));
            }
        } else if n < self.min_width {
            return Ok(Some(Row::Bad(RowError {
                line,
                reason: RejectReason::Columns,
                message: columns_message(&format!("at least {}", self.min_width), n),
            })));
        }
        Ok(Some(spec.parse(line, |i| Value::Bytes(rec.field(i)))))
    }

    fn bytes_read(&self) -> u64 {
        self.reader.bytes_read()
    }

    fn total_bytes(&self) -> u64 {
        self.reader.total_bytes()
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn mapped_columns(&self) -> &[MappedColumn] {
        &self.columns
    }
}

/// The message of a row with the wrong field count; one field means the
/// delimiter was never found.
fn columns_message(expected: &str, found: usize) -> String {
    if found == 1 {
        format!("expected {expected} columns, found 1; check the mapping's \"delimiter\"")
    } else {
        format!("expected {expected} columns, found {found}")
    }
}
