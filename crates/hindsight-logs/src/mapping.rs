//! Dataset mappings: how the columns of a log (CSV, TSV, Parquet) map to
//! behaviors, and the built-in presets (`taobao`, `movielens`).
//!
//! A [`DatasetMapping`] is plain data (serde, loadable from JSON with
//! unknown fields rejected). It names the user, item and timestamp columns,
//! how the behavior type is read (a column with a fixed list of values, or
//! rating buckets over a numeric column), where item categories come from
//! (nothing, an inline numeric column, or an item table joined by item id)
//! and where tags come from (nothing or a tag table joined by item id).
//!
//! The mapping fixes the behavior type names *and their order*
//! ([`DatasetMapping::behavior_type_names`]); a source interns them into
//! `Vocabularies::behavior_types` in that order when it is opened, so the
//! ids are stable.
//!
//! ```
//! use hindsight_logs::DatasetMapping;
//!
//! let m = DatasetMapping::preset("taobao").unwrap();
//! assert_eq!(m.behavior_type_names(), vec!["pv", "cart", "fav", "buy"]);
//! let json = serde_json::to_string(&m).unwrap();
//! assert_eq!(DatasetMapping::from_json(&json).unwrap(), m);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

/// How a log maps to behaviors. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetMapping {
    /// Dataset name, e.g. `"taobao"`.
    pub name: String,
    /// Input format; [`InputFormat::Auto`] picks it from the file extension.
    #[serde(default)]
    pub format: InputFormat,
    /// Whether the first line of a CSV/TSV log is a header (ignored for
    /// Parquet, whose columns are always named).
    #[serde(default)]
    pub has_header: bool,
    /// Field delimiter of a CSV/TSV log: one ASCII character, or several
    /// (`"::"` for MovieLens-1M `.dat` files); default `,` for CSV and a
    /// tab for TSV. Double quotes protect delimiters inside a field with a
    /// one-character delimiter other than a tab; a tab or a multi-character
    /// delimiter splits every line as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Column names of a log without a header, so that columns can be
    /// referred to by name and the column count checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// File name of the main log inside the input folder, used when the
    /// input given to [`open_source`](crate::open_source) is a folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    /// The user id column (non-negative integers).
    pub user: Column,
    /// The item id column (non-negative integers).
    pub item: Column,
    /// The timestamp column (numbers in `timestamp_unit`, or dates).
    pub timestamp: Column,
    /// How the timestamp column is written: `seconds` (the default:
    /// integer or decimal Unix seconds, `881250949` or `881250949.0`),
    /// `millis` (Unix milliseconds) or `rfc3339` (ISO-8601 dates such as
    /// `2017-11-25T01:21:10Z`). Behaviors always carry Unix seconds
    /// (fractions are floored).
    #[serde(default)]
    pub timestamp_unit: TimestampUnit,
    /// How the behavior type is read.
    pub behavior: BehaviorMapping,
    /// Where item categories come from.
    #[serde(default)]
    pub categories: CategoryMapping,
    /// Where item tags come from.
    #[serde(default)]
    pub tags: TagMapping,
}

/// A column, by header name or by 0-based index. In JSON a string is a name
/// and a number an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Column {
    /// By header name (or by a name of [`DatasetMapping::columns`]).
    Name(String),
    /// By 0-based position.
    Index(usize),
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Name(n) => write!(f, "\"{n}\""),
            Column::Index(i) => write!(f, "column {i}"),
        }
    }
}

impl From<&str> for Column {
    fn from(name: &str) -> Self {
        Column::Name(name.to_owned())
    }
}

impl From<usize> for Column {
    fn from(index: usize) -> Self {
        Column::Index(index)
    }
}

