//! Tests of `hindsight mapping init|check|schema` and of how `ingest`
//! meets logs that do not fit: rows beyond the index's limits, a mapping
//! none of whose rows parse (no folder left behind), a mapping mismatch,
//! suspicious joins. Every input is a small file written here.

use std::path::Path;
use std::process::Output;

mod common;
use common::{bin, taobao_csv};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run hindsight")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_row_beyond_the_limits_is_one_counted_reject() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    let mut text = String::new();
    for k in 1..=6001u64 {
        let user = if k == 3001 { 1u64 << 40 } else { k % 40 + 1 };
        text.push_str(&format!("{user},{k},{},pv,{}\n", k % 9, 1_511_544_070 + k));
    }
    std::fs::write(&csv, text).unwrap();
    let idx = dir.path().join("idx");
    let v = json(&run(&[
        "ingest",
        "--preset",
        "taobao",
        s(&csv),
        "--index",
        s(&idx),
        "--json",
    ]));
    assert_eq!(v["rows_read"], 6001);
    assert_eq!(v["behaviors_indexed"], 6000);
    assert_eq!(v["rejected_rows"], 1);
    assert_eq!(v["rejected_examples"][0]["line"], 3001);
    let msg = v["rejected_examples"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("user id 1099511627776 is above the largest user id an index holds"),
        "{msg}"
    );
    // Under --strict the same row stops the run, naming the line.
    let out = run(&[
        "ingest",
        "--preset",
        "taobao",
        s(&csv),
        "--index",
        s(&dir.path().join("strict")),
        "--strict",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 3001"), "{}", stderr(&out));
}

#[test]
fn a_log_whose_rows_never_parse_creates_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // A `::` log read with the comma of the taobao preset: every row is one field.
    let dat = dir.path().join("ratings.dat");
    let rows: String = (0..1500)
        .map(|k| format!("{}::{k}::4::978300760\n", k % 7))
        .collect();
    std::fs::write(&dat, rows).unwrap();
    let mapping = dir.path().join("m.json");
    let mut m = hindsight_logs::DatasetMapping::preset("taobao").unwrap();
    m.format = hindsight_logs::InputFormat::Csv;
    std::fs::write(&mapping, serde_json::to_string(&m).unwrap()).unwrap();
    let idx = dir.path().join("new/idx");
    let out = run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(&dat),
        "--index",
        s(&idx),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("none of the first 1000 rows"), "{err}");
    assert!(err.contains("1000 columns"), "{err}");
    assert!(err.contains("line 1: expected 5 columns, found 1"), "{err}");
    assert!(err.contains("\"delimiter\""), "{err}");
    assert!(!idx.exists() && !dir.path().join("new").exists());

    // A short log, all of whose rows are rejected, fails the same way.
    std::fs::write(&dat, "1::2::4::978300760\n").unwrap();
    let out = run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(&dat),
        "--index",
        s(&idx),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("none of the first 1 rows"),
        "{}",
        stderr(&out)
    );
    assert!(!idx.exists());

    // A missing log or table also leaves nothing.
    let out = run(&[
        "ingest",
        "--preset",
        "movielens",
        s(&dir.path().join("nowhere")),
        "--index",
        s(&idx),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!idx.exists());
}

#[test]
fn a_mapping_mismatch_lists_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    std::fs::write(&csv, "1,2,3,pv,1511544070\n").unwrap();
    let idx = dir.path().join("idx");
    json(&run(&[
        "ingest",
        "--preset",
        "taobao",
        s(&csv),
        "--index",
        s(&idx),
        "--json",
    ]));
    let mut m = hindsight_logs::DatasetMapping::preset("taobao").unwrap();
    m.timestamp_unit = hindsight_logs::TimestampUnit::Millis;
    let mapping = dir.path().join("m.json");
    std::fs::write(&mapping, serde_json::to_string(&m).unwrap()).unwrap();
    let out = run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(&csv),
        "--index",
        s(&idx),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("\"timestamp_unit\": \"seconds\" in the index, \"millis\" given"),
        "{err}"
    );
    assert!(!err.contains("not \"taobao\""), "{err}");
}

