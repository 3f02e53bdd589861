//! Property-driven fuzzing of the server's request JSON types: arbitrary
//! and mutated bodies deserialize into `ScoreRequest`, `AppendRequest` and
//! `ReloadRequest` or fail with a message, never panic. A few seconds in
//! the normal suite; `scripts/fuzz.sh SECONDS` runs it for a bounded time
//! (see docs/reliability.md).

use std::time::{Duration, Instant};

use hindsight_server::api::{AppendRequest, ReloadRequest, ScoreRequest};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Runs `test` on `cases` inputs (env `HINDSIGHT_FUZZ_CASES`), or, with
/// `HINDSIGHT_FUZZ_SECONDS` set, rounds of them with fresh seeds until the
/// time is up. A failure is shrunk by proptest and fails the test.
fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("HINDSIGHT_FUZZ_CASES").map_or(default_cases, |c| c as u32);
    let deadline = env("HINDSIGHT_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let (mut executions, mut round) = (0u64, 0u64);
    loop {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&round.to_le_bytes());
        seed[8..16].copy_from_slice(&(name.len() as u64).to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        );
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed (round {round}): {e}");
        }
        executions += u64::from(cases);
        round += 1;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {executions} executions in {:.1}s, no failure",
        started.elapsed().as_secs_f64()
    );
}

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