/// Input format of the main log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// From the file extension: `.csv`/`.txt`, `.tsv`/`.tab` and the
    /// RecBole atomic files `.inter`/`.item`/`.user`, `.parquet`/`.pq`;
    /// any other extension (`.dat`) needs an explicit format.
    #[default]
    Auto,
    /// Comma-separated values (or another [`DatasetMapping::delimiter`]).
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Apache Parquet; columns are matched by name.
    Parquet,
}

impl InputFormat {
    /// The concrete format of `path`: `self` unless it is `Auto`, else
    /// guessed from the file extension.
    pub fn resolve(self, path: &Path) -> Result<InputFormat> {
        if self != InputFormat::Auto {
            return Ok(self);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") | Some("txt") => Ok(InputFormat::Csv),
            Some("tsv") | Some("tab") | Some("inter") | Some("item") | Some("user") => {
                Ok(InputFormat::Tsv)
            }
            Some("parquet") | Some("pq") => Ok(InputFormat::Parquet),
            _ => Err(LogError::Mapping(format!(
                "cannot tell the format of {} from its extension; set \"format\" to csv, tsv or parquet in the mapping (and \"delimiter\", e.g. \"::\" for MovieLens-1M .dat files)",
                path.display()
            ))),
        }
    }
}

/// How a timestamp column is written. Behaviors always carry Unix seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    /// Unix seconds, integer or decimal (`881250949.0`, as RecBole writes
    /// them; fractions are floored).
    #[default]
    Seconds,
    /// Unix milliseconds, integer or decimal (floored to seconds).
    Millis,
    /// RFC 3339 / ISO-8601 date-times: `2017-11-25T01:21:10Z`,
    /// `2017-11-25 01:21:10.5+08:00`, `2017-11-25` (midnight); without an
    /// offset the time is UTC. Parquet TIMESTAMP columns are read whatever
    /// the unit.
    #[serde(alias = "iso8601")]
    Rfc3339,
}

/// How the behavior type of a row is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BehaviorMapping {
    /// No behavior column: every row has this one behavior type (a log of
    /// plain interactions, e.g. `{"constant": "click"}`).
    Constant(String),
    /// A column whose value must be one of `values` (exact match); any other
    /// value makes the row bad. The order of `values` is the id order.
    Categorical {
        /// The column.
        column: Column,
        /// The allowed values, in id order.
        values: Vec<String>,
    },
    /// Buckets over a numeric column (e.g. a rating): the row's type is the
    /// first bucket whose `below` bound is greater than the value; the last
    /// bucket has no bound. A non-numeric value makes the row bad.
    RatingBuckets {
        /// The numeric column.
        column: Column,
        /// The buckets, in ascending order of their bounds, in id order.
        buckets: Vec<RatingBucket>,
    },
}

impl BehaviorMapping {
    /// The column the behavior type is read from (`None` for a constant).
    pub fn column(&self) -> Option<&Column> {
        match self {
            BehaviorMapping::Constant(_) => None,
            BehaviorMapping::Categorical { column, .. }
            | BehaviorMapping::RatingBuckets { column, .. } => Some(column),
        }
    }
}

/// One bucket of [`BehaviorMapping::RatingBuckets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingBucket {
    /// Behavior type name of the bucket.
    pub name: String,
    /// Exclusive upper bound; `None` for the last (open) bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
}

/// Where item categories come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CategoryMapping {
    /// No categories.
    #[default]
    None,
    /// A numeric column of the log, ids used as is (taobao `category_id`);
    /// a non-numeric value makes the row bad.
    Column(Column),
    /// An item table joined by item id (movielens `movies.csv`, `genres`);
    /// strings are interned into `Vocabularies::categories`. Items absent
    /// from the table have no categories.
    ItemTable(ItemTableMapping),
}

/// Where item tags come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TagMapping {
    /// No tags.
    #[default]
    None,
    /// A tag table joined by item id (movielens `tags.csv`): an item's tags
    /// are all the values the table ever gives it, interned into
    /// `Vocabularies::tags`.
    ///
    /// The table is read whole, so a behavior gets the tags its item
    /// received at any time, including after the behavior: a mild,
    /// deliberate leak of future information, common practice with
    /// ml-latest-small.
    TagTable(ItemTableMapping),
}

