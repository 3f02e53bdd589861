//! Tests of the sources: the real taobao and movielens files (skipped with
//! a note when `../shared/data` is absent), bad rows, hostile inputs,
//! mapping checks against headers, TSV, and a Parquet round trip.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::*;

const TAOBAO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/taobao/UserBehavior.csv"
);
const MOVIELENS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/movielens-small"
);

fn present(path: &str) -> bool {
    let ok = Path::new(path).exists();
    if !ok {
        eprintln!("note: {path} is absent; skipping this test");
    }
    ok
}

/// All rows of a source.
fn read_all(source: &mut dyn BehaviorSource, vocabs: &mut Vocabularies) -> Vec<Row> {
    let mut rows = Vec::new();
    while let Some(row) = source.next_row(vocabs).unwrap() {
        rows.push(row);
    }
    rows
}

fn split(rows: Vec<Row>) -> (Vec<ParsedBehavior>, Vec<RowError>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        match r {
            Row::Ok(b) => ok.push(b),
            Row::Bad(e) => bad.push(e),
        }
    }
    (ok, bad)
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content)
        .unwrap();
    p
}

fn open_rows(mapping: &DatasetMapping, input: &Path) -> (Vec<ParsedBehavior>, Vec<RowError>) {
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(mapping, input, &mut vocabs).unwrap();
    split(read_all(src.as_mut(), &mut vocabs))
}

#[test]
fn taobao_real_file() {
    if !present(TAOBAO) {
        return;
    }
    let mapping = DatasetMapping::preset("taobao").unwrap();
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&mapping, Path::new(TAOBAO), &mut vocabs).unwrap();
    assert_eq!(vocabs.behavior_types.names(), ["pv", "cart", "fav", "buy"]);
    assert!(vocabs.categories.is_empty());
    let total = src.total_bytes();
    assert!(total > 0);
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert_eq!(src.bytes_read(), total);
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(3)]);
    assert_eq!(ok.len(), 84_474);
    let count = |rows: &[ParsedBehavior]| {
        let mut counts = [0usize; 4];
        for b in rows {
            counts[b.behavior_type as usize] += 1;
            assert_eq!(b.features.categories.len(), 1);
            assert!(b.features.tags.is_empty());
        }
        counts
    };
    // The data README's type counts (75,693 pv, 4,494 cart, 2,351 fav,
    // 1,749 buy) sum to 84,287, not 84,474: they are those of the first
    // 84,287 rows. The whole file has these:
    assert_eq!(count(&ok), [75_871, 4_497, 2_356, 1_750]);
    assert_eq!(count(&ok[..84_287]), [75_693, 4_494, 2_351, 1_749]);
    let users: std::collections::HashSet<u64> = ok.iter().map(|b| b.user_id).collect();
    assert_eq!(users.len(), 815);
    assert_eq!(
        ok[0],
        ParsedBehavior {
            line: 1,
            user_id: 1,
            item_id: 2_268_318,
            behavior_type: 0,
            timestamp: 1_511_544_070,
            features: hindsight_core::ItemFeatures::with_categories(vec![2_520_377]),
        }
    );
    assert_eq!(ok.last().unwrap().line, 84_474);
}

#[test]
fn taobao_folder_input_uses_log_file() {
    if !present(TAOBAO) {
        return;
    }
    let folder = Path::new(TAOBAO).parent().unwrap();
    let (ok, bad) = open_rows(&DatasetMapping::preset("taobao").unwrap(), folder);
    assert_eq!((ok.len(), bad.len()), (84_474, 0));
}

