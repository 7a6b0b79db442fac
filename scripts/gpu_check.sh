#!/usr/bin/env bash
# The GPU check (make gpu-check OUT=folder): scripts/gpu_check.py's steps on a CUDA machine with no network,
# after `make wheelhouse` (carry .whl there). Its log goes to OUT/gpu_check.log beside the summary.
#   GPU_CHECK_DRY=1  the same steps on the CPU with tiny settings, on the course's .venv (the tests run this)
#   GPU_CHECK_PYTHON the interpreter (default: .venv/bin/python for the dry run, else python3: the GPU image's)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-_build/gpu-check}}"
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then default=.venv/bin/python; else default=python3; fi
python="${GPU_CHECK_PYTHON:-$default}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
"$python" scripts/gpu_check.py --out "$out" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
