#!/usr/bin/env bash
# Runs every fuzz target for about SECONDS seconds each (default 60), in
# rounds of proptest cases with fresh seeds; prints the executions of each.
# A failure is shrunk by proptest and printed with its minimal input.
#   bash scripts/fuzz.sh 300
# The normal test suite runs the same targets for a bounded case count
# (HINDSIGHT_FUZZ_CASES overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
export HINDSIGHT_FUZZ_SECONDS="$seconds"
source scripts/env.sh >/dev/null
for target in "hindsight-logs fuzz" "hindsight-index fuzz" "hindsight-server fuzz_requests"; do
    set -- $target
    cargo test -p "$1" --test "$2" -- --nocapture --test-threads 4 2>&1 | grep -E "^fuzz |panicked|minimal failing|test result"
done