#[test]
fn movielens_real_folder() {
    if !present(MOVIELENS) {
        return;
    }
    let mapping = DatasetMapping::preset("movielens").unwrap();
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&mapping, Path::new(MOVIELENS), &mut vocabs).unwrap();
    assert_eq!(vocabs.behavior_types.names(), ["low", "mid", "high"]);
    let genres = vocabs.categories.len();
    assert!(
        (19..=20).contains(&genres),
        "{:?}",
        vocabs.categories.names()
    );
    assert!(vocabs.categories.get("(no genres listed)").is_none());
    assert!(vocabs.tags.len() > 1000, "{}", vocabs.tags.len());
    assert!(vocabs
        .tags
        .names()
        .iter()
        .all(|t| t == &t.to_lowercase() && t == t.trim() && !t.is_empty()));
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(3)]);
    assert_eq!(ok.len(), 100_836);
    // Vocabularies do not grow while streaming.
    assert_eq!(vocabs.categories.len(), genres);

    // ratings.csv line 2: user 1, movie 1 (Toy Story), rating 4.0.
    let first = &ok[0];
    assert_eq!((first.line, first.user_id, first.item_id), (2, 1, 1));
    assert_eq!(first.timestamp, 964_982_703);
    assert_eq!(
        vocabs.behavior_types.name(first.behavior_type.into()),
        Some("high")
    );
    let mut names: Vec<&str> = first
        .features
        .categories
        .iter()
        .map(|&c| vocabs.categories.name(c).unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    );
    // Toy Story is tagged "pixar" in tags.csv.
    let pixar = vocabs.tags.get("pixar").unwrap();
    assert!(first.features.tags.contains(&pixar));
    let mut f = first.features.clone();
    f.normalize();
    assert_eq!(f, first.features);

    let users: std::collections::HashSet<u64> = ok.iter().map(|b| b.user_id).collect();
    assert_eq!(users.len(), 610);
    let mut per_type = [0usize; 3];
    for b in &ok {
        per_type[b.behavior_type as usize] += 1;
    }
    assert!(per_type.iter().all(|&n| n > 10_000), "{per_type:?}");
}

fn mini_taobao() -> DatasetMapping {
    DatasetMapping::preset("taobao").unwrap()
}

#[test]
fn bad_rows_have_line_and_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = b"1,10,100,pv,1511544070
2,20,200,cart
abc,20,200,pv,1511544070
-4,20,200,pv,1511544070
5,20,200,pv,yesterday
6,20,200,click,1511544070
7,20,x,buy,1511544070
8,20,200,fav,1511544070,extra

9,\xff\xfe,200,pv,1511544070
10,30,300,buy,1511544071
"
    .to_vec();
    content.extend_from_slice(b"11,");
    content.extend(std::iter::repeat_n(b'9', 1 << 20));
    content.extend_from_slice(b",1,pv,1\n");
    let path = write(dir.path(), "log.csv", &content);
    let (ok, bad) = open_rows(&mini_taobao(), &path);
    assert_eq!(
        ok.iter().map(|b| (b.line, b.user_id)).collect::<Vec<_>>(),
        [(1, 1), (11, 10)]
    );
    let got: Vec<(u64, &str)> = bad.iter().map(|e| (e.line, e.message.as_str())).collect();
    let expect: &[(u64, &[&str])] = &[
        (2, &["expected 5 columns, found 4"]),
        (3, &["user_id", "\"abc\"", "not a non-negative integer"]),
        (4, &["user_id", "\"-4\"", "negative"]),
        (5, &["timestamp", "\"yesterday\"", "unix seconds"]),
        (6, &["behavior_type", "\"click\"", "pv, cart, fav, buy"]),
        (7, &["category_id", "\"x\""]),
        (8, &["expected 5 columns, found 6"]),
        (10, &["item_id", "not a non-negative integer"]),
        (12, &["item_id", "..."]),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((line, msg), (eline, parts)) in got.iter().zip(expect) {
        assert_eq!(line, eline, "{msg}");
        for p in *parts {
            assert!(msg.contains(p), "line {line}: {msg:?} lacks {p:?}");
        }
        assert!(msg.len() < 200, "{msg}");
    }
}

