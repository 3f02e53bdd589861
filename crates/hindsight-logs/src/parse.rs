//! Row parsing shared by the CSV and Parquet sources: a mapping resolved
//! against a file's columns ([`RowSpec`]) turns one row's field values into
//! a [`Row`], never panicking: every malformed value becomes a
//! [`Row::Bad`] with a precise message.

use std::collections::HashMap;
use std::path::Path;

use hindsight_core::ItemFeatures;

use crate::error::{LogError, Result};
use crate::mapping::{BehaviorMapping, CategoryMapping, Column, DatasetMapping, TimestampUnit};
use crate::{ParsedBehavior, RejectReason, Row, RowError};

/// Item id -> sorted, deduplicated feature ids (a joined item table).
pub(crate) type ItemTable = HashMap<u64, Vec<u64>>;

/// One field value as read from a file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// Raw text (CSV fields, Parquet BYTE_ARRAY).
    Bytes(&'a [u8]),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A typed timestamp already converted to Unix seconds.
    Seconds(i64),
    /// A null (Parquet).
    Null,
    /// A value of a type this reader does not take (its type name).
    Other(&'static str),
}

/// A mapped column resolved to a position, with the name used in messages.
#[derive(Debug, Clone)]
pub(crate) struct ColSpec {
    pub index: usize,
    pub name: String,
}

/// Resolves `col` against the file's column names (`None` when the file
/// has no header and the mapping lists no `columns`).
pub(crate) fn resolve_column(
    col: &Column,
    role: &str,
    names: Option<&[String]>,
    path: &Path,
) -> Result<ColSpec> {
    let listing = |names: &[String]| {
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names
                .iter()
                .map(|n| short(n))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match (col, names) {
        (Column::Name(n), Some(names)) => match names.iter().position(|c| c == n) {
            Some(index) => Ok(ColSpec {
                index,
                name: n.clone(),
            }),
            None => Err(LogError::Mapping(format!(
                "the {role} column \"{n}\" is not in {}; the file has columns: {}; fix the mapping",
                path.display(),
                listing(names)
            ))),
        },
        (Column::Name(n), None) => Err(LogError::Mapping(format!(
            "the {role} column \"{n}\" is named but {} has no header and the mapping lists no \"columns\"; refer to columns by 0-based index or list their names in \"columns\"",
            path.display()
        ))),
        (Column::Index(i), Some(names)) => match names.get(*i) {
            Some(n) => Ok(ColSpec {
                index: *i,
                name: n.clone(),
            }),
            None => Err(LogError::Mapping(format!(
                "the {role} column index {i} is out of range: {} has {} columns: {}; fix the mapping",
                path.display(),
                names.len(),
                listing(names)
            ))),
        },
        (Column::Index(i), None) => Ok(ColSpec {
            index: *i,
            name: format!("{role} (column {i})"),
        }),
    }
}

enum BehaviorKind {
    /// Every row has this type id.
    Constant(u8),
    /// Allowed values and their vocabulary ids.
    Categorical { values: Vec<Vec<u8>>, ids: Vec<u8> },
    /// Exclusive upper bounds (`None` last) and their vocabulary ids.
    Buckets {
        bounds: Vec<Option<f64>>,
        ids: Vec<u8>,
    },
}

/// A mapping resolved against one file: where each field is and how it
/// becomes part of a behavior.
pub(crate) struct RowSpec {
    user: ColSpec,
    item: ColSpec,
    timestamp: ColSpec,
    behavior_col: Option<ColSpec>,
    category: Option<ColSpec>,
    unit: TimestampUnit,
    behavior: BehaviorKind,
    categories: Option<ItemTable>,
    tags: Option<ItemTable>,
}

impl RowSpec {
    /// Resolves the mapping's columns; `type_ids` are the vocabulary ids of
    /// [`DatasetMapping::behavior_type_names`], in order.
    pub fn new(
        mapping: &DatasetMapping,
        names: Option<&[String]>,
        path: &Path,
        type_ids: Vec<u8>,
    ) -> Result<RowSpec> {
        let user = resolve_column(&mapping.user, "user", names, path)?;
        let item = resolve_column(&mapping.item, "item", names, path)?;
        let timestamp = resolve_column(&mapping.timestamp, "timestamp", names, path)?;
        let behavior_col = match mapping.behavior.column() {
            Some(c) => Some(resolve_column(c, "behavior type", names, path)?),
            None => None,
        };
        let category = match &mapping.categories {
            CategoryMapping::Column(c) => Some(resolve_column(c, "category", names, path)?),
            _ => None,
        };
        let behavior = match &mapping.behavior {
            BehaviorMapping::Constant(_) => BehaviorKind::Constant(type_ids[0]),
            BehaviorMapping::Categorical { values, .. } => BehaviorKind::Categorical {
                values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
                ids: type_ids,
            },
            BehaviorMapping::RatingBuckets { buckets, .. } => BehaviorKind::Buckets {
                bounds: buckets.iter().map(|b| b.below).collect(),
                ids: type_ids,
            },
        };
        Ok(RowSpec {
            user,
            item,
            timestamp,
            behavior_col,
            category,
            unit: mapping.timestamp_unit,
            behavior,
            categories: None,
            tags: None,
        })
    }

    /// Sets the joined tables.
    pub fn with_tables(mut self, categories: Option<ItemTable>, tags: Option<ItemTable>) -> Self {
        self.categories = categories;
        self.tags = tags;
        self
    }

    /// The mapped columns' positions (for projections and width checks).
    pub fn columns_mut(&mut self) -> Vec<&mut ColSpec> {
        let mut v = vec![&mut self.user, &mut self.item, &mut self.timestamp];
        v.extend(self.behavior_col.as_mut());
        v.extend(self.category.as_mut());
        v
    }

    /// Which column of the file each role reads (for `mapping check`).
    pub fn mapped(&self) -> Vec<crate::MappedColumn> {
        [
            ("user", Some(&self.user)),
            ("item", Some(&self.item)),
            ("timestamp", Some(&self.timestamp)),
            ("behavior type", self.behavior_col.as_ref()),
            ("category", self.category.as_ref()),
        ]
        .into_iter()
        .filter_map(|(role, c)| {
            c.map(|c| crate::MappedColumn {
                role: role.to_owned(),
                column: c.name.clone(),
                index: c.index,
            })
        })
        .collect()
    }

    /// The smallest number of fields a row must have.
    pub fn min_width(&self) -> usize {
        [&self.user, &self.item, &self.timestamp]
            .into_iter()
            .chain(self.behavior_col.as_ref())
            .chain(self.category.as_ref())
            .map(|c| c.index + 1)
            .max()
            .unwrap_or(0)
    }

    /// Builds the row at `line` from its fields; `field(i)` must accept
    /// every index below [`min_width`](Self::min_width).
    #[inline]
    pub fn parse<'a>(&self, line: u64, field: impl Fn(usize) -> Value<'a>) -> Row {
        match self.parse_inner(line, field) {
            Ok(b) => Row::Ok(b),
            Err((reason, message)) => Row::Bad(RowError {
                line,
                reason,
                message,
            }),
        }
    }

    #[inline]
    fn parse_inner<'a>(
        &self,
        line: u64,
        field: impl Fn(usize) -> Value<'a>,
    ) -> Result<ParsedBehavior, (RejectReason, String)> {
        let user_id = parse_id(field(self.user.index), &self.user.name)
            .map_err(|m| (RejectReason::User, m))?;
        let item_id = parse_id(field(self.item.index), &self.item.name)
            .map_err(|m| (RejectReason::Item, m))?;
        let timestamp = parse_timestamp(field(self.timestamp.index), &self.timestamp, self.unit)
            .map_err(|m| (RejectReason::Timestamp, m))?;
        let behavior_type = self
            .behavior_type(&field)
            .map_err(|m| (RejectReason::BehaviorType, m))?;
        let mut features = ItemFeatures::default();
        if let Some(c) = &self.category {
            features
                .categories
                .push(parse_id(field(c.index), &c.name).map_err(|m| (RejectReason::Category, m))?);
        } else if let Some(t) = &self.categories {
            if let Some(cats) = t.get(&item_id) {
                features.categories.clone_from(cats);
            }
        }
        if let Some(t) = &self.tags {
            if let Some(tags) = t.get(&item_id) {
                features.tags.clone_from(tags);
            }
        }
        Ok(ParsedBehavior {
            line,
            user_id,
            item_id,
            behavior_type,
            timestamp,
            features,
        })
    }

    #[inline]
    fn behavior_type<'a>(&self, field: impl Fn(usize) -> Value<'a>) -> Result<u8, String> {
        let (name, v) = match (&self.behavior, &self.behavior_col) {
            (BehaviorKind::Constant(id), _) => return Ok(*id),
            (_, Some(c)) => (&c.name, field(c.index)),
            (_, None) => return Err("the mapping has no behavior column".to_owned()),
        };
        match &self.behavior {
            BehaviorKind::Constant(id) => Ok(*id),
            BehaviorKind::Categorical { values, ids } => {
                let owned;
                let text: &[u8] = match v {
                    Value::Bytes(b) => trim(b),
                    Value::Int(i) => {
                        owned = i.to_string();
                        owned.as_bytes()
                    }
                    Value::UInt(u) => {
                        owned = u.to_string();
                        owned.as_bytes()
                    }
                    other => return Err(format!("{name} {} is not a behavior type", show(other))),
                };
                match values.iter().position(|x| x.as_slice() == text) {
                    Some(i) => Ok(ids[i]),
                    None => Err(format!(
                        "{name} {} is not a known behavior type; expected one of {}",
                        show(v),
                        values
                            .iter()
                            .map(|x| String::from_utf8_lossy(x))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                }
            }
            BehaviorKind::Buckets { bounds, ids } => {
                let x = match v {
                    Value::Bytes(b) => std::str::from_utf8(trim(b))
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok()),
                    Value::Int(i) => Some(i as f64),
                    Value::UInt(u) => Some(u as f64),
                    Value::Float(f) => Some(f),
                    _ => None,
                };
                let x = match x {
                    Some(x) if x.is_finite() => x,
                    _ => return Err(format!("{name} {} is not a number", show(v))),
                };
                let i = bounds
                    .iter()
                    .position(|b| b.is_none_or(|b| x < b))
                    .unwrap_or(bounds.len() - 1);
                Ok(ids[i])
            }
        }
    }
}

