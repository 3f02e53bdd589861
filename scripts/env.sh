# shellcheck shell=bash
# Build and run environment for hindsight (libtorch through the PyTorch wheel).
#
# Usage, from anywhere inside the repository:
#
#     source scripts/env.sh
#     cargo test
#
# What it does, idempotently (sourcing it twice changes nothing):
#   1. creates `.venv/` at the repository root with `torch==2.11.0` from PyPI
#      when it does not exist yet (about 2.6 GB of wheels; set
#      HINDSIGHT_PYTHON to choose the interpreter, default python3);
#   2. puts `.venv/bin` first on PATH and sets VIRTUAL_ENV, so that the
#      torch-sys build script runs the venv's python;
#   3. exports LIBTORCH_USE_PYTORCH (torch-sys asks that python where
#      libtorch's headers and libraries are). Its value is the venv's path,
#      not `1`: torch-sys reruns its build script only when a variable it
#      reads changes, and it does not read VIRTUAL_ENV or PATH. With `1`, a
#      target dir shared between two clones (CI caches one) kept linking
#      against the first clone's venv after that clone was deleted;
#      with the path, moving to another venv rebuilds torch-sys;
#   4. prepends the wheel's `torch/lib` to LD_LIBRARY_PATH so that test and
#      binaries find libtorch at run time. The directory is cached in
#      `.venv/.hindsight-torch-lib` so later sourcing does not start python.
#
# tch 0.24 binds libtorch 2.11.0 exactly, which is what this installs, so
# LIBTORCH_BYPASS_VERSION_CHECK is not set.

# _hs_prepend NAME DIR: puts DIR first in the colon-separated variable NAME,
# removing any other occurrence (so sourcing twice changes nothing).
_hs_prepend() {
    local name="$1" dir="$2" value rest
    eval "value=\"\${$name:-}\""
    rest=":$value:"
    while case "$rest" in *":$dir:"*) true ;; *) false ;; esac; do
        rest="${rest%%":$dir:"*}:${rest#*":$dir:"}"
    done
    rest="${rest#:}"
    rest="${rest%:}"
    eval "$name=\"\$dir\${rest:+:\$rest}\""
}

_hs_env_main() {
    local script root venv py cache torch_lib torch_version

    # Locate the repository root from this file's path (bash), falling back
    # to git and then the current directory for other shells.
    script="${BASH_SOURCE[0]:-}"
    if [ -n "$script" ] && [ -f "$script" ]; then
        root="$(cd "$(dirname "$script")/.." && pwd -P)" || return 1
    elif root="$(git rev-parse --show-toplevel 2>/dev/null)"; then
        :
    else
        root="$(pwd -P)"
    fi

    venv="$root/.venv"
    py="$venv/bin/python"

    if [ ! -x "$py" ]; then
        local base="${HINDSIGHT_PYTHON:-python3}"
        if ! command -v "$base" >/dev/null 2>&1; then
            echo "env.sh: $base not found; install python 3.10+ or set HINDSIGHT_PYTHON" >&2
            return 1
        fi
        echo "env.sh: creating $venv and installing torch==2.11.0 (about 2.6 GB, a minute or more)..." >&2
        if ! "$base" -m venv "$venv"; then
            echo "env.sh: could not create $venv (is the python venv module installed?)" >&2
            return 1
        fi
        if ! "$py" -m pip install --quiet --disable-pip-version-check torch==2.11.0; then
            echo "env.sh: pip install torch==2.11.0 failed; remove $venv and source this file again" >&2
            return 1
        fi
        rm -f "$venv/.hindsight-torch-lib"
        echo "env.sh: torch installed" >&2
    fi

    # torch/lib of the venv, cached.
    cache="$venv/.hindsight-torch-lib"
    torch_lib=""
    if [ -f "$cache" ]; then
        torch_lib="$(cat "$cache")"
    fi
    if [ -z "$torch_lib" ] || [ ! -d "$torch_lib" ]; then
        torch_lib="$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"
        if [ -z "$torch_lib" ] || [ ! -d "$torch_lib" ]; then
            echo "env.sh: torch is not importable from $py; run: $py -m pip install torch==2.11.0" >&2
            return 1
        fi
        printf '%s\n' "$torch_lib" >"$cache"
    fi

    # Warn (without failing) on a torch that tch 0.24 does not bind.
    torch_version="$(sed -n 's/^Version: //p' "$venv"/lib/python3*/site-packages/torch-*.dist-info/METADATA 2>/dev/null | head -n 1)"
    case "$torch_version" in
        2.11.0*|"") ;;
        *) echo "env.sh: warning: torch $torch_version in $venv, tch 0.24 expects 2.11.0" >&2 ;;
    esac

    _hs_prepend PATH "$venv/bin"
    _hs_prepend LD_LIBRARY_PATH "$torch_lib"
    VIRTUAL_ENV="$venv"
    LIBTORCH_USE_PYTORCH="$venv"
    HINDSIGHT_TORCH_LIB="$torch_lib"
    export PATH LD_LIBRARY_PATH VIRTUAL_ENV LIBTORCH_USE_PYTORCH HINDSIGHT_TORCH_LIB
}

_hs_env_main
_hs_env_status=$?
unset -f _hs_env_main _hs_prepend
if [ "$_hs_env_status" -ne 0 ]; then
    unset _hs_env_status
    return 1 2>/dev/null || exit 1
fi
unset _hs_env_status