#[test]
fn bad_rating_and_header_counts_as_line_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.csv",
        b"user_id,item_id,rating,timestamp\n1,1,4.0,10\n1,2,abc,11\n1,3,NaN,12\n1,4,2.5,13\n1,5,3.5,14\n1,6,3,15\n1,7,5,16\n",
    );
    write(
        dir.path(),
        "movies.csv",
        b"item_id,title,genres\n1,\"Toy Story, the (1995)\",Adventure|Animation\n2,X,(no genres listed)\n",
    );
    write(
        dir.path(),
        "tags.csv",
        b"userId,movieId,tag,timestamp\n1,1,\" Pixar \",1\n2,1,pixar,2\n2,1,\"fun, really\",3\n",
    );
    let mapping = DatasetMapping::preset("movielens").unwrap();
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&mapping, dir.path(), &mut vocabs).unwrap();
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert_eq!(
        bad.iter().map(|e| e.line).collect::<Vec<_>>(),
        [3, 4],
        "{bad:?}"
    );
    assert!(bad[0].message.contains("rating \"abc\" is not a number"));
    let types: Vec<(u64, &str)> = ok
        .iter()
        .map(|b| {
            (
                b.item_id,
                vocabs.behavior_types.name(b.behavior_type.into()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [(1, "high"), (4, "low"), (5, "mid"), (6, "mid"), (7, "high")]
    );
    assert_eq!(vocabs.categories.names(), ["Adventure", "Animation"]);
    assert_eq!(vocabs.tags.names(), ["pixar", "fun, really"]);
    assert_eq!(ok[0].features.categories, [0, 1]);
    assert_eq!(ok[0].features.tags, [0, 1]);
    // Items absent from the tables have no features; "(no genres listed)" is none.
    assert!(ok[1..].iter().all(|b| b.features == Default::default()));
}

#[test]
fn absent_column_names_the_columns_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "r.csv",
        b"userId,movieId,rating,timestamp\n1,1,4.0,10\n",
    );
    let mut mapping = DatasetMapping::preset("movielens").unwrap();
    mapping.categories = CategoryMapping::None;
    mapping.tags = TagMapping::None;
    let mut vocabs = Vocabularies::default();
    let e = open_source(&mapping, &path, &mut vocabs)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("\"user_id\""), "{e}");
    assert!(e.contains("userId, movieId, rating, timestamp"), "{e}");
    // A failed open leaves the vocabularies alone.
    assert_eq!(vocabs, Vocabularies::default());

    // A missing item table is an i/o error naming it.
    mapping.user = "userId".into();
    mapping.item = "movieId".into();
    mapping.categories = DatasetMapping::preset("movielens").unwrap().categories;
    let e = open_source(&mapping, &path, &mut vocabs).err().unwrap();
    assert!(
        matches!(&e, LogError::Io { path, .. } if path.ends_with("movies.csv")),
        "{e}"
    );
}

#[test]
fn missing_input_is_io_error_with_path() {
    let e = open_source(
        &mini_taobao(),
        Path::new("/nonexistent/UserBehavior.csv"),
        &mut Vocabularies::default(),
    )
    .err()
    .unwrap();
    match &e {
        LogError::Io { path, .. } => assert_eq!(path, Path::new("/nonexistent/UserBehavior.csv")),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("/nonexistent/UserBehavior.csv"));
}