/// A small CSV table joined to the log by item id, loaded once at open
/// time. Each row gives one item some string values (one value, or several
/// split on `separator`); values are trimmed, empty ones and those in
/// `skip_values` dropped, optionally lowercased, then interned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemTableMapping {
    /// The CSV file; a relative path is relative to the input folder (or to
    /// the folder of the log file when the input is a file).
    pub path: String,
    /// Whether the table has a header line.
    #[serde(default = "yes")]
    pub has_header: bool,
    /// Field delimiter (one or more ASCII characters), default `,`; quotes
    /// as for [`DatasetMapping::delimiter`] (a quoted field may hold the
    /// delimiter: `1,"Toy Story, the (1995)",Comedy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// The item id column.
    pub item_column: Column,
    /// The value column.
    pub value_column: Column,
    /// Separator of a multi-valued column (`|` for movielens genres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// Values meaning "no value" (movielens `(no genres listed)`), matched
    /// after trimming and before lowercasing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_values: Vec<String>,
    /// Lowercase values before interning.
    #[serde(default)]
    pub lowercase: bool,
    /// Text encoding of the table: `utf8` (the default; invalid bytes are
    /// replaced and warned about) or `latin1` (ISO-8859-1, as MovieLens-1M
    /// `movies.dat`).
    #[serde(default, skip_serializing_if = "Encoding::is_utf8")]
    pub encoding: Encoding,
}

/// Text encoding of an item table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// UTF-8.
    #[default]
    Utf8,
    /// ISO-8859-1: each byte is the character of that code point.
    #[serde(alias = "iso-8859-1")]
    Latin1,
}

impl Encoding {
    fn is_utf8(&self) -> bool {
        *self == Encoding::Utf8
    }