/// Trims ASCII whitespace.
#[inline]
fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Parses ASCII decimal digits; `None` on anything else or on overflow.
#[inline]
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

#[inline]
fn parse_i64(b: &[u8]) -> Option<i64> {
    match b.split_first() {
        Some((b'-', rest)) => {
            let v = parse_u64(rest)?;
            if v <= i64::MAX as u64 + 1 {
                Some((v as i128).wrapping_neg() as i64)
            } else {
                None
            }
        }
        Some((b'+', rest)) => i64::try_from(parse_u64(rest)?).ok(),
        _ => i64::try_from(parse_u64(b)?).ok(),
    }
}

/// A non-negative integer id.
#[inline]
pub(crate) fn parse_id(v: Value<'_>, name: &str) -> Result<u64, String> {
    match v {
        Value::Bytes(b) => {
            let t = trim(b);
            if let Some(id) = parse_u64(t) {
                return Ok(id);
            }
            Err(if t.is_empty() {
                format!("{name} is empty; expected a non-negative integer")
            } else if t.first() == Some(&b'-') && parse_u64(&t[1..]).is_some() {
                format!(
                    "{name} {} is negative; ids must be non-negative integers",
                    show(v)
                )
            } else if t.iter().all(u8::is_ascii_digit) {
                format!("{name} {} does not fit in 64 bits", show(v))
            } else {
                format!("{name} {} is not a non-negative integer", show(v))
            })
        }
        Value::Int(i) if i >= 0 => Ok(i as u64),
        Value::Int(i) => Err(format!(
            "{name} {i} is negative; ids must be non-negative integers"
        )),
        Value::UInt(u) => Ok(u),
        other => Err(format!(
            "{name} {} is not a non-negative integer",
            show(other)
        )),
    }
}