#[test]
fn hostile_inputs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut garbage = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..100_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        garbage.push((x >> 16) as u8);
    }
    let huge: Vec<u8> = std::iter::repeat_n(b'a', 3 << 20).collect();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty.csv", Vec::new()),
        ("header.csv", b"user_id,item_id,rating,timestamp\n".to_vec()),
        ("garbage.csv", garbage),
        ("huge.csv", huge),
        ("quotes.csv", b"\"1,\"2\n\"\"\"\n,,,,\n\r\n\n".to_vec()),
        ("nul.csv", b"\0\0\0,\0,\0,\0,\0\n".to_vec()),
    ];
    let mut movielens = DatasetMapping::preset("movielens").unwrap();
    movielens.categories = CategoryMapping::None;
    movielens.tags = TagMapping::None;
    for (name, content) in inputs {
        let path = write(dir.path(), name, &content);
        for mapping in [&mini_taobao(), &movielens] {
            let mut vocabs = Vocabularies::default();
            match open_source(mapping, &path, &mut vocabs) {
                Ok(mut src) => {
                    let (ok, _bad) = split(read_all(src.as_mut(), &mut vocabs));
                    assert!(ok.is_empty(), "{name}: {ok:?}");
                    assert!(src.bytes_read() <= src.total_bytes());
                }
                Err(e) => assert!(matches!(e, LogError::Mapping(_)), "{name}: {e}"),
            }
        }
    }
}

#[test]
fn tsv_millis_by_index_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "log.tsv",
        b"7\t1511544070999\tclick\t42\n8\t-1\tbuy\t43\n9\t5\tview\n",
    );
    let mapping = DatasetMapping::from_json(
        r#"{"name": "t", "user": 0, "item": 3, "timestamp": 1, "timestamp_unit": "millis",
            "behavior": {"categorical": {"column": 2, "values": ["click", "buy"]}}}"#,
    )
    .unwrap();
    let (ok, bad) = open_rows(&mapping, &path);
    assert_eq!(ok.len(), 2);
    assert_eq!(
        (
            ok[0].user_id,
            ok[0].item_id,
            ok[0].timestamp,
            ok[0].behavior_type
        ),
        (7, 42, 1_511_544_070, 0)
    );
    assert_eq!((ok[1].timestamp, ok[1].behavior_type), (-1, 1));
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].line, 3);
    assert!(bad[0]
        .message
        .contains("expected at least 4 columns, found 3"));
}

#[test]
fn behavior_ids_follow_an_existing_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "log.csv", b"1,2,3,buy,4\n1,2,3,pv,5\n");
    let mut vocabs = Vocabularies::default();
    vocabs.behavior_types.intern("buy");
    let mut src = open_source(&mini_taobao(), &path, &mut vocabs).unwrap();
    assert_eq!(vocabs.behavior_types.names(), ["buy", "pv", "cart", "fav"]);
    let (ok, _) = split(read_all(src.as_mut(), &mut vocabs));
    assert_eq!(ok[0].behavior_type, 0);
    assert_eq!(ok[1].behavior_type, 1);
}

#[test]
fn folder_input_needs_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut mapping = mini_taobao();
    mapping.log_file = None;
    let e = open_source(&mapping, dir.path(), &mut Vocabularies::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("log_file"), "{e}");
}

