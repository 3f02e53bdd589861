//! Trying a mapping on the first rows of a log ([`check_source`], behind
//! `hindsight mapping check` and the pre-flight of `hindsight ingest`) and
//! guessing a starting mapping from a file's first lines ([`guess_mapping`],
//! behind `hindsight mapping init`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::error::{LogError, Result};
use crate::mapping::{
    BehaviorMapping, CategoryMapping, Column, DatasetMapping, Encoding, InputFormat,
    ItemTableMapping, RatingBucket, Splitter, TagMapping, TimestampUnit,
};
use crate::parse::parse_u64;
use crate::record::RecordReader;
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::{open_source, RejectReason, Row, RowError, Vocabularies};

/// A role of the mapping and the column of the input it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedColumn {
    /// `user`, `item`, `timestamp`, `behavior type` or `category`.
    pub role: String,
    /// The column's name (its header, or `role (column i)`).
    pub column: String,
    /// 0-based position in the file.
    pub index: usize,
}

/// Rejected rows of one reason, with the first few.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    /// Why.
    pub reason: RejectReason,
    /// How many rows.
    pub count: u64,
    /// The first rows (line and message).
    pub examples: Vec<RowError>,
}

/// What a mapping makes of the first rows of a log.
#[derive(Debug, Clone, Serialize)]
pub struct SourceCheck {
    /// Which column each role reads.
    pub columns: Vec<MappedColumn>,
    /// Rows read (at most the limit given).
    pub rows_read: u64,
    /// Rows that became behaviors within the index's limits.
    pub parsed: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Rejects by reason, most frequent first, with examples.
    pub rejects: Vec<ReasonCount>,
    /// Parsed rows per behavior type, in the mapping's order.
    pub behavior_types: Vec<(String, u64)>,
    /// Distinct users and items among the parsed rows.
    pub users: u64,
    /// Distinct items among the parsed rows.
    pub items: u64,
    /// Earliest and latest timestamp (Unix seconds) of the parsed rows.
    pub timestamps: Option<(i64, i64)>,
    /// The same as RFC 3339 text.
    pub time_range: Option<(String, String)>,
    /// Parsed rows with at least one category, and with at least one tag.
    pub rows_with_categories: u64,
    /// Parsed rows with at least one tag.
    pub rows_with_tags: u64,
    /// Size of the category and tag vocabularies (string-valued tables).
    pub category_values: usize,
    /// Size of the tag vocabulary.
    pub tag_values: usize,
    /// Suspicious things (from opening the source and from the rows).
    pub warnings: Vec<String>,
}

impl SourceCheck {
    /// Whether rows were read and none of them became a behavior: the
    /// mapping does not fit the file (a wrong delimiter, column or unit).
    pub fn nothing_parses(&self) -> bool {
        self.rows_read > 0 && self.parsed == 0
    }
}

