#!/usr/bin/env bash
# Create .venv and install neurosim with every extra (`.[all,test]`), the C++ kernels built by
# the package build (scikit-build-core + nanobind, in pip's isolated build environment).
# Safe to re-run: an existing .venv is reused and build/ makes the C++ rebuild incremental.
# Works from an empty pip cache (CI runs it with PIP_NO_CACHE_DIR=1; scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade pip
# torch first and alone: the CPU 2.13 build, so nothing later pulls a CUDA build of a newer torch.
pip install -q -c scripts/constraints.txt "torch==2.13.*"
# OpenCV comes as opencv-contrib-python-headless (CSRT/KCF trackers); a plain OpenCV package
# beside it shares cv2/ and breaks both, so an older .venv's plain one goes, with the contrib one
# (reinstalled cleanly below).
if pip show -q opencv-python-headless 2>/dev/null || pip show -q opencv-python 2>/dev/null; then
  pip uninstall -q -y opencv-python-headless opencv-python opencv-contrib-python-headless 2>/dev/null
fi
# Build isolation stays on for every package: sdists such as norse 1.1.0 need their own build
# backend (setuptools_scm), without which they build as version 0.0.0 and pip refuses them.
pip install -q -c scripts/constraints.txt -e ".[all,test]"
