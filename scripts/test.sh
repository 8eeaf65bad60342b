#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest.
# Under CI (CI=true) the set-up runs with an empty pip cache, as on a fresh machine, so a wheel
# cached by an earlier install cannot hide a broken one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${CI:-}" = "true" ]; then export PIP_NO_CACHE_DIR=1; fi
scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
