//! Property-driven fuzzing of the server's request JSON types: arbitrary
//! and mutated bodies deserialize into `ScoreRequest`, `AppendRequest` and
//! `ReloadRequest` or fail with a message, never panic. A few seconds in
//! the normal suite; `scripts/fuzz.sh SECONDS` runs it for a bounded time
//! (see docs/reliability.md).

use hindsight_server::api::{AppendRequest, ReloadRequest, ScoreRequest};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

#[path = "../../../tests/support/fuzz.rs"]
mod harness;
use harness::fuzz;

const SEEDS: [&str; 4] = [
    r#"{"user_id":1,"candidates":[{"item_id":2268318},{"item_id":3333,"category_id":2520377,"categories":[1,2],"tags":[3]}],"n":20,"as_of":{"timestamp":1511000000},"explain":true}"#,
    r#"{"behaviors":[{"user_id":1,"item_id":42,"category_id":2520377,"behavior_type":"buy","timestamp":1511000000},{"user_id":18446744073709551615,"item_id":0,"behavior_type":3,"categories":[1,2,3]}]}"#,
    r#"{"model":"models/a","index":"index/b"}"#,
    r#"{}"#,
];

/// Byte flips, cuts and splices of valid requests, JSON-shaped noise, raw bytes.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let seed = (0..SEEDS.len()).prop_map(|i| SEEDS[i].as_bytes().to_vec());
    prop_oneof![
        (
            seed.clone(),
            prop::collection::vec((any::<Index>(), any::<u8>()), 1..6)
        )
            .prop_map(|(mut b, edits)| {
                for (i, v) in edits {
                    let at = i.index(b.len());
                    b[at] = v;
                }
                b
            }),
        (seed.clone(), any::<Index>()).prop_map(|(b, i)| b[..i.index(b.len())].to_vec()),
        (seed.clone(), seed, any::<Index>(), any::<Index>())
            .prop_map(|(a, b, i, j)| [&a[..i.index(a.len())], &b[j.index(b.len())..]].concat()),
        "\\{(\"[a-z_]{1,10}\": ?(null|-?[0-9]{1,30}(\\.[0-9]+)?(e[0-9]{1,4})?|\"[ -~]{0,8}\"|\\[[0-9,]{0,20}\\]|true|\\{\\}),?){0,6}\\}"
            .prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn check<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    match serde_json::from_slice::<T>(bytes) {
        // Deterministic: the same bytes give the same value.
        Ok(v) => {
            let again = serde_json::from_slice::<T>(bytes).unwrap();
            prop_assert_eq!(format!("{v:?}"), format!("{again:?}"));
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

#[test]
fn fuzz_request_json() {
    fuzz("request_json", 2048, bodies(), |bytes| {
        check::<ScoreRequest>(&bytes)?;
        check::<AppendRequest>(&bytes)?;
        check::<ReloadRequest>(&bytes)
    });
}

#[test]
fn the_seed_requests_parse() {
    serde_json::from_str::<ScoreRequest>(SEEDS[0]).unwrap();
    serde_json::from_str::<AppendRequest>(SEEDS[1]).unwrap();
    serde_json::from_str::<ReloadRequest>(SEEDS[2]).unwrap();
}
