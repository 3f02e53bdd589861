//! The Parquet source: the mapping's columns are matched by name (or by
//! top-level position) against the file schema, only those columns are
//! read (a projection), and rows are streamed one row group at a time with
//! the `parquet` crate's record API.
//!
//! Ids may be integer columns (INT32/INT64, signed or unsigned) or strings
//! (BYTE_ARRAY holding decimal digits); behavior types strings or integers;
//! ratings numbers or strings; timestamps integers in the mapping's unit or
//! Parquet TIMESTAMP columns (converted to seconds whatever the unit).
//!
//! Progress: Parquet is compressed and columnar, so bytes consumed are not
//! meaningful row by row; [`bytes_read`](crate::BehaviorSource::bytes_read)
//! is the file size times the fraction of rows read (an estimate), and
//! [`total_bytes`](crate::BehaviorSource::total_bytes) the file size.
//! A row's `line` is its 1-based row number.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::Type;

use crate::error::{LogError, Result};
use crate::mapping::DatasetMapping;
use crate::parse::{ItemTable, RowSpec, Value};
use crate::vocab::Vocabularies;
use crate::{BehaviorSource, MappedColumn, Row};

/// A Parquet log read row by row.
pub(crate) struct ParquetSource {
    rows: RowIter<'static>,
    spec: RowSpec,
    /// Rows returned so far.
    row: u64,
    total_rows: u64,
    file_size: u64,
    path: PathBuf,
    warnings: Vec<String>,
    columns: Vec<MappedColumn>,
}

fn perr(path: &Path, e: impl std::fmt::Display) -> LogError {
    LogError::Parquet {
        path: path.to_path_buf(),
        message: format!("{e}; check that the file is a valid parquet file"),
    }
}

impl ParquetSource {
    /// Opens `path`, checks the mapping against its schema, then loads the
    /// joined tables with `load_tables`.
    pub fn open(
        mapping: &DatasetMapping,
        path: &Path,
        type_ids: Vec<u8>,
        load_tables: impl FnOnce() -> Result<(Option<ItemTable>, Option<ItemTable>, Vec<String>)>,
    ) -> Result<ParquetSource> {
        let file = File::open(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file_size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let reader = SerializedFileReader::new(file).map_err(|e| perr(path, e))?;
        let meta = reader.metadata().file_metadata();
        let total_rows = u64::try_from(meta.num_rows()).unwrap_or(0);
        let root = meta.schema();
        let fields: Vec<Arc<Type>> = root.get_fields().to_vec();
        let names: Vec<String> = fields.iter().map(|f| f.name().to_owned()).collect();
        let mut spec = RowSpec::new(mapping, Some(&names), path, type_ids)?;
        let columns = spec.mapped();

        // Project onto the mapped columns, in file order.
        let mut used: Vec<usize> = spec.columns_mut().iter().map(|c| c.index).collect();
        used.sort_unstable();
        used.dedup();
        for &i in &used {
            let f = &fields[i];
            if !f.is_primitive()
                || f.get_basic_info().repetition() == parquet::basic::Repetition::REPEATED
            {
                return Err(LogError::Mapping(format!(
                    "column \"{}\" of {} is nested or repeated; map only flat (primitive) columns",
                    f.name(),
                    path.display()
                )));
            }
        }
        for c in spec.columns_mut() {
            c.index = used.iter().position(|&u| u == c.index).unwrap_or(0);
        }
        let projection = Type::group_type_builder(root.name())
            .with_fields(used.iter().map(|&i| fields[i].clone()).collect())
            .build()
            .map_err(|e| perr(path, e))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| perr(path, e))?;
        let (categories, tags, warnings) = load_tables()?;
        Ok(ParquetSource {
            warnings,
            columns,
            rows,
            spec: spec.with_tables(categories, tags),
            row: 0,
            total_rows,
            file_size,
            path: path.to_path_buf(),
        })
    }
}

fn value(f: &Field) -> Value<'_> {
    match f {
        Field::Null => Value::Null,
        Field::Bool(_) => Value::Other("boolean"),
        Field::Byte(v) => Value::Int(i64::from(*v)),
        Field::Short(v) => Value::Int(i64::from(*v)),
        Field::Int(v) => Value::Int(i64::from(*v)),
        Field::Long(v) => Value::Int(*v),
        Field::UByte(v) => Value::UInt(u64::from(*v)),
        Field::UShort(v) => Value::UInt(u64::from(*v)),
        Field::UInt(v) => Value::UInt(u64::from(*v)),
        Field::ULong(v) => Value::UInt(*v),
        Field::Float16(v) => Value::Float(f64::from(*v)),
        Field::Float(v) => Value::Float(f64::from(*v)),
        Field::Double(v) => Value::Float(*v),
        Field::Str(s) => Value::Bytes(s.as_bytes()),
        // The record reader always sets the data of the byte arrays it returns.
        Field::Bytes(b) => Value::Bytes(b.data()),
        Field::TimestampMillis(ms) => Value::Seconds(ms.div_euclid(1000)),
        Field::TimestampMicros(us) => Value::Seconds(us.div_euclid(1_000_000)),
        Field::Decimal(_) => Value::Other("decimal"),
        Field::Date(_) => Value::Other("date"),
        Field::TimeMillis(_) | Field::TimeMicros(_) => Value::Other("time of day"),
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => Value::Other("nested"),
    }
}

impl BehaviorSource for ParquetSource {
    fn next_row(&mut self, _vocabs: &mut Vocabularies) -> Result<Option<Row>> {
        let row = match self.rows.next() {
            None => return Ok(None),
            Some(Err(e)) => return Err(perr(&self.path, e)),
            Some(Ok(row)) => row,
        };
        self.row += 1;
        let mut fields: [Option<&Field>; 8] = [None; 8];
        for (slot, (_, f)) in fields.iter_mut().zip(row.get_column_iter()) {
            *slot = Some(f);
        }
        Ok(Some(self.spec.parse(self.row, |i| {
            fields.get(i).copied().flatten().map_or(Value::Null, value)
        })))
    }

    fn bytes_read(&self) -> u64 {
        if self.total_rows == 0 {
            return 0;
        }
        let frac = (self.row.min(self.total_rows) as f64) / (self.total_rows as f64);
        (self.file_size as f64 * frac) as u64
    }

    fn total_bytes(&self) -> u64 {
        self.file_size
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn mapped_columns(&self) -> &[MappedColumn] {
        &self.columns
    }
}