    /// Decodes `bytes` (lossily for invalid UTF-8); the flag is whether
    /// bytes were replaced.
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8]) -> (std::borrow::Cow<'a, str>, bool) {
        match self {
            Encoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => (s.into(), false),
                Err(_) => (String::from_utf8_lossy(bytes), true),
            },
            Encoding::Latin1 => {
                if bytes.is_ascii() {
                    (std::str::from_utf8(bytes).unwrap_or_default().into(), false)
                } else {
                    (
                        bytes
                            .iter()
                            .map(|&b| char::from(b))
                            .collect::<String>()
                            .into(),
                        false,
                    )
                }
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// The names of the built-in presets.
pub const PRESETS: &[&str] = &["taobao", "movielens"];

impl DatasetMapping {
    /// A built-in mapping: `"taobao"` (the headerless
    /// `UserBehavior.csv`: `user_id,item_id,category_id,behavior_type,timestamp`,
    /// types `pv, cart, fav, buy`) or `"movielens"` (a folder with
    /// `ratings.csv`, `movies.csv` and `tags.csv`; types are rating buckets
    /// `low` < 3, `mid` 3-3.5, `high` >= 4; categories are the genres; tags
    /// are all tags given to the movie, lowercased).
    pub fn preset(name: &str) -> Result<DatasetMapping> {
        match name {
            "taobao" => Ok(DatasetMapping {
                name: "taobao".into(),
                format: InputFormat::Csv,
                has_header: false,
                delimiter: None,
                columns: Some(
                    [
                        "user_id",
                        "item_id",
                        "category_id",
                        "behavior_type",
                        "timestamp",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                log_file: Some("UserBehavior.csv".into()),
                user: "user_id".into(),
                item: "item_id".into(),
                timestamp: "timestamp".into(),
                timestamp_unit: TimestampUnit::Seconds,
                behavior: BehaviorMapping::Categorical {
                    column: "behavior_type".into(),
                    values: ["pv", "cart", "fav", "buy"].map(String::from).to_vec(),
                },
                categories: CategoryMapping::Column("category_id".into()),
                tags: TagMapping::None,
            }),
            "movielens" => Ok(DatasetMapping {
                name: "movielens".into(),
                format: InputFormat::Csv,
                has_header: true,
                delimiter: None,
                columns: None,
                log_file: Some("ratings.csv".into()),
                user: "user_id".into(),
                item: "item_id".into(),
                timestamp: "timestamp".into(),
                timestamp_unit: TimestampUnit::Seconds,
                behavior: BehaviorMapping::RatingBuckets {
                    column: "rating".into(),
                    buckets: vec![
                        RatingBucket {
                            name: "low".into(),
                            below: Some(3.0),
                        },
                        RatingBucket {
                            name: "mid".into(),
                            below: Some(4.0),
                        },
                        RatingBucket {
                            name: "high".into(),
                            below: None,
                        },
                    ],
                },
                categories: CategoryMapping::ItemTable(ItemTableMapping {
                    path: "movies.csv".into(),
                    has_header: true,
                    delimiter: None,
                    item_column: "item_id".into(),
                    value_column: "genres".into(),
                    separator: Some("|".into()),
                    skip_values: vec!["(no genres listed)".into()],
                    lowercase: false,
                    encoding: Encoding::Utf8,
                }),
                tags: TagMapping::TagTable(ItemTableMapping {
                    path: "tags.csv".into(),
                    has_header: true,
                    delimiter: None,
                    item_column: "movieId".into(),
                    value_column: "tag".into(),
                    separator: None,
                    skip_values: Vec::new(),
                    lowercase: true,
                    encoding: Encoding::Utf8,
                }),
            }),
            other => Err(LogError::Mapping(format!(
                "unknown preset \"{other}\"; known presets: {}",
                PRESETS.join(", ")
            ))),
        }
    }

    /// Parses a mapping from JSON (unknown fields are rejected) and
    /// validates it.
    pub fn from_json(json: &str) -> Result<DatasetMapping> {
        let m: DatasetMapping = serde_json::from_str(json).map_err(|e| {
            LogError::Mapping(format!(
                "invalid mapping json: {e}; fix the mapping file (see docs/mapping.md)"
            ))
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Reads a mapping from a JSON file (see [`from_json`](Self::from_json)).
    pub fn load(path: &Path) -> Result<DatasetMapping> {
        let text = std::fs::read_to_string(path).map_err(|source| LogError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            // One "bad dataset mapping" prefix, then the file, then what is wrong.
            LogError::Mapping(msg) => LogError::Mapping(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// The behavior type names, in id order (taobao: `pv, cart, fav, buy`;
    /// movielens: `low, mid, high`).
    pub fn behavior_type_names(&self) -> Vec<&str> {
        match &self.behavior {
            BehaviorMapping::Constant(name) => vec![name.as_str()],
            BehaviorMapping::Categorical { values, .. } => {
                values.iter().map(String::as_str).collect()
            }
            BehaviorMapping::RatingBuckets { buckets, .. } => {
                buckets.iter().map(|b| b.name.as_str()).collect()
            }
        }
    }

    /// Checks the mapping for internal consistency (not against a file:
    /// that happens when a source is opened).
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(LogError::Mapping(msg));
        if let Some(d) = &self.delimiter {
            check_delimiter(d, "delimiter")?;
        }
        let names = self.behavior_type_names();
        if names.is_empty() {
            return bad("the behavior mapping lists no behavior types; list at least one".into());
        }
        if names.len() > 256 {
            return bad(format!(
                "the behavior mapping lists {} behavior types; at most 256 are supported",
                names.len()
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return bad(format!(
                    "behavior type \"{n}\" is listed twice; list each name once"
                ));
            }
        }
        if let BehaviorMapping::RatingBuckets { buckets, .. } = &self.behavior {
            let mut prev = f64::NEG_INFINITY;
            for (i, b) in buckets.iter().enumerate() {
                let last = i + 1 == buckets.len();
                match b.below {
                    None if !last => {
                        return bad(format!(
                            "rating bucket \"{}\" has no \"below\" bound but is not the last; only the last bucket may be open",
                            b.name
                        ))
                    }
                    Some(x) if !x.is_finite() || x <= prev => {
                        return bad(format!(
                            "rating bucket \"{}\" has bound {x}; bounds must be finite and increasing",
                            b.name
                        ))
                    }
                    Some(x) => prev = x,
                    None => {}
                }
            }
        }
        for table in [self.categories.table(), self.tags.table()]
            .into_iter()
            .flatten()
        {
            if let Some(d) = &table.delimiter {
                check_delimiter(d, &format!("delimiter of table {}", table.path))?;
            }
            if table.separator.as_deref() == Some("") {
                return bad(format!(
                    "the separator of table {} is empty; remove it or give a non-empty string",
                    table.path
                ));
            }
        }
        if let Some(cols) = &self.columns {
            for (i, c) in cols.iter().enumerate() {
                if cols[..i].contains(c) {
                    return bad(format!("column \"{c}\" is listed twice in \"columns\""));
                }
            }
        }
        Ok(())
    }

    /// The path of an item table: `path` as is when absolute, else relative
    /// to `base` (the input folder or the folder of the log file).
    pub(crate) fn table_path(base: &Path, table: &ItemTableMapping) -> PathBuf {
        let p = Path::new(&table.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    }
}

impl CategoryMapping {
    fn table(&self) -> Option<&ItemTableMapping> {
        match self {
            CategoryMapping::ItemTable(t) => Some(t),
            _ => None,
        }
    }
}

impl TagMapping {
    fn table(&self) -> Option<&ItemTableMapping> {
        match self {
            TagMapping::TagTable(t) => Some(t),
            TagMapping::None => None,
        }
    }
}

fn check_delimiter(d: &str, what: &str) -> Result<()> {
    let ok = !d.is_empty()
        && d.len() <= 8
        && d.chars()
            .all(|c| c.is_ascii() && c != '"' && c != '\n' && c != '\r');
    if ok {
        Ok(())
    } else {
        Err(LogError::Mapping(format!(
            "{what} {d:?} is not usable; use 1 to 8 ASCII characters other than a quote or a newline"
        )))
    }
}

/// How the fields of a delimited line are split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Splitter {
    /// One byte, with or without double-quote handling.
    Byte {
        /// The delimiter.
        delimiter: u8,
        /// Whether double quotes protect delimiters and newlines.
        quoting: bool,
    },
    /// Several bytes (`::`); no quoting.
    Str(Vec<u8>),
}

impl Splitter {
    /// The splitter of a log or table: `delimiter` (validated ASCII) or the
    /// format's default (a tab for TSV, else a comma). Quoting is on for
    /// one-character delimiters other than a tab.
    pub(crate) fn new(delimiter: Option<&str>, format: InputFormat) -> Splitter {
        let d: &[u8] = match delimiter {
            Some(d) if !d.is_empty() => d.as_bytes(),
            _ if format == InputFormat::Tsv => b"\t",
            _ => b",",
        };
        match d {
            [b] => Splitter::Byte {
                delimiter: *b,
                quoting: *b != b'\t',
            },
            _ => Splitter::Str(d.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_roundtrip_through_json() {
        for name in PRESETS {
            let m = DatasetMapping::preset(name).unwrap();
            m.validate().unwrap();
            let json = serde_json::to_string_pretty(&m).unwrap();
            assert_eq!(DatasetMapping::from_json(&json).unwrap(), m, "{json}");
        }
        assert_eq!(
            DatasetMapping::preset("movielens")
                .unwrap()
                .behavior_type_names(),
            vec!["low", "mid", "high"]
        );
    }

    #[test]
    fn unknown_preset_lists_known_ones() {
        let e = DatasetMapping::preset("criteo").unwrap_err().to_string();
        assert!(e.contains("criteo") && e.contains("taobao") && e.contains("movielens"));
    }

    #[test]
    fn json_by_index_and_unknown_fields() {
        let json = r#"{
            "name": "x", "format": "tsv", "user": 0, "item": 1, "timestamp": 3,
            "timestamp_unit": "millis",
            "behavior": {"categorical": {"column": 2, "values": ["click"]}},
            "categories": {"column": 4}
        }"#;
        let m = DatasetMapping::from_json(json).unwrap();
        assert_eq!(m.user, Column::Index(0));
        assert_eq!(m.categories, CategoryMapping::Column(Column::Index(4)));
        assert_eq!(m.tags, TagMapping::None);
        assert_eq!(m.timestamp_unit, TimestampUnit::Millis);

        let typo = json.replace("\"timestamp_unit\"", "\"timestamp_units\"");
        let e = DatasetMapping::from_json(&typo).unwrap_err().to_string();
        assert!(e.contains("timestamp_units"), "{e}");
        let typo = json.replace("\"values\"", "\"value\"");
        assert!(DatasetMapping::from_json(&typo).is_err());
    }

    #[test]
    fn validation_rejects_inconsistent_mappings() {
        let mut m = DatasetMapping::preset("movielens").unwrap();
        if let BehaviorMapping::RatingBuckets { buckets, .. } = &mut m.behavior {
            buckets[1].below = Some(2.0);
        }
        assert!(m.validate().is_err());
        let mut m = DatasetMapping::preset("taobao").unwrap();
        m.behavior = BehaviorMapping::Categorical {
            column: "behavior_type".into(),
            values: vec!["pv".into(), "pv".into()],
        };
        assert!(m.validate().is_err());
        let mut m = DatasetMapping::preset("taobao").unwrap();
        m.delimiter = Some("é".into());
        assert!(m.validate().is_err());
    }

    #[test]
    fn a_bad_file_names_itself_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"{"name": "x", "delimiter": 5}"#).unwrap();
        let e = DatasetMapping::load(&p).unwrap_err().to_string();
        assert_eq!(e.matches("bad dataset mapping").count(), 1, "{e}");
        assert!(e.contains("m.json") && e.contains("docs/mapping.md"), "{e}");
    }

    #[test]
    fn format_from_extension() {
        let auto = InputFormat::Auto;
        assert_eq!(
            auto.resolve(Path::new("a/b.CSV")).unwrap(),
            InputFormat::Csv
        );
        assert_eq!(auto.resolve(Path::new("b.tsv")).unwrap(), InputFormat::Tsv);
        assert_eq!(
            auto.resolve(Path::new("b.parquet")).unwrap(),
            InputFormat::Parquet
        );
        assert!(auto.resolve(Path::new("b")).is_err());
        assert_eq!(
            InputFormat::Csv.resolve(Path::new("b")).unwrap(),
            InputFormat::Csv
        );
        for recbole in ["x.inter", "x.item", "x.user"] {
            assert_eq!(auto.resolve(Path::new(recbole)).unwrap(), InputFormat::Tsv);
        }
        assert!(auto.resolve(Path::new("ratings.dat")).is_err());
        assert_eq!(
            InputFormat::Csv.resolve(Path::new("ratings.dat")).unwrap(),
            InputFormat::Csv
        );
        for bad in ["", "\"", "a\nb", "é", "123456789"] {
            let mut m = DatasetMapping::preset("taobao").unwrap();
            m.delimiter = Some(bad.into());
            assert!(m.validate().is_err(), "{bad:?}");
        }
        let mut m = DatasetMapping::preset("taobao").unwrap();
        m.delimiter = Some("::".into());
        m.validate().unwrap();
    }
}