/// Opens `input` with `mapping` and reads its first `max_rows` rows: which
/// column each role reads, how many rows parse, rejects by reason with up
/// to `examples` each, and warnings (joins that look wrong, an item table
/// no row joins). Rows breaking the index's limits count as rejected, as
/// at ingest.
///
/// # Errors
///
/// Those of [`open_source`], and a read error of the input.
pub fn check_source(
    mapping: &DatasetMapping,
    input: &Path,
    max_rows: u64,
    examples: usize,
) -> Result<SourceCheck> {
    let mut vocabs = Vocabularies::default();
    let mut source = open_source(mapping, input, &mut vocabs)?;
    let names = mapping.behavior_type_names();
    let mut per_type = vec![0u64; vocabs.behavior_types.len()];
    let mut rejects: BTreeMap<RejectReason, ReasonCount> = BTreeMap::new();
    let (mut users, mut items) = (HashSet::new(), HashSet::new());
    let mut c = SourceCheck {
        columns: source.mapped_columns().to_vec(),
        rows_read: 0,
        parsed: 0,
        rejected: 0,
        rejects: Vec::new(),
        behavior_types: Vec::new(),
        users: 0,
        items: 0,
        timestamps: None,
        time_range: None,
        rows_with_categories: 0,
        rows_with_tags: 0,
        category_values: vocabs.categories.len(),
        tag_values: vocabs.tags.len(),
        warnings: source.warnings().to_vec(),
    };
    while c.rows_read < max_rows {
        let Some(row) = source.next_row(&mut vocabs)? else {
            break;
        };
        c.rows_read += 1;
        match row.checked() {
            Row::Ok(b) => {
                c.parsed += 1;
                if let Some(n) = per_type.get_mut(usize::from(b.behavior_type)) {
                    *n += 1;
                }
                users.insert(b.user_id);
                items.insert(b.item_id);
                let (lo, hi) = c.timestamps.unwrap_or((b.timestamp, b.timestamp));
                c.timestamps = Some((lo.min(b.timestamp), hi.max(b.timestamp)));
                c.rows_with_categories += u64::from(!b.features.categories.is_empty());
                c.rows_with_tags += u64::from(!b.features.tags.is_empty());
            }
            Row::Bad(e) => {
                c.rejected += 1;
                let r = rejects.entry(e.reason).or_insert_with(|| ReasonCount {
                    reason: e.reason,
                    count: 0,
                    examples: Vec::new(),
                });
                r.count += 1;
                if r.examples.len() < examples {
                    r.examples.push(e);
                }
            }
        }
    }
    c.behavior_types = names
        .iter()
        .map(|n| {
            let id = vocabs.behavior_types.get(n).unwrap_or(u64::MAX) as usize;
            ((*n).to_owned(), per_type.get(id).copied().unwrap_or(0))
        })
        .collect();
    c.rejects = rejects.into_values().collect();
    c.rejects.sort_by_key(|r| std::cmp::Reverse(r.count));
    c.users = users.len() as u64;
    c.items = items.len() as u64;
    c.time_range = c
        .timestamps
        .map(|(lo, hi)| (format_rfc3339(lo), format_rfc3339(hi)));
    if c.parsed > 0 {
        if let CategoryMapping::ItemTable(t) = &mapping.categories {
            if c.rows_with_categories == 0 {
                c.warnings.push(format!(
                    "no item of the first {} rows is in the category table {}; check its \"item_column\" (and that it holds the log's item ids)",
                    c.parsed, t.path
                ));
            }
        }
        if let TagMapping::TagTable(t) = &mapping.tags {
            if c.rows_with_tags == 0 {
                c.warnings.push(format!(
                    "no item of the first {} rows is in the tag table {}; check its \"item_column\"",
                    c.parsed, t.path
                ));
            }
        }
        if let Some((lo, hi)) = c.timestamps {
            // Seconds read as milliseconds land in January 1970.
            if hi < 100_000_000 && mapping.timestamp_unit == TimestampUnit::Millis {
                c.warnings.push(format!(
                    "every timestamp is before {}; are they seconds rather than milliseconds? set \"timestamp_unit\": \"seconds\"",
                    format_rfc3339(100_000_000)
                ));
            }
            if lo > 4_102_444_800 && mapping.timestamp_unit == TimestampUnit::Seconds {
                c.warnings.push(
                    "every timestamp is after the year 2100; are they milliseconds? set \"timestamp_unit\": \"millis\"".into(),
                );
            }
        }
    }
    Ok(c)
}

/// A mapping guessed from a file, and why each choice was made.
#[derive(Debug, Clone)]
pub struct Guess {
    /// The mapping (valid; check it with [`check_source`]).
    pub mapping: DatasetMapping,
    /// One line per guess: what was chosen and from what.
    pub notes: Vec<String>,
}

