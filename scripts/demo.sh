#!/usr/bin/env bash
# The main job on the bundled real data, from a fresh clone: builds the
# `hindsight` binary (release), indexes the real Taobao log into
# index/taobao, and shows the index and retrieval with every strategy.
# DATA (default ../shared/data) points at the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
DATA="${DATA:-../shared/data}"
cargo build --release -p hindsight-cli
hs=target/release/hindsight
if [ -d index/taobao ]; then
    echo "== index/taobao exists: re-ingesting adds nothing twice"
fi
$hs ingest --preset taobao "$DATA/taobao/UserBehavior.csv" --index index/taobao
$hs index info --index index/taobao
for s in recent sim-hard ubr hybrid; do
    echo
    echo "== $s: user 1, target item 2268318, as of seq 50, N=8"
    $hs retrieve --index index/taobao --user 1 --item 2268318 --strategy "$s" -n 8 --as-of-seq 50
done