#[test]
fn init_check_ingest_a_recbole_pair() {
    let dir = tempfile::tempdir().unwrap();
    let inter = dir.path().join("ml-100k.inter");
    std::fs::write(
        &inter,
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
         196\t242\t3.0\t881250949.0\n186\t302\t3.0\t891717742.0\n22\t377\t1.0\t878887116.0\n\
         244\t51\t2.0\t880606923.0\n166\t346\t1.0\t886397596.0\n",
    )
    .unwrap();
    let item = dir.path().join("ml-100k.item");
    std::fs::write(
        &item,
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
         242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n\
         377\tHeavyweights\t1994\tChildren's Comedy\n51\tLegends of the Fall\t1994\tDrama Romance War Western\n\
         346\tJackie Brown\t1997\tCrime Drama\n",
    )
    .unwrap();
    let out = run(&[
        "mapping",
        "init",
        "--from",
        s(&inter),
        "--item-table",
        s(&item),
    ]);
    let m = json(&out);
    let notes = stderr(&out);
    assert!(notes.contains("guess: delimiter \"\\t\""), "{notes}");
    assert_eq!(m["format"], "tsv");
    assert_eq!(m["has_header"], true);
    assert_eq!(m["user"], "user_id:token");
    assert_eq!(m["item"], "item_id:token");
    assert_eq!(m["timestamp"], "timestamp:float");
    assert_eq!(m["timestamp_unit"], "seconds");
    assert_eq!(m["behavior"]["rating_buckets"]["column"], "rating:float");
    let t = &m["categories"]["item_table"];
    assert_eq!(t["path"], "ml-100k.item");
    assert_eq!(t["delimiter"], "\t");
    assert_eq!(t["item_column"], "item_id:token");
    assert_eq!(t["value_column"], "class:token_seq");
    assert_eq!(t["separator"], " ");
    let mapping = dir.path().join("m.json");
    std::fs::write(&mapping, stdout(&out)).unwrap();

    let c = json(&run(&[
        "mapping",
        "check",
        s(&mapping),
        s(&inter),
        "--json",
    ]));
    assert_eq!(
        (c["rows_read"].as_u64(), c["parsed"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(c["rows_with_categories"], 5);
    assert_eq!(c["timestamps"][0], 878_887_116);
    let text = stdout(&run(&["mapping", "check", s(&mapping), s(&inter)]));
    assert!(
        text.contains("user           <- user_id:token (column 0)"),
        "{text}"
    );
    assert!(
        text.contains("rows: 5 read, 5 parsed, 0 rejected"),
        "{text}"
    );

    let idx = dir.path().join("idx");
    let v = json(&run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(&inter),
        "--index",
        s(&idx),
        "--json",
    ]));
    assert_eq!(
        (v["behaviors_indexed"].as_u64(), v["rejected_rows"].as_u64()),
        (Some(5), Some(0))
    );
}

#[test]
fn init_check_ingest_a_movielens_1m_pair() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("ratings.dat");
    std::fs::write(
        &ratings,
        "1::1193::5::978300760\n1::661::3::978302109\n2::73::4::978298413\n3::1193::2::978297000\n",
    )
    .unwrap();
    let movies = dir.path().join("movies.dat");
    let mut table = b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n".to_vec();
    table.extend_from_slice(b"73::Mis\xe9rables, Les (1995)::Drama|Musical\n");
    std::fs::write(&movies, table).unwrap();
    let out = run(&[
        "mapping",
        "init",
        "--from",
        s(&ratings),
        "--item-table",
        s(&movies),
    ]);
    let m = json(&out);
    assert_eq!(m["delimiter"], "::");
    assert_eq!(m["has_header"], false);
    assert_eq!(
        m["columns"],
        serde_json::json!(["user_id", "item_id", "rating", "timestamp"])
    );
    assert_eq!(m["behavior"]["rating_buckets"]["column"], "rating");
    let t = &m["categories"]["item_table"];
    assert_eq!(
        (
            &t["delimiter"],
            &t["item_column"],
            &t["value_column"],
            &t["separator"],
            &t["encoding"]
        ),
        (
            &serde_json::json!("::"),
            &serde_json::json!(0),
            &serde_json::json!(2),
            &serde_json::json!("|"),
            &serde_json::json!("latin1")
        )
    );
    assert!(stderr(&out).contains("latin1"), "{}", stderr(&out));
    let mapping = dir.path().join("m.json");
    std::fs::write(&mapping, stdout(&out)).unwrap();
    let idx = dir.path().join("idx");
    let v = json(&run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(&ratings),
        "--index",
        s(&idx),
        "--json",
    ]));
    assert_eq!(
        (v["behaviors_indexed"].as_u64(), v["rejected_rows"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn check_reports_rejects_by_reason_and_fails_when_nothing_parses() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    std::fs::write(
        &csv,
        "1,2,3,pv,1511544070\n1,2,3,click,1511544071\nx,2,3,pv,1\n1,2,3,pv,-4\n1,2,3,buy,1511544072\n",
    )
    .unwrap();
    let c = json(&run(&["mapping", "check", "taobao", s(&csv), "--json"]));
    assert_eq!(
        (c["parsed"].as_u64(), c["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let reasons: Vec<(&str, u64)> = c["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), r["count"].as_u64().unwrap()))
        .collect();
    let mut sorted = reasons.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [("behavior_type", 1), ("invalid_timestamp", 1), ("user", 1)]
    );
    let lim = c["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "invalid_timestamp")
        .unwrap();
    assert_eq!(lim["examples"][0]["line"], 4);
    assert_eq!(c["behavior_types"][3], serde_json::json!(["buy", 1]));

    std::fs::write(&csv, "a;b;c\n1;2;3\n").unwrap();
    let out = run(&["mapping", "check", "taobao", s(&csv)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("2 rejected: columns"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("none of the first 2 rows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_category_table_with_titles_for_genres_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::from("user_id,item_id,rating,timestamp\n");
    let mut movies = String::from("item_id,title,genres\n");
    for i in 1..=40 {
        log.push_str(&format!("1,{i},4.0,{}\n", 964_982_703 + i));
        movies.push_str(&format!("{i},Movie number {i} (1995),Comedy|Drama\n"));
    }
    std::fs::write(dir.path().join("ratings.csv"), log).unwrap();
    std::fs::write(dir.path().join("movies.csv"), movies).unwrap();
    std::fs::write(
        dir.path().join("tags.csv"),
        "userId,movieId,tag,timestamp\n",
    )
    .unwrap();
    let mut m = hindsight_logs::DatasetMapping::preset("movielens").unwrap();
    if let hindsight_logs::CategoryMapping::ItemTable(t) = &mut m.categories {
        t.value_column = "title".into();
    }
    m.tags = hindsight_logs::TagMapping::None;
    let mapping = dir.path().join("m.json");
    std::fs::write(&mapping, serde_json::to_string(&m).unwrap()).unwrap();
    let out = run(&["mapping", "check", s(&mapping), s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("gives 40 distinct values to 40 items"),
        "{text}"
    );
    let out = run(&[
        "ingest",
        "--mapping",
        s(&mapping),
        s(dir.path()),
        "--index",
        s(&dir.path().join("idx")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: category table"),
        "{}",
        stderr(&out)
    );
    // With the genres column, no warning.
    if let hindsight_logs::CategoryMapping::ItemTable(t) = &mut m.categories {
        t.value_column = "genres".into();
    }
    std::fs::write(&mapping, serde_json::to_string(&m).unwrap()).unwrap();
    let out = run(&["mapping", "check", s(&mapping), s(dir.path())]);
    assert!(!stdout(&out).contains("warning"), "{}", stdout(&out));
}

#[test]
fn schema_command_prints_the_committed_schema_and_help_points_to_the_doc() {
    let out = run(&["mapping", "schema"]);
    let printed = json(&out);
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/mapping.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(printed, committed);
    let help = stdout(&run(&["ingest", "--help"]));
    assert!(help.contains("docs/mapping.md"), "{help}");
    assert!(help.contains("hindsight mapping init"), "{help}");
}

#[test]
fn check_on_the_real_taobao_log_reads_every_column() {
    let Some(csv) = taobao_csv() else { return };
    let c = json(&run(&["mapping", "check", "taobao", s(&csv), "--json"]));
    assert_eq!(
        (c["rows_read"].as_u64(), c["parsed"].as_u64()),
        (Some(1000), Some(1000))
    );
    let roles: Vec<&str> = c["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "item", "timestamp", "behavior type", "category"]
    );
    assert_eq!(c["rows_with_categories"], 1000);
    assert_eq!(c["warnings"], serde_json::json!([]));
}
