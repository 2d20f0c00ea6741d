#!/usr/bin/env bash
# The default test suite (CPU; slow and GPU tests excluded by pyproject's addopts).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
ruff check src tests
python -m pytest -q "$@"
