#!/usr/bin/env bash
# One command per dataset for the CTR report grid, embedding strategies
# included (docs/evaluation-protocol.md, docs/embedding-retrieval.md):
#
#     bash scripts/eval_report.sh taobao    [OUT] [-- extra report flags]
#     bash scripts/eval_report.sh movielens [OUT] [-- extra report flags]
#
# 1. builds the release binary (after sourcing scripts/env.sh);
# 2. ingests ../shared/data/<dataset> into $WORK/index-<dataset> unless it
#    exists;
# 3. phase one of two-phase training: DIN on `ubr` retrieval, N = 50, seed 1
#    (training samples only; the protocol's split), unless the model exists;
# 4. attaches that model's item vectors and ETA/SDIM codes to the index;
# 5. runs `hindsight report` over the strategies recent, sim-hard, ubr,
#    sim-soft, eta, sdim (DIN at N = 50 and 20, seeds 1,2,3) into OUT
#    (default docs/eval/<dataset>). Flags after `--` go to `report` and
#    override these (e.g. `-- --models din,dien,atrank,bst --hard-negatives
#    --full-history-n 1000` for the whole grid of issue #14).
#
# WORK defaults to work/eval (ignored by git). Every step prints what it does;
# an interrupted run restarts from the first missing piece (the report itself
# keeps finished runs only in its output, so it reruns from the start).
set -euo pipefail
cd "$(dirname "$0")/.."

dataset="${1:-}"
case "$dataset" in
    taobao) data=../shared/data/taobao/UserBehavior.csv ;;
    movielens) data=../shared/data/movielens-small ;;
    *)
        echo "usage: bash scripts/eval_report.sh taobao|movielens [OUT] [-- report flags]" >&2
        exit 2
        ;;
esac
shift
out="docs/eval/$dataset"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    out="$1"
    shift
fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then
    shift
fi
work="${WORK:-work/eval}"
index="$work/index-$dataset"
phase1="$work/models/$dataset-din-ubr-phase1"

# shellcheck source=scripts/env.sh
source scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
echo "== building the release binary" >&2
cargo build --release -p hindsight-cli
hs="$CARGO_TARGET_DIR/release/hindsight"

mkdir -p "$work/models"
if [ ! -d "$index" ]; then
    echo "== ingest $data -> $index" >&2
    "$hs" ingest --preset "$dataset" "$data" --index "$index"
fi
if [ ! -f "$phase1/config.json" ]; then
    echo "== phase one: DIN on ubr, N = 50, seed 1 -> $phase1" >&2
    "$hs" train --index "$index" --model din --strategy ubr -n 50 --seed 1 \
        --torch-threads 1 --out "$phase1"
fi
echo "== attach the phase-one item vectors and codes to $index" >&2
"$hs" embeddings attach --index "$index" --model "$phase1"

echo "== report -> $out" >&2
"$hs" report --dataset "$dataset" --index "$index" --out "$out" \
    --models din --strategies recent,sim-hard,ubr,sim-soft,eta,sdim \
    -n 50 --din-small-n 20 --full-history-n 0 --seeds 1,2,3 --torch-threads 1 "$@"
