#!/usr/bin/env bash
# Create .venv and install neurosim with pinned dependencies (CPU torch 2.13, numpy<2.4 for brian2).
# Safe to re-run: an existing .venv is reused and the package is rebuilt incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and alone, so nothing later pulls a CUDA build of a newer torch.
.venv/bin/python -m pip install -q "torch==2.13.*"
.venv/bin/python -m pip install -q scikit-build-core nanobind
.venv/bin/python -m pip install -q --no-build-isolation -e ".[test]"
