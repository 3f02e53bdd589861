#!/usr/bin/env bash
# Peer comparison: RecBole's SASRec trained on hindsight's recall split.
#
# Not part of CI. Usage, from anywhere:
#
#     scripts/peer/recbole_sasrec.sh EXPORT_DIR [extra args for recbole_sasrec.py]
#
# EXPORT_DIR is the output of
#     hindsight export-recall --index index/taobao --format recbole \
#         --name taobao --out runs/recall/taobao
# (the folder's name must equal --name: RecBole reads
# DATA_PATH/NAME/NAME.{train,valid,test}.inter and NAME.item).
#
# Installs the pinned RecBole (scripts/peer/requirements-recbole.txt) into
# the project venv (.venv at the repository root, which holds torch 2.11.0
# from scripts/env.sh) on the first run; later runs reuse it. Compatibility
# patches (torch.load's weights_only default, NumPy 2's removed aliases)
# are applied inside recbole_sasrec.py, not in site-packages. Thread count
# follows OMP_NUM_THREADS (default here: 2).
#
# Prints RecBole's log on stderr, then one JSON line and one Markdown table
# row on stdout: HR@10/50, NDCG@10/50, Recall@100 on the test targets
# (full ranking, seen items not masked, as RecBole evaluates sequential
# models), training samples/s. Options: --epochs, --loss CE|BPR, --seed,
# --gpu, ... (recbole_sasrec.py --help).
set -euo pipefail

RECBOLE_VERSION=1.2.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 ]] && exit 0
    exit 2
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "peer: no project venv at $venv; run \`source scripts/env.sh\` first (it creates it with torch 2.11.0)" >&2
    exit 1
fi

stamp="$venv/.peer-installed-recbole-$RECBOLE_VERSION"
if [[ ! -f "$stamp" ]]; then
    echo "peer: installing recbole==$RECBOLE_VERSION into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements-recbole.txt" >&2
    touch "$stamp"
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$OMP_NUM_THREADS}"
export RAY_USAGE_STATS_ENABLED=0
exec "$venv/bin/python" "$here/recbole_sasrec.py" "$@"
