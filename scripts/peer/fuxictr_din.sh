#!/usr/bin/env bash
# Peer comparison: FuxiCTR's DIN trained on hindsight's exported samples.
#
# Not part of CI. Usage, from anywhere:
#
#     scripts/peer/fuxictr_din.sh SAMPLES_DIR [extra args for fuxictr_din.py]
#
# SAMPLES_DIR is the output of
#     target/release/hindsight export-samples --index index/taobao \
#         --strategy ubr -n 50 --out samples/taobao-ubr-50
# (train.csv, valid.csv, test.csv, meta.json).
#
# The first run creates scripts/peer/.venv (git-ignored) and installs the
# pinned FuxiCTR and torch from PyPI (torch's default PyPI wheel, about
# 2.6 GB with its CUDA libraries; the run itself uses the CPU unless
# --gpu is given). Later runs reuse it. Set PEER_PYTHON to choose the
# interpreter (default python3, needs >= 3.10). Thread count follows
# OMP_NUM_THREADS (default here: 2).
#
# Prints the run's log on stderr, then one JSON line and one Markdown table
# row on stdout. Work files (FuxiCTR's parquet data, checkpoints) go to
# scripts/peer/runs/ (git-ignored) unless --work-dir is given.
set -euo pipefail

FUXICTR_VERSION=2.3.10
TORCH_VERSION=2.11.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PEER_PYTHON:-python3}"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 ]] && exit 0
    exit 2
fi

stamp="$venv/.peer-installed-fuxictr-$FUXICTR_VERSION-torch-$TORCH_VERSION"
if [[ ! -f "$stamp" ]]; then
    echo "peer: creating $venv (fuxictr==$FUXICTR_VERSION, torch==$TORCH_VERSION)" >&2
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    # requirements.txt pins every package of the venv as it was when the
    # figures in docs/eval/peer.md were measured.
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" >&2
    touch "$stamp"
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$OMP_NUM_THREADS}"
# Ray (FuxiCTR's data pipeline) must not phone home or open a dashboard.
export RAY_USAGE_STATS_ENABLED=0
export RAY_DISABLE_DOCKER_CPU_WARNING=1
exec "$venv/bin/python" "$here/fuxictr_din.py" "$@"
