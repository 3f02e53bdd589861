//! The fuzz harness shared by the crates' fuzz targets (included with
//! `#[path]` by `crates/*/tests/fuzz*.rs`; see docs/reliability.md).

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// Runs `test` on `cases` inputs (env `HINDSIGHT_FUZZ_CASES`), or, with
/// `HINDSIGHT_FUZZ_SECONDS` set, rounds of them with fresh seeds until the
/// time is up. A failure is shrunk by proptest and fails the test.
pub fn fuzz<S: Strategy>(
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
