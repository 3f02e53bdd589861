#!/usr/bin/env bash
# What CI runs (via .ci/run): formatting, lints, the README's test command,
# and a build of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse a cargo target dir kept between runs on the same machine, when there
# is one; a fresh machine simply builds from scratch.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hindsight/target}"
mkdir -p "$CARGO_TARGET_DIR"
# shellcheck source=scripts/env.sh
source scripts/env.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (README test command)"
bash scripts/test.sh
echo "== cargo bench --no-run"
cargo bench --workspace --no-run
