#!/usr/bin/env bash
# DIN forward pass on the CPU: hindsight (tch) against the same model in
# PyTorch eager, back to back, same shapes (N = 50), same thread count.
#
#     bash scripts/forward_compare.sh [--batch 100,1024] [--threads 1] [--iters 50]
#
# Prints both timings (median / p99 ms, samples/s) and the ratio
# (PyTorch median / hindsight median: above 1 means hindsight is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --release -q -p hindsight-model --example forward_timing
target_dir="${CARGO_TARGET_DIR:-target}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$target_dir/release/examples/forward_timing" --model din "$@" | python scripts/forward_compare.py