mod parquet_io {
    use super::*;
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// Writes `groups` row groups of (user i64, item i32 as int, category
    /// optional i64, behavior_type string, timestamp i64, unused string).
    #[allow(clippy::type_complexity)]
    fn write_parquet(path: &Path, groups: &[Vec<(i64, i32, Option<i64>, &str, i64)>]) {
        let schema = Arc::new(
            parse_message_type(
                "message log {
                    required int64 user_id;
                    required int32 item_id;
                    optional int64 category_id;
                    required binary behavior_type (UTF8);
                    required int64 timestamp;
                    required binary note (UTF8);
                }",
            )
            .unwrap(),
        );
        let file = std::fs::File::create(path).unwrap();
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        for rows in groups {
            let mut rg = writer.next_row_group().unwrap();
            let mut i = 0;
            while let Some(mut col) = rg.next_column().unwrap() {
                match i {
                    0 => {
                        let v: Vec<i64> = rows.iter().map(|r| r.0).collect();
                        col.typed::<Int64Type>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    1 => {
                        let v: Vec<i32> = rows.iter().map(|r| r.1).collect();
                        col.typed::<Int32Type>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    2 => {
                        let v: Vec<i64> = rows.iter().filter_map(|r| r.2).collect();
                        let def: Vec<i16> = rows.iter().map(|r| i16::from(r.2.is_some())).collect();
                        col.typed::<Int64Type>()
                            .write_batch(&v, Some(&def), None)
                            .unwrap();
                    }
                    3 => {
                        let v: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.3)).collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    4 => {
                        let v: Vec<i64> = rows.iter().map(|r| r.4).collect();
                        col.typed::<Int64Type>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                    _ => {
                        let v: Vec<ByteArray> = rows.iter().map(|_| ByteArray::from("n")).collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&v, None, None)
                            .unwrap();
                    }
                }
                col.close().unwrap();
                i += 1;
            }
            rg.close().unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.parquet");
        write_parquet(
            &path,
            &[
                vec![
                    (1, 10, Some(100), "pv", 1_511_544_070),
                    (1, 11, Some(101), "buy", 1_511_544_071),
                ],
                vec![
                    (2, 12, None, "cart", 1_511_544_072),
                    (-3, 13, Some(103), "fav", 1_511_544_073),
                    (4, 14, Some(104), "click", 1_511_544_074),
                    (5, 15, Some(105), "fav", 1_511_544_075),
                ],
            ],
        );
        let mut mapping = mini_taobao();
        mapping.format = InputFormat::Auto;
        let mut vocabs = Vocabularies::default();
        let mut src = open_source(&mapping, &path, &mut vocabs).unwrap();
        assert_eq!(src.bytes_read(), 0);
        let total = src.total_bytes();
        let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
        assert_eq!(src.bytes_read(), total);
        let got: Vec<(u64, u64, u64, u8, i64, Vec<u64>)> = ok
            .iter()
            .map(|b| {
                (
                    b.line,
                    b.user_id,
                    b.item_id,
                    b.behavior_type,
                    b.timestamp,
                    b.features.categories.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, 10, 0, 1_511_544_070, vec![100]),
                (2, 1, 11, 3, 1_511_544_071, vec![101]),
                (6, 5, 15, 2, 1_511_544_075, vec![105]),
            ]
        );
        let bad: HashMap<u64, &str> = bad.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[&3].contains("category_id null"), "{}", bad[&3]);
        assert!(bad[&4].contains("user_id -3 is negative"), "{}", bad[&4]);
        assert!(bad[&5].contains("\"click\""), "{}", bad[&5]);
    }