/// How an item table was guessed (see [`guess_mapping`]).
#[derive(Debug, Clone)]
pub(crate) struct TableGuess {
    /// The mapping of the table.
    pub(crate) table: ItemTableMapping,
    /// Whether its values look like tags rather than categories.
    pub(crate) tags: bool,
}

/// Lines read to guess.
const SAMPLE_ROWS: usize = 200;

/// A sample of a delimited file: its records as byte fields.
struct Sample {
    delimiter: String,
    rows: Vec<Vec<Vec<u8>>>,
}

fn read_sample(path: &Path, splitter: &Splitter) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut r = RecordReader::open(path, splitter)?;
    let mut rows = Vec::new();
    while rows.len() < SAMPLE_ROWS {
        if r.read()?.is_none() {
            break;
        }
        rows.push((0..r.len()).map(|i| r.field(i).to_vec()).collect());
    }
    Ok(rows)
}

/// Picks the delimiter whose records have the same field count (at least
/// 2) most often; ties go to the earlier candidate.
fn sniff(path: &Path, extension_tsv: bool) -> Result<Sample> {
    let candidates: &[&str] = &["\t", "::", ",", ";", "|", " "];
    let mut best: Option<(f64, Sample)> = None;
    for d in candidates {
        let splitter = Splitter::new(Some(d), InputFormat::Csv);
        let rows = read_sample(path, &splitter)?;
        if rows.is_empty() {
            return Err(LogError::Mapping(format!(
                "{} is empty; give a log with a few rows",
                path.display()
            )));
        }
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for r in &rows {
            *counts.entry(r.len()).or_default() += 1;
        }
        let (width, n) = counts
            .into_iter()
            .max_by_key(|&(w, n)| (n, w))
            .unwrap_or((0, 0));
        if width < 2 {
            continue;
        }
        let mut score = n as f64 / rows.len() as f64;
        if extension_tsv && *d == "\t" {
            score += 0.01;
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((
                score,
                Sample {
                    delimiter: (*d).to_owned(),
                    rows,
                },
            ));
        }
    }
    best.map(|(_, s)| s).ok_or_else(|| {
        LogError::Mapping(format!(
            "cannot find the delimiter of {}: no candidate (tab, ::, comma, ;, |, space) splits its lines into columns; write the mapping by hand (docs/mapping.md)",
            path.display()
        ))
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_owned()
}

fn is_int(b: &[u8]) -> bool {
    parse_u64(b.trim_ascii()).is_some()
}

fn as_f64(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b.trim_ascii())
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

fn is_date(b: &[u8]) -> bool {
    std::str::from_utf8(b)
        .ok()
        .and_then(parse_rfc3339)
        .is_some()
        && !is_int(b)
}

/// A header name reduced for matching: lowercase, the RecBole type suffix
/// (`:token`) dropped, `_`, `-` and spaces removed.
fn norm(name: &str) -> String {
    let base = name.split(':').next().unwrap_or(name);
    base.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

const USER_NAMES: &[&str] = &[
    "user",
    "userid",
    "uid",
    "customerid",
    "visitorid",
    "reviewerid",
    "u",
];
const ITEM_NAMES: &[&str] = &[
    "item",
    "itemid",
    "iid",
    "movieid",
    "productid",
    "sku",
    "articleid",
    "asin",
    "i",
];
const TIME_NAMES: &[&str] = &[
    "timestamp",
    "ts",
    "time",
    "datetime",
    "date",
    "eventtime",
    "createdat",
    "unixtime",
];
const RATING_NAMES: &[&str] = &["rating", "score", "stars", "label"];
const BEHAVIOR_NAMES: &[&str] = &[
    "behavior",
    "behaviortype",
    "behaviour",
    "event",
    "eventtype",
    "action",
    "type",
    "btype",
];
const CATEGORY_NAMES: &[&str] = &["category", "categoryid", "cat", "catid", "cate", "cateid"];
const VALUE_NAMES: &[&str] = &[
    "genres",
    "genre",
    "categories",
    "category",
    "class",
    "tags",
    "tag",
    "keywords",
];

/// Statistics of one column of a sample.
struct Col {
    ints: usize,
    nums: usize,
    dates: usize,
    n: usize,
    distinct: Vec<String>,
    max: f64,
    median_abs: f64,
}

fn column_stats(rows: &[Vec<Vec<u8>>], j: usize) -> Col {
    let vals: Vec<&[u8]> = rows
        .iter()
        .filter_map(|r| r.get(j).map(Vec::as_slice))
        .collect();
    let mut distinct: Vec<String> = Vec::new();
    let mut nums: Vec<f64> = Vec::new();
    for v in &vals {
        let t = text(v);
        if distinct.len() <= 64 && !distinct.contains(&t) {
            distinct.push(t);
        }
        if let Some(x) = as_f64(v) {
            nums.push(x.abs());
        }
    }
    nums.sort_by(f64::total_cmp);
    Col {
        ints: vals.iter().filter(|v| is_int(v)).count(),
        nums: nums.len(),
        dates: vals.iter().filter(|v| is_date(v)).count(),
        n: vals.len().max(1),
        max: nums.last().copied().unwrap_or(0.0),
        median_abs: nums.get(nums.len() / 2).copied().unwrap_or(0.0),
        distinct,
    }
}

impl Col {
    fn mostly(&self, k: usize) -> bool {
        k * 10 >= self.n * 9
    }
    fn timestamp_like(&self) -> bool {
        self.mostly(self.dates)
            || (self.mostly(self.nums) && self.median_abs >= 1e8 && self.median_abs < 1e13)
    }
    fn rating_like(&self) -> bool {
        self.mostly(self.nums) && self.max <= 10.0 && self.distinct.len() <= 21
    }
    fn label_like(&self) -> bool {
        !self.mostly(self.nums) && self.distinct.len() <= 32
    }
}

/// Guesses a mapping for the delimited log at `log` (CSV, TSV, `::`
/// and other delimiters) from its first lines: the delimiter (the
/// candidate that splits lines into the most consistent field counts),
/// whether line 1 is a header, each column's role (by header name, else
/// by its values), the timestamp unit (dates, magnitudes), the behavior
/// mapping (a rating column becomes low/mid/high buckets, a text column
/// with few values a categorical mapping of the values seen, none a
/// constant `interaction`), and with `item_table` that table's delimiter,
/// columns, separator and encoding. The notes say what each guess rests
/// on; rows outside what the first lines show (another behavior value)
/// are left for [`check_source`] to find.
///
/// # Errors
///
/// [`LogError::Io`] when a file cannot be read, [`LogError::Mapping`] when
/// no user or item column can be told apart (then the mapping must be
/// written by hand, see `docs/mapping.md`).
pub fn guess_mapping(log: &Path, item_table: Option<&Path>) -> Result<Guess> {
    let mut notes = Vec::new();
    let ext = log
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("parquet" | "pq")) {
        return Err(LogError::Mapping(format!(
            "{} is parquet; `mapping init` reads delimited text: write the mapping by hand, naming the parquet columns (docs/mapping.md)",
            log.display()
        )));
    }
    let tsv_ext = matches!(
        ext.as_deref(),
        Some("tsv" | "tab" | "inter" | "item" | "user")
    );
    let sample = sniff(log, tsv_ext)?;
    let width = sample.rows[0].len();
    let body: Vec<Vec<Vec<u8>>> = sample.rows[1..].to_vec();
    let first = &sample.rows[0];
    // A header: line 1 has a non-number where the other lines have numbers.
    let has_header = !body.is_empty()
        && (0..width).any(|j| {
            let c = column_stats(&body, j);
            first
                .get(j)
                .is_some_and(|v| as_f64(v).is_none() && !is_date(v))
                && c.mostly(c.nums)
        });
    let rows = if has_header { &body } else { &sample.rows };
    let names: Vec<String> = if has_header {
        first.iter().map(|f| text(f)).collect()
    } else {
        (0..width).map(|j| format!("col{j}")).collect()
    };
    notes.push(format!(
        "delimiter {:?}: it splits {} of the first {} lines into {width} columns",
        sample.delimiter,
        sample.rows.iter().filter(|r| r.len() == width).count(),
        sample.rows.len()
    ));
    notes.push(if has_header {
        format!("line 1 is a header: {}", names.join(", "))
    } else {
        "line 1 is data (no header): \"columns\" names the columns (user_id, item_id, ... for the roles guessed, col<i> for the others); rename them as you like".into()
    });
    let stats: Vec<Col> = (0..width).map(|j| column_stats(rows, j)).collect();
    // Roles by header name first, then the rest by values, in an order
    // that settles the usual ambiguities (ids before small ratings).
    type Fits = fn(&Col) -> bool;
    let roles: [(&str, &[&str], Fits); 6] = [
        ("timestamp", TIME_NAMES, |c| c.timestamp_like()),
        ("user", USER_NAMES, |c| c.mostly(c.ints)),
        ("item", ITEM_NAMES, |c| c.mostly(c.ints)),
        ("rating", RATING_NAMES, |c| {
            c.rating_like() && c.distinct.len() > 1
        }),
        ("behavior type", BEHAVIOR_NAMES, |c| c.label_like()),
        ("category", CATEGORY_NAMES, |c| c.mostly(c.ints)),
    ];
    let mut found: [Option<usize>; 6] = [None; 6];
    let mut taken: Vec<usize> = Vec::new();
    if has_header {
        for (r, (label, list, _)) in roles.iter().enumerate() {
            if let Some(j) =
                (0..width).find(|j| !taken.contains(j) && list.contains(&norm(&names[*j]).as_str()))
            {
                taken.push(j);
                found[r] = Some(j);
                notes.push(format!(
                    "{label}: column {j} {:?} (from its name)",
                    names[j]
                ));
            }
        }
    }
    for (r, (label, _, fits)) in roles.iter().enumerate() {
        // A category or behavior column is guessed from values only
        // without a header (with one, an unnamed text column is a title).
        if found[r].is_some() || (has_header && r >= 4) || (r == 4 && found[3].is_some()) {
            continue;
        }
        if let Some(j) = (0..width).find(|j| !taken.contains(j) && fits(&stats[*j])) {
            taken.push(j);
            found[r] = Some(j);
            notes.push(format!("{label}: column {j} (from its values)"));
        }
    }
    let [time, user, item, rating, behavior, category] = found;
    let mut names = names;
    if !has_header {
        let role_names = [
            "timestamp",
            "user_id",
            "item_id",
            "rating",
            "behavior_type",
            "category_id",
        ];
        for (r, j) in found.iter().enumerate() {
            if let Some(j) = j {
                names[*j] = role_names[r].to_owned();
            }
        }
    }
    let (Some(user), Some(item)) = (user, item) else {
        return Err(LogError::Mapping(format!(
            "cannot tell the user and item columns of {} (columns: {}); write the mapping by hand (docs/mapping.md)",
            log.display(),
            names.join(", ")
        )));
    };
    let Some(time) = time else {
        return Err(LogError::Mapping(format!(
            "no column of {} looks like a timestamp (columns: {}); hindsight needs one: write the mapping by hand (docs/mapping.md)",
            log.display(),
            names.join(", ")
        )));
    };
    let tstats = &stats[time];
    let timestamp_unit = if tstats.mostly(tstats.dates) {
        TimestampUnit::Rfc3339
    } else if tstats.median_abs >= 1e11 {
        TimestampUnit::Millis
    } else {
        TimestampUnit::Seconds
    };
    notes.push(format!(
        "timestamp unit: {} (from values like {:?})",
        serde_json::to_value(timestamp_unit)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        tstats.distinct.first().cloned().unwrap_or_default()
    ));
    let col = |j: usize| Column::Name(names[j].clone());
    let behavior = match (rating, behavior) {
        (Some(j), _) => {
            let max = stats[j].max;
            let (lo, hi) = if max <= 1.0 {
                (0.5, 0.75)
            } else if max <= 5.0 {
                (3.0, 4.0)
            } else {
                (6.0, 8.0)
            };
            notes.push(format!(
                "behavior types: rating buckets low < {lo} <= mid < {hi} <= high over {:?} (largest value seen {max})",
                names[j]
            ));
            BehaviorMapping::RatingBuckets {
                column: col(j),
                buckets: vec![
                    RatingBucket {
                        name: "low".into(),
                        below: Some(lo),
                    },
                    RatingBucket {
                        name: "mid".into(),
                        below: Some(hi),
                    },
                    RatingBucket {
                        name: "high".into(),
                        below: None,
                    },
                ],
            }
        }
        (None, Some(j)) => {
            let values = stats[j].distinct.clone();
            notes.push(format!(
                "behavior types: the values of {:?} seen in the first lines ({}); rows with other values are rejected: add them to \"values\"",
                names[j],
                values.join(", ")
            ));
            BehaviorMapping::Categorical {
                column: col(j),
                values,
            }
        }
        (None, None) => {
            notes.push(
                "behavior types: no rating or behavior column; every row is one \"interaction\""
                    .into(),
            );
            BehaviorMapping::Constant("interaction".into())
        }
    };
    let mut categories = match category {
        Some(j) => CategoryMapping::Column(col(j)),
        None => CategoryMapping::None,
    };
    let mut tags = TagMapping::None;
    if let Some(t) = item_table {
        let g = guess_table(t, log, &names[item], &mut notes)?;
        if g.tags {
            tags = TagMapping::TagTable(g.table);
        } else {
            categories = CategoryMapping::ItemTable(g.table);
        }
    }
    let name = log
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("mine")
        .to_owned();
    let format = if sample.delimiter == "\t" {
        InputFormat::Tsv
    } else {
        InputFormat::Csv
    };
    let delimiter = match (format, sample.delimiter.as_str()) {
        (InputFormat::Tsv, _) | (_, ",") => None,
        (_, d) => Some(d.to_owned()),
    };
    let mapping = DatasetMapping {
        name,
        format,
        has_header,
        delimiter,
        columns: (!has_header).then(|| names.clone()),
        log_file: None,
        user: col(user),
        item: col(item),
        timestamp: col(time),
        timestamp_unit,
        behavior,
        categories,
        tags,
    };
    mapping.validate()?;
    Ok(Guess { mapping, notes })
}

/// Guesses the mapping of an item table joined on the log's item column
/// `log_item` (its name in the log).
fn guess_table(
    path: &Path,
    log: &Path,
    log_item: &str,
    notes: &mut Vec<String>,
) -> Result<TableGuess> {
    let sample = sniff(path, false)?;
    let bytes = std::fs::read(path).map_err(|source| LogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let encoding = if std::str::from_utf8(&bytes).is_ok() {
        Encoding::Utf8
    } else {
        Encoding::Latin1
    };
    let width = sample.rows[0].len();
    let first = &sample.rows[0];
    let body = &sample.rows[1..];
    let has_header = !body.is_empty()
        && (0..width).any(|j| {
            let c = column_stats(body, j);
            first.get(j).is_some_and(|v| as_f64(v).is_none()) && c.mostly(c.nums)
        });
    let rows = if has_header { body } else { &sample.rows[..] };
    let names: Vec<String> = if has_header {
        first.iter().map(|f| text(f)).collect()
    } else {
        (0..width).map(|j| j.to_string()).collect()
    };
    let stats: Vec<Col> = (0..width).map(|j| column_stats(rows, j)).collect();
    let item = (0..width)
        .find(|&j| has_header && (names[j] == log_item || ITEM_NAMES.contains(&norm(&names[j]).as_str())))
        .or_else(|| (0..width).find(|&j| stats[j].mostly(stats[j].ints)))
        .ok_or_else(|| {
            LogError::Mapping(format!(
                "no column of item table {} holds item ids; write its mapping by hand (docs/mapping.md)",
                path.display()
            ))
        })?;
    let value = (0..width)
        .find(|&j| j != item && has_header && VALUE_NAMES.contains(&norm(&names[j]).as_str()))
        .or_else(|| (0..width).rev().find(|&j| j != item && !stats[j].mostly(stats[j].nums)))
        .ok_or_else(|| {
            LogError::Mapping(format!(
                "no column of item table {} holds text values; write its mapping by hand (docs/mapping.md)",
                path.display()
            ))
        })?;
    let values: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get(value))
        .map(|v| encoding.decode(v).0.trim().to_owned())
        .collect();
    // A space separates values only in RecBole's `token_seq` columns:
    // elsewhere it is part of a value ("Highly quotable").
    let token_seq = names[value].ends_with(":token_seq");
    let separator = ["|", ",", ";", " "]
        .into_iter()
        .filter(|s| **s != sample.delimiter && (*s != " " || token_seq))
        .map(|s| (s, values.iter().filter(|v| v.contains(s)).count()))
        .filter(|&(_, n)| n * 5 >= values.len().max(1))
        .max_by_key(|&(_, n)| n)
        .map(|(s, _)| s.to_owned());
    let vname = norm(&names[value]);
    let tags = vname.starts_with("tag") || vname == "keywords";
    let skip_values: Vec<String> = values
        .iter()
        .flat_map(|v| match &separator {
            Some(s) => v.split(s.as_str()).map(str::trim).collect::<Vec<_>>(),
            None => vec![v.as_str()],
        })
        .filter(|v| v.starts_with('(') && v.ends_with(')'))
        .map(str::to_owned)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let same_dir = path.parent() == log.parent() || path.parent() == Some(Path::new(""));
    let table_path = if same_dir {
        path.file_name().and_then(|f| f.to_str()).map(str::to_owned)
    } else {
        None
    }
    .unwrap_or_else(|| path.display().to_string());
    let delimiter = (sample.delimiter != ",").then(|| sample.delimiter.clone());
    notes.push(format!(
        "item table {table_path}: delimiter {:?}, {}item column {:?}, {} column {:?}, separator {:?}, encoding {}",
        sample.delimiter,
        if has_header { "header, " } else { "no header, " },
        names[item],
        if tags { "tag" } else { "category" },
        names[value],
        separator.as_deref().unwrap_or("(none)"),
        if encoding == Encoding::Latin1 {
            "latin1 (the file is not valid UTF-8)"
        } else {
            "utf8"
        }
    ));
    let col = |j: usize| {
        if has_header {
            Column::Name(names[j].clone())
        } else {
            Column::Index(j)
        }
    };
    Ok(TableGuess {
        table: ItemTableMapping {
            path: table_path,
            has_header,
            delimiter,
            item_column: col(item),
            value_column: col(value),
            separator,
            skip_values,
            lowercase: tags,
            encoding,
        },
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn guesses_a_headerless_taobao_like_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = file(
            dir.path(),
            "ub.csv",
            "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,cart,1511561733\n2,2576651,149192,pv,1511572885\n",
        );
        let g = guess_mapping(&log, None).unwrap();
        let m = &g.mapping;
        assert!(!m.has_header);
        assert_eq!(m.delimiter, None);
        assert_eq!(
            m.columns.as_deref().unwrap(),
            [
                "user_id",
                "item_id",
                "category_id",
                "behavior_type",
                "timestamp"
            ]
        );
        assert_eq!(m.behavior_type_names(), ["pv", "cart"]);
        assert_eq!(m.categories, CategoryMapping::Column("category_id".into()));
        assert_eq!(m.timestamp_unit, TimestampUnit::Seconds);
        assert!(g
            .notes
            .iter()
            .any(|n| n.contains("rows with other values are rejected")));
        let c = check_source(m, &log, 1000, 3).unwrap();
        assert_eq!((c.rows_read, c.parsed), (3, 3));
    }

    #[test]
    fn guesses_units_constant_behavior_and_tag_tables() {
        let dir = tempfile::tempdir().unwrap();
        let log = file(
            dir.path(),
            "clicks.txt",
            "uid;product;ts_ms\n5;10;1511544070999\n6;11;1511544071000\n",
        );
        let tags = file(
            dir.path(),
            "tags.csv",
            "userId,movieId,tag\n1,10,Highly quotable\n2,11,dark comedy\n",
        );
        let g = guess_mapping(&log, Some(&tags)).unwrap();
        let m = &g.mapping;
        assert!(m.has_header);
        assert_eq!(m.delimiter.as_deref(), Some(";"));
        assert_eq!(
            (m.user.clone(), m.item.clone()),
            ("uid".into(), "product".into())
        );
        assert_eq!(m.timestamp, Column::from("ts_ms"));
        assert_eq!(m.timestamp_unit, TimestampUnit::Millis);
        assert_eq!(m.behavior, BehaviorMapping::Constant("interaction".into()));
        let TagMapping::TagTable(t) = &m.tags else {
            panic!("{m:?}")
        };
        assert_eq!(t.value_column, Column::from("tag"));
        assert_eq!(t.separator, None, "a space is part of a tag");
        assert!(t.lowercase);
        let c = check_source(m, &log, 1000, 3).unwrap();
        assert_eq!((c.parsed, c.rows_with_tags), (2, 2));
        assert_eq!(c.timestamps, Some((1_511_544_070, 1_511_544_071)));

        let iso = file(
            dir.path(),
            "e.tsv",
            "7\t1\t2017-11-25T01:21:10Z\n8\t2\t2017-11-26T00:00:00Z\n",
        );
        let m = guess_mapping(&iso, None).unwrap().mapping;
        assert_eq!(m.format, InputFormat::Tsv);
        assert_eq!(m.timestamp_unit, TimestampUnit::Rfc3339);
        assert_eq!(check_source(&m, &iso, 10, 1).unwrap().parsed, 2);
    }

    #[test]
    fn guessing_fails_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let empty = file(dir.path(), "e.csv", "");
        let e = guess_mapping(&empty, None).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let words = file(dir.path(), "w.csv", "a b\nc d\n");
        let e = guess_mapping(&words, None).unwrap_err().to_string();
        assert!(e.contains("docs/mapping.md"), "{e}");
        let pq = file(dir.path(), "x.parquet", "PAR1");
        assert!(guess_mapping(&pq, None).is_err());
    }

    #[test]
    fn check_warns_about_a_table_no_row_joins_and_unlikely_units() {
        let dir = tempfile::tempdir().unwrap();
        let log = file(
            dir.path(),
            "r.csv",
            "user_id,item_id,rating,timestamp\n1,1,4,964982703\n",
        );
        file(
            dir.path(),
            "movies.csv",
            "item_id,title,genres\n99,X,Comedy\n",
        );
        let mut m = DatasetMapping::preset("movielens").unwrap();
        m.tags = TagMapping::None;
        m.timestamp_unit = TimestampUnit::Millis;
        let c = check_source(&m, &log, 1000, 3).unwrap();
        assert_eq!(c.parsed, 1);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("no item of the first 1 rows")),
            "{:?}",
            c.warnings
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("seconds rather than milliseconds")),
            "{:?}",
            c.warnings
        );
    }
}
