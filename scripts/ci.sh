#!/usr/bin/env bash
# What CI runs (via .ci/run): formatting; the build without libtorch (the
# `model` feature off, no env.sh, no .venv); then lints, the README's test
# command and a build of the benchmarks with libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse cargo target dirs kept between runs on the same machine, when there
# are; a fresh machine simply builds from scratch. The build without
# libtorch has its own target dir, so that the two feature sets do not
# rebuild each other's crates.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hindsight/target}"
nomodel_target="${HINDSIGHT_NOMODEL_TARGET_DIR:-$HOME/.cache/hindsight/target-nomodel}"
mkdir -p "$CARGO_TARGET_DIR" "$nomodel_target"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== without libtorch: clippy, the CLI's tests, no libtorch linked or in the graph"
(
    unset LIBTORCH_USE_PYTORCH LIBTORCH LIBTORCH_LIB VIRTUAL_ENV LD_LIBRARY_PATH HINDSIGHT_TORCH_LIB
    export CARGO_TARGET_DIR="$nomodel_target"
    cargo clippy -p hindsight-cli -p hindsight-engine -p hindsight-benches -p hindsight-loadtest \
        --no-default-features --all-targets -- -D warnings
    cargo test -p hindsight-cli --no-default-features
    if ldd "$CARGO_TARGET_DIR/debug/hindsight" | grep -q torch; then
        echo "the binary built without the model feature links libtorch" >&2
        exit 1
    fi
    # The libtorch-free crates (their tests included) and the retrieval
    # benches depend on nothing that builds libtorch; a plain `cargo test`
    # at the root (default-members) builds only such crates.
    for args in "-p hindsight-index" "-p hindsight-retrieval" "-p hindsight-logs" \
        "-p hindsight-recall" "-p hindsight-embeddings" \
        "-p hindsight-samples" "-p hindsight-loadtest" "-p hindsight-tests" \
        "-p hindsight-benches --no-default-features" "-p hindsight-cli --no-default-features"; do
        # shellcheck disable=SC2086
        if cargo tree $args -e normal,build,dev --prefix none | grep -q '^torch-sys'; then
            echo "cargo tree $args pulls in torch-sys" >&2
            exit 1
        fi
    done
)

# shellcheck source=scripts/env.sh
source scripts/env.sh
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (README test command)"
bash scripts/test.sh
echo "== binaries find libtorch without LD_LIBRARY_PATH (rpath)"
env -u LD_LIBRARY_PATH "$CARGO_TARGET_DIR/debug/hindsight" --help >/dev/null
echo "== cargo bench --no-run"
cargo bench --workspace --no-run