    #[test]
    fn parquet_absent_column_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.parquet");
        write_parquet(&path, &[vec![(1, 10, Some(100), "pv", 1)]]);
        let mut mapping = mini_taobao();
        mapping.format = InputFormat::Parquet;
        mapping.timestamp = "ts".into();
        let e = open_source(&mapping, &path, &mut Vocabularies::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"ts\""), "{e}");
        assert!(
            e.contains("user_id, item_id, category_id, behavior_type, timestamp, note"),
            "{e}"
        );

        let junk = write(dir.path(), "junk.parquet", b"PAR1 not really parquet PAR1");
        let e = open_source(&mini_taobao_parquet(), &junk, &mut Vocabularies::default())
            .err()
            .unwrap();
        assert!(matches!(e, LogError::Parquet { .. }), "{e}");
    }

    #[test]
    fn parquet_string_ids_typed_timestamps_and_rating_buckets() {
        use parquet::data_type::DoubleType;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratings.pq");
        let schema = Arc::new(
            parse_message_type(
                "message m {
                    required binary user_id (UTF8);
                    required binary item_id;
                    required double rating;
                    required int64 timestamp (TIMESTAMP(MILLIS, true));
                }",
            )
            .unwrap(),
        );
        let file = std::fs::File::create(&path).unwrap();
        let props = Arc::new(WriterProperties::builder().build());
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut rg = writer.next_row_group().unwrap();
        let mut i = 0;
        while let Some(mut col) = rg.next_column().unwrap() {
            match i {
                0 => {
                    let v = ["1", "x", "3"].map(ByteArray::from);
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                1 => {
                    let v = ["10", "11", "12"].map(ByteArray::from);
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                2 => {
                    let v = [4.5, 1.0, 3.0];
                    col.typed::<DoubleType>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
                _ => {
                    let v = [1_000_999i64, 2_000_000, -1];
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .unwrap();
                }
            }
            col.close().unwrap();
            i += 1;
        }
        rg.close().unwrap();
        writer.close().unwrap();

        let mut mapping = DatasetMapping::preset("movielens").unwrap();
        mapping.format = InputFormat::Auto;
        mapping.categories = CategoryMapping::None;
        mapping.tags = TagMapping::None;
        let (ok, bad) = open_rows(&mapping, &path);
        let got: Vec<(u64, u64, u64, u8, i64)> = ok
            .iter()
            .map(|b| (b.line, b.user_id, b.item_id, b.behavior_type, b.timestamp))
            .collect();
        assert_eq!(got, [(1, 1, 10, 2, 1000), (3, 3, 12, 1, -1)]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
        assert!(
            bad[0].message.contains("user_id \"x\""),
            "{}",
            bad[0].message
        );
    }

    fn mini_taobao_parquet() -> DatasetMapping {
        let mut m = mini_taobao();
        m.format = InputFormat::Parquet;
        m
    }
}

#[test]
fn real_logs_stay_within_the_limits() {
    // Rejecting timestamps before 1970 (and the other limits) changes
    // nothing for the bundled data: every row still becomes a behavior.
    for (mapping, input, rows) in [
        ("taobao", TAOBAO, 84_474),
        ("movielens", MOVIELENS, 100_836),
    ] {
        if !present(input) {
            continue;
        }
        let m = DatasetMapping::preset(mapping).unwrap();
        let mut vocabs = Vocabularies::default();
        let mut src = open_source(&m, Path::new(input), &mut vocabs).unwrap();
        assert!(src.warnings().is_empty(), "{mapping}: {:?}", src.warnings());
        let rows_read = read_all(src.as_mut(), &mut vocabs);
        let (ok, bad) = split(rows_read.into_iter().map(Row::checked).collect());
        assert!(bad.is_empty(), "{mapping}: {:?}", &bad[..bad.len().min(3)]);
        assert_eq!(ok.len(), rows, "{mapping}");
    }
}

#[test]
fn limits_make_rows_bad_with_the_limits_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "log.csv",
        b"1,2,3,pv,-1\n1099511627776,2,3,pv,5\n1099511627775,2,3,pv,253402300799\n",
    );
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&mini_taobao(), &path, &mut vocabs).unwrap();
    let rows: Vec<Row> = read_all(src.as_mut(), &mut vocabs)
        .into_iter()
        .map(Row::checked)
        .collect();
    let (ok, bad) = split(rows);
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].line, 3);
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].reason, RejectReason::Limit("invalid_timestamp"));
    assert_eq!(
        bad[0].message,
        hindsight_core::limits::LimitViolation::Timestamp(-1).to_string()
    );
    assert_eq!(
        (bad[1].line, bad[1].reason.as_str()),
        (2, "invalid_user_id")
    );
}

