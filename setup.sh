#!/usr/bin/env bash
# One-time set-up (idempotent): a virtual environment in .venv with the engine and test tools.
# torch is pinned to 2.13.0 here only to pick the CPU build this machine already has on disk
# (an unpinned torch may pull a multi-GB CUDA build); pyproject.toml keeps the range open.
# Override with TORCH_SPEC (e.g. TORCH_SPEC="torch" for the newest release).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.nst-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import torch, onnxruntime, skimage, nst_engine" 
    # compile the Poisson blend's numba kernels once (a few seconds) into numba's on-disk cache,
    # so that no blend pays for it later
    .venv/bin/python -c "from nst_engine.compositing._jit import warm_up; warm_up()"
    touch "$stamp"
fi