/// Parses decimal text (`881250949.0`, `1e9`) as a finite number.
#[inline]
fn parse_f64(b: &[u8]) -> Option<f64> {
    let x: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// Floors `x / div` to an integer when it is in the range of an i64.
fn floor_div(x: f64, div: f64) -> Option<i64> {
    let v = (x / div).floor();
    (v.is_finite() && v.abs() < 9.0e18).then_some(v as i64)
}

#[inline]
fn parse_timestamp(v: Value<'_>, col: &ColSpec, unit: TimestampUnit) -> Result<i64, String> {
    let secs = match (unit, v) {
        (_, Value::Seconds(s)) => Some(s),
        (TimestampUnit::Rfc3339, Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(crate::time::parse_rfc3339),
        (TimestampUnit::Rfc3339, _) => None,
        (TimestampUnit::Seconds | TimestampUnit::Millis, v) => {
            let div = if unit == TimestampUnit::Millis {
                1000
            } else {
                1
            };
            match v {
                Value::Bytes(b) => {
                    let t = trim(b);
                    match parse_i64(t) {
                        Some(i) => Some(i.div_euclid(div)),
                        None => parse_f64(t).and_then(|x| floor_div(x, div as f64)),
                    }
                }
                Value::Int(i) => Some(i.div_euclid(div)),
                Value::UInt(u) => i64::try_from(u).ok().map(|i| i.div_euclid(div)),
                Value::Float(x) if x.is_finite() => floor_div(x, div as f64),
                _ => None,
            }
        }
    };
    secs.ok_or_else(|| {
        format!(
            "{} {} is not a valid timestamp; expected {}",
            col.name,
            show(v),
            match unit {
                TimestampUnit::Seconds => "unix seconds (an integer or a decimal number)",
                TimestampUnit::Millis => "unix milliseconds (an integer or a decimal number)",
                TimestampUnit::Rfc3339 =>
                    "an RFC 3339 date-time such as 2017-11-25T01:21:10Z (or set \"timestamp_unit\")",
            }
        )
    })
}

/// A name for a message: at most 40 characters.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        out.push_str("...");
    }
    out
}