#[test]
fn movielens_1m_dat_pair_with_latin1_titles() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.dat",
        b"1::1193::5::978300760\r\n1::661::3::978302109\r\n2::73::x::978298413\r\n2::73::4\r\n",
    );
    write(
        dir.path(),
        "movies.dat",
        b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Children's\n73::Mis\xe9rables, Les (1995)::Com\xe9die|Drama\n",
    );
    let mut m = DatasetMapping::from_json(
        r#"{"name": "ml-1m", "format": "csv", "delimiter": "::", "has_header": false,
            "columns": ["user_id", "item_id", "rating", "timestamp"], "log_file": "ratings.dat",
            "user": "user_id", "item": "item_id", "timestamp": "timestamp",
            "behavior": {"rating_buckets": {"column": "rating", "buckets": [{"name": "low", "below": 4}, {"name": "high"}]}},
            "categories": {"item_table": {"path": "movies.dat", "has_header": false, "delimiter": "::",
                "item_column": 0, "value_column": 2, "separator": "|", "encoding": "latin1"}}}"#,
    )
    .unwrap();
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&m, dir.path(), &mut vocabs).unwrap();
    assert!(src.warnings().is_empty(), "{:?}", src.warnings());
    assert_eq!(
        vocabs.categories.names(),
        ["Drama", "Animation", "Children's", "Comédie"]
    );
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert_eq!(
        ok.iter()
            .map(|b| (b.line, b.user_id, b.item_id, b.behavior_type, b.timestamp))
            .collect::<Vec<_>>(),
        [(1, 1, 1193, 1, 978_300_760), (2, 1, 661, 0, 978_302_109)]
    );
    assert_eq!(ok[1].features.categories, [1, 2]);
    assert_eq!(
        bad.iter().map(|e| (e.line, e.reason)).collect::<Vec<_>>(),
        [(3, RejectReason::BehaviorType), (4, RejectReason::Columns)]
    );

    // Read as UTF-8, the same table still loads, with a warning naming the fix.
    if let CategoryMapping::ItemTable(t) = &mut m.categories {
        t.encoding = Encoding::Utf8;
    }
    let src = open_source(&m, dir.path(), &mut Vocabularies::default()).unwrap();
    assert_eq!(src.warnings().len(), 1);
    assert!(
        src.warnings()[0].contains("\"encoding\": \"latin1\""),
        "{:?}",
        src.warnings()
    );

    // `.dat` is no known extension: without "format" the open says what to set.
    m.format = InputFormat::Auto;
    let e = open_source(&m, dir.path(), &mut Vocabularies::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("\"format\"") && e.contains("\"::\""), "{e}");
}

#[test]
fn recbole_inter_with_float_timestamps_and_a_token_seq_table() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.inter",
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3.0\t881250949.0\n186\t302\t3\t891717742.5\n22\t377\t1.0\t8.78887116e8\n",
    );
    write(
        dir.path(),
        "x.item",
        b"item_id:token\tmovie_title:token_seq\tclass:token_seq\n242\t\"Kolya\tComedy\n302\tL.A. Confidential\tCrime Film-Noir\n",
    );
    let m = DatasetMapping::from_json(
        r#"{"name": "r", "has_header": true, "user": "user_id:token", "item": "item_id:token",
            "timestamp": "timestamp:float",
            "behavior": {"rating_buckets": {"column": "rating:float", "buckets": [{"name": "low", "below": 3}, {"name": "high"}]}},
            "categories": {"item_table": {"path": "x.item", "delimiter": "\t",
                "item_column": "item_id:token", "value_column": "class:token_seq", "separator": " "}}}"#,
    )
    .unwrap();
    let mut vocabs = Vocabularies::default();
    // `.inter` reads as TSV; a tab delimiter does not treat quotes specially.
    let mut src = open_source(&m, &dir.path().join("x.inter"), &mut vocabs).unwrap();
    assert_eq!(vocabs.categories.names(), ["Comedy", "Crime", "Film-Noir"]);
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        ok.iter()
            .map(|b| (
                b.user_id,
                b.timestamp,
                b.behavior_type,
                b.features.categories.len()
            ))
            .collect::<Vec<_>>(),
        [
            (196, 881_250_949, 1, 1),
            (186, 891_717_742, 1, 2),
            (22, 878_887_116, 0, 0)
        ]
    );
}

