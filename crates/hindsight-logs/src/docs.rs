//! Tests that keep `docs/mapping.md` and `docs/mapping.schema.json` true:
//! every JSON block of the page is a valid mapping that reads the sample
//! files written after it without a rejected row, the preset blocks equal
//! the presets, and the committed schema equals the generated one
//! (`HINDSIGHT_WRITE_SCHEMA=1 cargo test -p hindsight-logs schema` rewrites
//! it).

use std::path::Path;

use crate::*;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mapping.md");
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/mapping.schema.json"
);

/// A mapping block of the page and the sample files after it.
struct Example {
    json: String,
    files: Vec<(String, String)>,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let kind = match line.trim_end() {
            "```json" => "json",
            "```text" => "text",
            _ => continue,
        };
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_end() == "```" {
                break;
            }
            body.push(l);
        }
        if kind == "json" {
            out.push(Example {
                json: body.join("\n"),
                files: Vec::new(),
            });
        } else if let Some(name) = body.first().and_then(|l| l.strip_prefix("# file: ")) {
            let ex = out.last_mut().expect("a sample file follows a mapping");
            let mut content = body[1..].join("\n");
            content.push('\n');
            ex.files.push((name.to_owned(), content));
        }
    }
    out
}

#[test]
fn every_mapping_example_of_the_doc_reads_its_sample() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let examples = examples(&doc);
    assert!(examples.len() >= 5, "{} examples", examples.len());
    let mut names = Vec::new();
    for ex in &examples {
        let m = DatasetMapping::from_json(&ex.json)
            .unwrap_or_else(|e| panic!("{e}\nin the block:\n{}", ex.json));
        names.push(m.name.clone());
        if PRESETS.contains(&m.name.as_str()) {
            assert_eq!(m, DatasetMapping::preset(&m.name).unwrap(), "{}", m.name);
        }
        assert!(!ex.files.is_empty(), "{}: no sample file", m.name);
        let dir = tempfile::tempdir().unwrap();
        let latin1 = match &m.categories {
            CategoryMapping::ItemTable(t) if t.encoding == Encoding::Latin1 => Some(t.path.clone()),
            _ => None,
        };
        for (name, content) in &ex.files {
            let bytes: Vec<u8> = if latin1.as_deref() == Some(name.as_str()) {
                content
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).expect("a latin-1 character"))
                    .collect()
            } else {
                content.clone().into_bytes()
            };
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let (log_name, log_text) = match &m.log_file {
            Some(f) => ex.files.iter().find(|(n, _)| n == f).expect("log sample"),
            None => &ex.files[0],
        };
        let input = if m.log_file.is_some() {
            dir.path().to_path_buf()
        } else {
            dir.path().join(log_name)
        };
        let mut vocabs = Vocabularies::default();
        let mut src = open_source(&m, &input, &mut vocabs).unwrap();
        assert!(
            src.warnings().is_empty(),
            "{}: {:?}",
            m.name,
            src.warnings()
        );
        let mut ok = Vec::new();
        while let Some(row) = src.next_row(&mut vocabs).unwrap() {
            match row.checked() {
                Row::Ok(b) => ok.push(b),
                Row::Bad(e) => panic!("{}: line {}: {}", m.name, e.line, e.message),
            }
        }
        let rows = log_text.lines().count() - usize::from(m.has_header);
        assert_eq!(ok.len(), rows, "{}", m.name);
        if matches!(m.categories, CategoryMapping::ItemTable(_)) {
            assert!(
                ok.iter().all(|b| !b.features.categories.is_empty()),
                "{}: a row without categories",
                m.name
            );
        }
        let types = m.behavior_type_names().len();
        assert!(ok.iter().all(|b| usize::from(b.behavior_type) < types));
    }
    for needed in ["taobao", "movielens", "ml-100k-recbole", "ml-1m"] {
        assert!(names.iter().any(|n| n == needed), "no {needed} example");
    }
}

#[test]
fn doc_examples_decode_what_they_promise() {
    // The ISO example: the second row's +08:00 offset is applied.
    let doc = std::fs::read_to_string(DOC).unwrap();
    let ex = examples(&doc);
    let iso = ex
        .iter()
        .find(|e| e.json.contains("\"rfc3339\""))
        .expect("an rfc3339 example");
    let m = DatasetMapping::from_json(&iso.json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (n, c) in &iso.files {
        std::fs::write(dir.path().join(n), c).unwrap();
    }
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&m, dir.path(), &mut vocabs).unwrap();
    let mut ts = Vec::new();
    while let Some(Row::Ok(b)) = src.next_row(&mut vocabs).unwrap() {
        ts.push(b.timestamp);
    }
    assert_eq!(ts, [1_511_572_870, 1_511_573_400, 1_511_654_400]);
}

#[test]
fn committed_schema_equals_the_generated_one() {
    let generated = mapping_schema();
    if std::env::var_os("HINDSIGHT_WRITE_SCHEMA").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(SCHEMA, text).unwrap();
    }
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(SCHEMA)).expect("docs/mapping.schema.json"),
    )
    .unwrap();
    assert_eq!(
        committed, generated,
        "docs/mapping.schema.json is stale: run HINDSIGHT_WRITE_SCHEMA=1 cargo test -p hindsight-logs schema (or hindsight mapping schema > docs/mapping.schema.json)"
    );
    // The schema knows every top-level field of the mapping.
    let props = generated["properties"].as_object().unwrap();
    for f in [
        "name",
        "delimiter",
        "timestamp_unit",
        "behavior",
        "categories",
        "tags",
    ] {
        assert!(props.contains_key(f), "{f}");
    }
}
