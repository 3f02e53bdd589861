//! What an index knows about itself, in two parts:
//!
//! * the **manifest** `hindsight.json`, written once when the index is
//!   created: format name, schema version, the dataset mapping it was built
//!   with. Opening an index of another schema version is refused.
//! * the **state**, stored as the payload of every tantivy commit (inside
//!   tantivy's `meta.json`): counts, vocabularies, the ingest log. Because
//!   it is written by the same atomic rename as the segment list, a crash
//!   can never leave documents and state out of step.

use std::path::Path;

use hindsight_logs::Vocabularies;
use serde::{Deserialize, Serialize};

use crate::schema::SCHEMA_VERSION;
use crate::{IndexError, Result};

/// File name of the manifest inside an index folder.
pub const MANIFEST_FILE: &str = "hindsight.json";
/// The `format` value of a manifest.
pub const FORMAT_NAME: &str = "hindsight-behavior-index";

/// The static description of an index (`hindsight.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Layout version; see [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Name of the dataset mapping (e.g. `taobao`).
    pub mapping_name: String,
    /// The full dataset mapping, as JSON.
    pub mapping: serde_json::Value,
    /// Unix seconds at creation.
    pub created_at: i64,
}

impl Manifest {
    /// A manifest for a new index.
    pub fn new(mapping_name: &str, mapping: serde_json::Value) -> Self {
        Manifest {
            format: FORMAT_NAME.to_owned(),
            schema_version: SCHEMA_VERSION,
            mapping_name: mapping_name.to_owned(),
            mapping,
            created_at: hindsight_core::host::now_unix(),
        }
    }

    /// Reads and checks the manifest of the index at `dir`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IndexError::NotAnIndex(dir.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            IndexError::Corrupt(format!("{} is not valid JSON: {e}", path.display()))
        })?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(IndexError::NotAnIndex(dir.to_owned()));
        }
        let found = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != SCHEMA_VERSION {
            return Err(IndexError::SchemaVersion {
                path: dir.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(serde_json::from_value(value)?)
    }

    /// Writes the manifest atomically (temporary file, fsync, rename).
    pub fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(MANIFEST_FILE))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The fields in which two mapping JSON values differ, one line each:
/// `"delimiter": "," in the index, "::" given` (nested fields as
/// `"categories.item_table.encoding"`; a field absent on one side shows as
/// `(absent)`). Empty when they are equal.
pub fn mapping_differences(stored: &serde_json::Value, given: &serde_json::Value) -> Vec<String> {
    fn short(v: Option<&serde_json::Value>) -> String {
        let Some(v) = v else {
            return "(absent)".to_owned();
        };
        let t = v.to_string();
        if t.chars().count() > 60 {
            format!("{}...", t.chars().take(60).collect::<String>())
        } else {
            t
        }
    }
    fn walk(
        path: &str,
        a: Option<&serde_json::Value>,
        b: Option<&serde_json::Value>,
        out: &mut Vec<String>,
    ) {
        use serde_json::Value::Object;
        if a == b {
            return;
        }
        if let (Some(Object(x)), Some(Object(y))) = (a, b) {
            // Objects with the same single key are the same enum variant:
            // look inside; otherwise compare field by field.
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            let same_variant = x.len() == 1 && y.len() == 1 && x.keys().eq(y.keys());
            if same_variant || (x.len() > 1 || y.len() > 1) {
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), out);
                }
                return;
            }
        }
        out.push(format!(
            "\"{path}\": {} in the index, {} given",
            short(a),
            short(b)
        ));
    }
    let mut out = Vec::new();
    walk("", Some(stored), Some(given), &mut out);
    out
}

/// One ingest run, as recorded in the index state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestRecord {
    /// The input path as given.
    pub source: String,
    /// Unix seconds at start.
    pub started_at: i64,
    /// Rows read from the input so far.
    pub rows_read: u64,
    /// Behaviors added to the index.
    pub behaviors_indexed: u64,
    /// Malformed rows skipped.
    pub rejected_rows: u64,
    /// Rows skipped because the index already held them.
    pub duplicates_skipped: u64,
    /// False while the run is in progress (or if it was interrupted).
    pub complete: bool,
}

/// How many ingest records the state keeps.
pub const MAX_INGEST_RECORDS: usize = 64;

/// The dynamic state of an index, committed atomically with its documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    /// Behaviors in the index.
    pub behaviors: u64,
    /// Feature keys over all behaviors (for BM25's average document length).
    pub feature_keys: u64,
    /// The fewest feature keys any behavior has (BM25's shortest document,
    /// which bounds scores for early termination); `None` when empty.
    #[serde(default)]
    pub min_feature_keys: Option<u64>,
    /// Whether, for every user, timestamps never decrease with `seq`
    /// (true unless a late behavior was appended). Retrieval as of a
    /// timestamp uses a binary search when true and a scan when false.
    pub ts_monotonic: bool,
    /// Vocabularies of string-valued features.
    pub vocabs: Vocabularies,
    /// The most recent ingest runs, oldest first.
    pub ingests: Vec<IngestRecord>,
}

impl IndexState {
    /// The state of an empty index.
    pub fn empty() -> Self {
        IndexState {
            ts_monotonic: true,
            ..Default::default()
        }
    }

    /// Parses a commit payload (`None` for an index never committed to).
    pub fn from_payload(payload: Option<&str>) -> Result<IndexState> {
        match payload {
            None => Ok(IndexState::empty()),
            Some(p) => serde_json::from_str(p).map_err(|e| {
                IndexError::Corrupt(format!("commit payload is not a hindsight state: {e}"))
            }),
        }
    }

    /// The fewest feature keys of any behavior (when unknown, those of a
    /// behavior without categories or tags: its item and type keys).
    pub fn min_keys(&self) -> f32 {
        self.min_feature_keys
            .unwrap_or(u64::from(crate::schema::key_count(0, 0))) as f32
    }

    /// Average number of feature keys per behavior (1 for an empty index).
    pub fn avg_keys(&self) -> f32 {
        if self.behaviors == 0 {
            1.0
        } else {
            self.feature_keys as f32 / self.behaviors as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_logs::{CategoryMapping, DatasetMapping};

    #[test]
    fn differences_name_each_field() {
        let a = DatasetMapping::preset("movielens").unwrap();
        let mut b = a.clone();
        b.delimiter = Some("::".into());
        b.timestamp_unit = hindsight_logs::TimestampUnit::Millis;
        if let CategoryMapping::ItemTable(t) = &mut b.categories {
            t.separator = Some(",".into());
        }
        let d = mapping_differences(
            &serde_json::to_value(&a).unwrap(),
            &serde_json::to_value(&b).unwrap(),
        );
        assert_eq!(
            d,
            [
                "\"categories.item_table.separator\": \"|\" in the index, \",\" given",
                "\"delimiter\": (absent) in the index, \"::\" given",
                "\"timestamp_unit\": \"seconds\" in the index, \"millis\" given",
            ]
        );
        let v = serde_json::to_value(&a).unwrap();
        assert!(mapping_differences(&v, &v).is_empty());
        let t = serde_json::to_value(DatasetMapping::preset("taobao").unwrap()).unwrap();
        let d = mapping_differences(&v, &t);
        assert!(
            d.iter().any(|l| l.starts_with("\"name\": \"movielens\"")),
            "{d:?}"
        );
        // Another enum variant is one difference, not one per inner field.
        assert!(
            d.iter()
                .any(|l| l.starts_with("\"behavior\": {\"rating_buckets\"")),
            "{d:?}"
        );
    }
}
