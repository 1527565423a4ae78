#!/usr/bin/env bash
# GPU checks for a machine with an NVIDIA GPU: trains the cremi geometry for 200
# iterations on CUDA and prints iterations per second and peak GPU memory.
# Exits early, with a clear message and status 0, where there is no GPU.
# Usage: scripts/gpu_check.sh [ITERATIONS]   (from the repository root; make venv first)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/gpu_check.py "$@"
