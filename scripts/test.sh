#!/usr/bin/env bash
# Sets up .venv (if needed), checks formatting and lint (ruff), and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff format --check --quiet .
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q "$@"
