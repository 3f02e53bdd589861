//! Item tables joined to a log by item id (movielens `movies.csv` genres,
//! `tags.csv` tags). They are small, so each is read whole, once, when a
//! source is opened; their string values are interned into a vocabulary.

use std::path::Path;

use crate::error::{LogError, Result};
use crate::mapping::{InputFormat, ItemTableMapping, Splitter};
use crate::parse::{parse_id, resolve_column, ItemTable, Value};
use crate::record::RecordReader;
use crate::vocab::Vocab;

/// Loads an item table: item id -> sorted, deduplicated value ids, values
/// interned into `vocab` in order of first appearance in the file.
/// Suspicious content (bytes invalid in the table's encoding) is reported
/// in `warnings`.
pub(crate) fn load_item_table(
    path: &Path,
    table: &ItemTableMapping,
    vocab: &mut Vocab,
    warnings: &mut Vec<String>,
) -> Result<ItemTable> {
    let splitter = Splitter::new(table.delimiter.as_deref(), InputFormat::Csv);
    let mut reader = RecordReader::open(path, &splitter)?;
    let mut invalid = 0u64;
    let mut out = ItemTable::new();
    let names = if table.has_header {
        if reader.read()?.is_none() {
            return Ok(out); // an empty table: no item has values
        }
        Some(reader.names())
    } else {
        None
    };
    let item = resolve_column(&table.item_column, "item", names.as_deref(), path)?;
    let value = resolve_column(&table.value_column, "value", names.as_deref(), path)?;
    let needed = item.index.max(value.index) + 1;
    while let Some(line) = reader.read()? {
        let bad = |message: String| LogError::Table {
            path: path.to_path_buf(),
            line,
            message,
        };
        if reader.len() < needed {
            return Err(bad(format!(
                "expected at least {needed} columns, found {}",
                reader.len()
            )));
        }
        let id = parse_id(Value::Bytes(reader.field(item.index)), &item.name).map_err(bad)?;
        let (text, replaced) = table.encoding.decode(reader.field(value.index));
        invalid += u64::from(replaced);
        let ids = out.entry(id).or_default();
        let mut add = |v: &str| {
            let v = v.trim();
            if v.is_empty() || table.skip_values.iter().any(|s| s == v) {
                return;
            }
            if table.lowercase {
                ids.push(vocab.intern(&v.to_lowercase()));
            } else {
                ids.push(vocab.intern(v));
            }
        };
        match table.separator.as_deref() {
            Some(sep) if !sep.is_empty() => text.split(sep).for_each(&mut add),
            _ => add(&text),
        }
    }
    for ids in out.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    out.retain(|_, ids| !ids.is_empty());
    if invalid > 0 {
        warnings.push(format!(
            "{invalid} values of table {} are not valid UTF-8 (bytes replaced); if the file is latin-1, set \"encoding\": \"latin1\" on the table",
            path.display()
        ));
    }
    Ok(out)
}
