#!/usr/bin/env bash
# Sets up .venv (if needed), checks formatting and lint (ruff), and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# The TPU compiler for the TPU-compile tests, kept outside the environment's packages:
# with libtpu importable, every JAX process would probe for TPU chips at start-up.
LIBTPU_VERSION=$(sed -n 's/^tpu-compile = \["libtpu==\(.*\)"\]$/\1/p' pyproject.toml)
LIBTPU_DIR=".venv/libtpu-$LIBTPU_VERSION"
if [ ! -f "$LIBTPU_DIR/libtpu/libtpu.so" ]; then
  echo "[setup] installing libtpu==$LIBTPU_VERSION into $LIBTPU_DIR (the TPU compiler for tests)"
  .venv/bin/python -m pip install --quiet --no-deps --target "$LIBTPU_DIR" "libtpu==$LIBTPU_VERSION"
fi
export TPU_LIBRARY_PATH="$PWD/$LIBTPU_DIR/libtpu/libtpu.so"
.venv/bin/ruff format --check --quiet .
.venv/bin/ruff check --quiet .
# Two pytest workers (pytest-xdist), each taking whole test files: most tests spend
# their time in single-threaded compiles, subprocess start-ups and waits, so two
# share two cores well. PYTEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
