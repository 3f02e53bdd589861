//! Property-driven fuzzing of the row parser (CSV and TSV) and the mapping
//! loader: whatever the bytes, parsing returns rows or errors, never
//! panics. A few seconds in the normal suite; `scripts/fuzz.sh SECONDS`
//! runs each target for a bounded time (see docs/reliability.md).

use hindsight_logs::{open_source, DatasetMapping, InputFormat, Row, Vocabularies};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[path = "../../../tests/support/fuzz.rs"]
mod harness;
use harness::fuzz;

/// A field as logs hold them, and as they go wrong.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..10_000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("-99999999999999".to_owned()),
        prop_oneof![
            Just("pv"),
            Just("buy"),
            Just("cart"),
            Just("fav"),
            Just("PV")
        ]
        .prop_map(str::to_owned),
        Just(String::new()),
        Just("\"".to_owned()),
        Just("\"a,b\"".to_owned()),
        Just("1e9".to_owned()),
        Just(" 12 ".to_owned()),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

/// A log: rows of fields joined by `sep`, with odd line endings, or raw bytes.
fn log_bytes(sep: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let row = prop::collection::vec(field(), 0..8).prop_map(move |f| f.join(sep));
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r"), Just("")];
    prop_oneof![
        3 => prop::collection::vec((row, end), 0..40).prop_map(|rows| {
            rows.into_iter()
                .flat_map(|(r, e)| format!("{r}{e}").into_bytes())
                .collect()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
    ]
}

/// Parses `bytes` as a log of `mapping`: every row is a behavior or a
/// counted reject with its line number, lines increase, and nothing panics.
fn parse_all(mapping: &DatasetMapping, ext: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("log.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let mut vocabs = Vocabularies::default();
    let mut source = match open_source(mapping, &path, &mut vocabs) {
        Ok(s) => s,
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    let mut last = 0u64;
    loop {
        match source.next_row(&mut vocabs) {
            Ok(None) => break,
            Ok(Some(Row::Ok(b))) => {
                prop_assert!(b.line > last, "line {} after {last}", b.line);
                last = b.line;
            }
            Ok(Some(Row::Bad(e))) => {
                prop_assert!(e.line > last, "line {} after {last}", e.line);
                prop_assert!(!e.message.is_empty());
                last = e.line;
            }
            // An error that ends the read (e.g. unreadable bytes) is
            // fine; a panic is not.
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                break;
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_csv_rows() {
    let mapping = DatasetMapping::preset("taobao").unwrap();
    fuzz("csv_rows", 96, log_bytes(","), |bytes| {
        parse_all(&mapping, "csv", &bytes)
    });
}

#[test]
fn fuzz_tsv_rows() {
    let mut mapping = DatasetMapping::preset("taobao").unwrap();
    mapping.format = InputFormat::Tsv;
    fuzz("tsv_rows", 96, log_bytes("\t"), |bytes| {
        parse_all(&mapping, "tsv", &bytes)
    });
}

/// Mutations of a valid mapping's JSON: byte flips, cuts and splices.
fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
    let base = serde_json::to_vec_pretty(&DatasetMapping::preset("taobao").unwrap()).unwrap();
    let movielens = serde_json::to_vec(&DatasetMapping::preset("movielens").unwrap()).unwrap();
    let len = base.len();
    prop_oneof![
        prop::collection::vec((0..len, any::<u8>()), 1..8).prop_map({
            let base = base.clone();
            move |edits| {
                let mut b = base.clone();
                for (i, v) in edits {
                    b[i] = v;
                }
                b
            }
        }),
        (0..len).prop_map({
            let base = base.clone();
            move |cut| base[..cut].to_vec()
        }),
        (0..len, 0..movielens.len()).prop_map({
            let base = base.clone();
            move |(a, b)| [&base[..a], &movielens[b..]].concat()
        }),
        prop::collection::vec(any::<u8>(), 0..512),
        "\\{\"[a-z_]{1,12}\": ?(null|-?[0-9]{1,25}|\"[ -~]{0,10}\"|\\[\\]|\\{\\})\\}"
            .prop_map(String::into_bytes),
    ]
}

#[test]
fn fuzz_mapping_loader() {
    fuzz("mapping_json", 512, mutated_json(), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        match DatasetMapping::from_json(&text) {
            // Whatever loads is valid, and survives a round trip.
            Ok(m) => {
                prop_assert!(m.validate().is_ok());
                let again = DatasetMapping::from_json(&serde_json::to_string(&m).unwrap());
                prop_assert!(again.is_ok(), "{:?}", again.err());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        Ok(())
    });
}
