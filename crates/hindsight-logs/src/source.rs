//! Opening a log: [`open_source`] resolves the input (a file, or a folder
//! holding the mapping's `log_file` and its item tables), picks the format,
//! interns the behavior types in the mapping's order, checks the mapping
//! against the file's columns, loads the joined item tables once and
//! returns a streaming [`BehaviorSource`].

use std::path::Path;

use crate::csv_source::CsvSource;
use crate::error::{LogError, Result};
use crate::mapping::{CategoryMapping, DatasetMapping, InputFormat, TagMapping};
use crate::parquet_source::ParquetSource;
use crate::parse::ItemTable;
use crate::table::load_item_table;
use crate::vocab::Vocabularies;
use crate::BehaviorSource;

/// Opens `input` with `mapping` and returns a stream of its rows.
///
/// `input` is the log file itself, or a folder holding the mapping's
/// `log_file` (the `movielens` preset takes the `movielens-small` folder).
/// Relative item-table paths are resolved against that folder (or the log
/// file's folder). The main log is streamed, never loaded whole; item
/// tables are loaded here, once.
///
/// `vocabs` gets the mapping's behavior types, in the mapping's order, and
/// the strings of the item tables (genres into `categories`, tags into
/// `tags`). It is changed only when the open succeeds.
///
/// # Errors
///
/// [`LogError::Io`] (with the path) when the input or a table cannot be
/// opened; [`LogError::Mapping`] when the mapping is inconsistent or names
/// a column the file lacks (the message lists the file's columns);
/// [`LogError::Table`] on a malformed item-table row;
/// [`LogError::Parquet`] when a Parquet file cannot be read.
///
/// ```no_run
/// use hindsight_logs::{open_source, DatasetMapping, Row, Vocabularies};
///
/// let mapping = DatasetMapping::preset("movielens")?;
/// let mut vocabs = Vocabularies::default();
/// let mut source = open_source(&mapping, "data/movielens-small".as_ref(), &mut vocabs)?;
/// while let Some(row) = source.next_row(&mut vocabs)? {
///     match row {
///         Row::Ok(b) => println!("{} {} {}", b.user_id, b.item_id, b.timestamp),
///         Row::Bad(e) => eprintln!("line {}: {}", e.line, e.message),
///     }
/// }
/// # Ok::<(), hindsight_logs::LogError>(())
/// ```
pub fn open_source(
    mapping: &DatasetMapping,
    input: &Path,
    vocabs: &mut Vocabularies,
) -> Result<Box<dyn BehaviorSource>> {
    mapping.validate()?;
    let meta = std::fs::metadata(input).map_err(|source| LogError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let (log_path, base) = if meta.is_dir() {
        let Some(file) = &mapping.log_file else {
            return Err(LogError::Mapping(format!(
                "{} is a folder but the mapping \"{}\" has no \"log_file\"; pass the log file itself or set \"log_file\"",
                input.display(),
                mapping.name
            )));
        };
        (input.join(file), input.to_path_buf())
    } else {
        let base = input.parent().map(Path::to_path_buf).unwrap_or_default();
        (input.to_path_buf(), base)
    };
    let format = mapping.format.resolve(&log_path)?;

    let mut v = vocabs.clone();
    let type_ids = mapping
        .behavior_type_names()
        .into_iter()
        .map(|n| {
            let id = v.behavior_types.intern(n);
            u8::try_from(id).map_err(|_| {
                LogError::Mapping(format!(
                    "behavior type \"{n}\" would get id {id}; at most 256 behavior types fit, use a fresh vocabulary"
                ))
            })
        })
        .collect::<Result<Vec<u8>>>()?;

    type Tables = (Option<ItemTable>, Option<ItemTable>, Vec<String>);
    let load_tables = |v: &mut Vocabularies| -> Result<Tables> {
        let mut warnings = Vec::new();
        let categories = match &mapping.categories {
            CategoryMapping::ItemTable(t) => {
                let path = DatasetMapping::table_path(&base, t);
                let before = v.categories.len();
                let table = load_item_table(&path, t, &mut v.categories, &mut warnings)?;
                // Categories are a small set shared by many items; about as
                // many values as items is what a wrong delimiter that takes
                // titles for genres looks like.
                let values = v.categories.len() - before;
                if table.len() >= 20 && values * 2 >= table.len() {
                    warnings.push(format!(
                        "category table {} gives {values} distinct values to {} items; categories are usually far fewer than items: check its \"delimiter\", \"value_column\" and \"separator\" (or use it as a tag table)",
                        path.display(),
                        table.len()
                    ));
                }
                Some(table)
            }
            _ => None,
        };
        let tags = match &mapping.tags {
            TagMapping::TagTable(t) => Some(load_item_table(
                &DatasetMapping::table_path(&base, t),
                t,
                &mut v.tags,
                &mut warnings,
            )?),
            TagMapping::None => None,
        };
        Ok((categories, tags, warnings))
    };

    let source: Box<dyn BehaviorSource> = match format {
        InputFormat::Parquet => {
            Box::new(ParquetSource::open(mapping, &log_path, type_ids, || {
                load_tables(&mut v)
            })?)
        }
        _ => Box::new(CsvSource::open(
            mapping,
            &log_path,
            format,
            type_ids,
            || load_tables(&mut v),
        )?),
    };
    *vocabs = v;
    Ok(source)
}