#[test]
fn quoted_table_fields_may_hold_the_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        dir.path(),
        "log.csv",
        b"u;i;t\n1;1;2017-11-25T01:21:10Z\n1;2;2017-11-25\n",
    );
    write(
        dir.path(),
        "items.csv",
        b"id;title;genres\n1;\"Bad; Worse (1990)\";\"Drama;Crime\"\n2;\"x\";Comedy\n",
    );
    let m = DatasetMapping::from_json(
        r#"{"name": "q", "delimiter": ";", "has_header": true, "user": "u", "item": "i",
            "timestamp": "t", "timestamp_unit": "iso8601", "behavior": {"constant": "click"},
            "categories": {"item_table": {"path": "items.csv", "delimiter": ";",
                "item_column": "id", "value_column": "genres", "separator": ";"}}}"#,
    )
    .unwrap();
    assert_eq!(m.timestamp_unit, TimestampUnit::Rfc3339);
    let mut vocabs = Vocabularies::default();
    let mut src = open_source(&m, &log, &mut vocabs).unwrap();
    assert_eq!(vocabs.behavior_types.names(), ["click"]);
    assert_eq!(vocabs.categories.names(), ["Drama", "Crime", "Comedy"]);
    let (ok, bad) = split(read_all(src.as_mut(), &mut vocabs));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        ok.iter()
            .map(|b| (
                b.item_id,
                b.timestamp,
                b.behavior_type,
                b.features.categories.clone()
            ))
            .collect::<Vec<_>>(),
        [
            (1, 1_511_572_870, 0, vec![0, 1]),
            (2, 1_511_568_000, 0, vec![2])
        ]
    );
}

#[test]
fn a_category_table_with_as_many_values_as_items_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = String::from("item_id,title,genres\n");
    for i in 0..30 {
        table.push_str(&format!("{i},Title {i},Comedy|Drama\n"));
    }
    write(dir.path(), "movies.csv", table.as_bytes());
    let log = write(
        dir.path(),
        "r.csv",
        b"user_id,item_id,rating,timestamp\n1,1,4,5\n",
    );
    let mut m = DatasetMapping::preset("movielens").unwrap();
    m.tags = TagMapping::None;
    let src = open_source(&m, &log, &mut Vocabularies::default()).unwrap();
    assert!(src.warnings().is_empty(), "{:?}", src.warnings());
    if let CategoryMapping::ItemTable(t) = &mut m.categories {
        t.value_column = "title".into();
    }
    let src = open_source(&m, &log, &mut Vocabularies::default()).unwrap();
    assert_eq!(src.warnings().len(), 1, "{:?}", src.warnings());
    assert!(src.warnings()[0].contains("30 distinct values to 30 items"));
}

#[test]
fn mappings_written_before_the_new_fields_still_read() {
    // A mapping as older versions stored it in the manifest: a one-character
    // delimiter, no "encoding", "timestamp_unit" seconds.
    let old = r#"{"name": "old", "format": "csv", "has_header": false, "delimiter": ";",
        "user": 0, "item": 1, "timestamp": 3, "timestamp_unit": "seconds",
        "behavior": {"categorical": {"column": 2, "values": ["pv"]}},
        "categories": {"item_table": {"path": "t.csv", "item_column": 0, "value_column": 1}},
        "tags": "none"}"#;
    let m = DatasetMapping::from_json(old).unwrap();
    assert_eq!(m.delimiter.as_deref(), Some(";"));
    let CategoryMapping::ItemTable(t) = &m.categories else {
        panic!("{m:?}")
    };
    assert_eq!(t.encoding, Encoding::Utf8);
    // Defaults are not written back, so the stored JSON is unchanged.
    let again = serde_json::to_value(&m).unwrap();
    assert!(again["categories"]["item_table"].get("encoding").is_none());
    let bad = old.replace("\";\"", "\"\"");
    assert!(DatasetMapping::from_json(&bad).is_err());
}
