#!/usr/bin/env bash
# Every GPU check of issue 14 in one command (<= 8 minutes on one H200):
#
#   bash benchmarks/gpu_check.sh OUT_DIR            # on the GPU machine, under its own python3
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR  # the same steps on the CPU at tiny sizes (tests)
#
# Writes OUT_DIR/gpu_check.json (steps, statuses, ratios, figures), OUT_DIR/gpu_check.log (everything
# printed) and per-step JSON beside them; see benchmarks/gpu_check.py for the steps.
#
# Python: $PYTHON if set, else python3. Packages the GPU machine lacks (av, decord, yacs, fvcore, iopath,
# pytorchvideo, termcolor) come as wheels from `make gpu-wheels` in .whl/ (carried to the machine): they
# are installed into a temporary --target folder put on PYTHONPATH, never into the machine's python.
# The device tool call (README, "GPU check"):
#   run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".whl"], timeout_s=600)
set -u -o pipefail

dry=""
if [ "${1:-}" = "--dry-run" ]; then dry="--dry-run"; shift; fi
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: benchmarks/gpu_check.sh [--dry-run] OUT_DIR" >&2
    exit 2
fi
out="$1"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
mkdir -p "$out" || { echo "gpu_check.sh: cannot create OUT_DIR $out" >&2; exit 2; }
out="$(cd "$out" && pwd)"
log="$out/gpu_check.log"
site="$(mktemp -d "${TMPDIR:-/tmp}/cgd_gpu_site.XXXXXX")"
trap 'rm -rf "$site"' EXIT

{
    echo "gpu_check.sh ${dry:-(gpu)} -> $out   $(date -u +%FT%TZ)   python: $py"
    shopt -s nullglob
    wheels=("$repo"/.whl/*.whl)
    # A dry run uses the venv as it is, unless GPU_CHECK_INSTALL_WHEELS=1 (to try the install here).
    if [ -n "$dry" ] && [ "${GPU_CHECK_INSTALL_WHEELS:-0}" != 1 ]; then wheels=(); fi
    if [ ${#wheels[@]} -gt 0 ]; then
        echo "installing ${#wheels[@]} wheels from .whl/ into $site"
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "${wheels[@]}" || echo "gpu_check.sh: wheel install failed (continuing)"
    else
        echo "no .whl/ wheels installed (make gpu-wheels; a dry run skips them): using $py's packages"
    fi
    export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
    cd "$repo" && "$py" benchmarks/gpu_check.py $dry "$out"
} 2>&1 | tee "$log"