/// A value for a message: quoted text (lossy, at most 40 characters) or
/// the number.
pub(crate) fn show(v: Value<'_>) -> String {
    match v {
        Value::Bytes(b) => {
            format!("{:?}", short(&String::from_utf8_lossy(b)))
        }
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Seconds(s) => format!("{s} (seconds)"),
        Value::Null => "null".to_owned(),
        Value::Other(t) => format!("(a {t} value)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+5"), Some(5));
        assert_eq!(parse_i64(b"-"), None);
    }

    fn ts(text: &str, unit: TimestampUnit) -> Result<i64, String> {
        let col = ColSpec {
            index: 0,
            name: "ts".into(),
        };
        parse_timestamp(Value::Bytes(text.as_bytes()), &col, unit)
    }

    #[test]
    fn timestamps_in_every_unit() {
        use TimestampUnit::*;
        assert_eq!(ts("881250949", Seconds), Ok(881_250_949));
        assert_eq!(ts(" 881250949.0 ", Seconds), Ok(881_250_949));
        assert_eq!(ts("881250949.99", Seconds), Ok(881_250_949));
        assert_eq!(ts("-0.5", Seconds), Ok(-1));
        assert_eq!(ts("8.8125e8", Seconds), Ok(881_250_000));
        assert_eq!(ts("1511544070999", Millis), Ok(1_511_544_070));
        assert_eq!(ts("1511544070999.9", Millis), Ok(1_511_544_070));
        assert_eq!(ts("-1", Millis), Ok(-1));
        assert_eq!(ts("2017-11-25T01:21:10Z", Rfc3339), Ok(1_511_572_870));
        assert!(ts("1511572870", Rfc3339).unwrap_err().contains("RFC 3339"));
        assert!(ts("2017-11-25", Seconds)
            .unwrap_err()
            .contains("unix seconds"));
        for bad in ["", "NaN", "inf", "1e300", "12a"] {
            assert!(ts(bad, Seconds).is_err(), "{bad}");
        }
        let col = ColSpec {
            index: 0,
            name: "ts".into(),
        };
        assert_eq!(
            parse_timestamp(Value::Float(881_250_949.5), &col, Seconds),
            Ok(881_250_949)
        );
        assert_eq!(parse_timestamp(Value::Int(5_999), &col, Millis), Ok(5));
        assert_eq!(parse_timestamp(Value::Seconds(7), &col, Rfc3339), Ok(7));
        assert!(parse_timestamp(Value::Float(f64::NAN), &col, Seconds).is_err());
    }

    #[test]
    fn id_messages() {
        let e = parse_id(Value::Bytes(b"abc"), "user_id").unwrap_err();
        assert_eq!(e, "user_id \"abc\" is not a non-negative integer");
        let e = parse_id(Value::Bytes(b"-3"), "user_id").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = parse_id(Value::Bytes(b" "), "item_id").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = parse_id(Value::Bytes(b"99999999999999999999999"), "item_id").unwrap_err();
        assert!(e.contains("64 bits"), "{e}");
        assert_eq!(parse_id(Value::Bytes(b" 7 "), "x"), Ok(7));
        assert_eq!(parse_id(Value::Int(7), "x"), Ok(7));
        assert!(parse_id(Value::Int(-7), "x").is_err());
        assert!(parse_id(Value::Null, "x").is_err());
        let long = show(Value::Bytes(&[b'x'; 1000]));
        assert!(long.len() < 50, "{long}");
        let bin = show(Value::Bytes(&[0xff, 0xfe, 0]));
        assert!(bin.contains('\u{fffd}'), "{bin}");
    }
}
