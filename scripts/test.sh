#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: sets up libtorch (the
# torch==2.11.0 wheel in .venv, see scripts/env.sh), then runs every test of
# the workspace (unit, property, end-to-end against ../shared/data, doc
# tests) with the default features (`model` on). A plain `cargo test` at
# the root needs no libtorch but covers only the crates that do not use it
# (the workspace's default-members).
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
