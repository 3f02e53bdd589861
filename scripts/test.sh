#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: sets up libtorch (the
# torch==2.11.0 wheel in .venv, see scripts/env.sh), then runs every test of
# the workspace (unit, property, end-to-end against ../shared/data, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
cargo test --workspace --doc
