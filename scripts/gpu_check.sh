#!/usr/bin/env bash
# The GPU check of issue 15 (at most ~8 minutes): CUDA torch, `pytest -m gpu`, one training step of
# the assembly presets S/M/L and of DiT-B/2 on (4, 32, 32) latents in bf16 with and without
# torch.compile (throughput and MFU against the card's bf16 peak), and a 2-minute assembly training
# compared with the CPU loss-curve reference. Everything goes to ONE JSON file.
#
#   scripts/gpu_check.sh [OUTPUT_JSON]            # default outputs/gpu_check.json
#
# Environment:
#   PYTHON=...                      interpreter to use (default: .venv/bin/python if its torch sees CUDA,
#                                   else python3 if its torch does, else .venv/bin/python)
#   KFLOW_GPU_CHECK_INSTALL=0       never try to install the CUDA build of torch
#   KFLOW_TORCH_INDEX=URL           CUDA wheel index (default https://download.pytorch.org/whl/cu128)
#   KFLOW_WHEELS=DIR                extra wheels to install offline first (default .whl, if it exists)
#   GPU_CHECK_ARGS="..."            extra arguments of scripts/gpu_check.py (e.g. --budget-s 400)
# Without a GPU it skips every CUDA part with a clear message, writes the JSON and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTPUT="${1:-outputs/gpu_check.json}"
TORCH_VERSION="2.13.0"
INDEX="${KFLOW_TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
WHEELS="${KFLOW_WHEELS:-.whl}"

say() { echo "[gpu_check.sh] $*"; }
has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
gpu_visible() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

VENV_PY=".venv/bin/python"
[ -x "$VENV_PY" ] || VENV_PY="$(command -v python3)"
if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif ! gpu_visible; then
    PY="$VENV_PY"
    say "no NVIDIA GPU visible (nvidia-smi): the CUDA parts will be skipped"
elif has_cuda "$VENV_PY"; then
    PY="$VENV_PY"
elif command -v python3 >/dev/null 2>&1 && has_cuda python3; then
    PY="python3"
    say "using python3 ($(python3 -c 'import torch; print(torch.__version__)')): its torch sees CUDA, the venv's does not"
else
    PY="$VENV_PY"
    if [ "${KFLOW_GPU_CHECK_INSTALL:-1}" = "0" ]; then
        say "a GPU is visible but torch cannot use it, and KFLOW_GPU_CHECK_INSTALL=0: not installing"
    else
        say "a GPU is visible but torch is a CPU build: installing torch==$TORCH_VERSION from $INDEX"
        if "$PY" -m pip install --quiet "torch==$TORCH_VERSION" --index-url "$INDEX"; then
            say "installed $("$PY" -c 'import torch; print(torch.__version__)')"
        else
            say "could NOT install the CUDA build of torch (no network to $INDEX?); the CUDA parts will be skipped."
            say "Install it by hand: $PY -m pip install torch==$TORCH_VERSION --index-url $INDEX"
        fi
    fi
fi

if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    say "installing the carried wheels of $WHEELS into /tmp/kflow_site (offline)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/kflow_site "$WHEELS"/*.whl \
        && export PYTHONPATH="/tmp/kflow_site${PYTHONPATH:+:$PYTHONPATH}"
fi
# the project itself, importable without installing it
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# shellcheck disable=SC2086
timeout 480 "$PY" scripts/gpu_check.py --output "$OUTPUT" ${GPU_CHECK_ARGS:-}
status=$?
if [ $status -eq 124 ]; then
    say "gpu_check.py ran past 8 minutes and was stopped (no JSON written)"
fi
exit $status
