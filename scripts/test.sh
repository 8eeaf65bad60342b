#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest.
# Under CI (CI=true) the set-up runs with an empty pip cache, as on a fresh machine, so a wheel
# cached by an earlier install cannot hide a broken one, and the scalar-only build of the C++
# kernels (no x86 intrinsics, as on arm64) is built and tested too (tests/test_scalar_build.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = "true" ]; then export PIP_NO_CACHE_DIR=1 NEUROSIM_SCALAR_BUILD=1; fi
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
