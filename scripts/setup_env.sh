#!/usr/bin/env bash
# Creates ./.venv if missing and installs the project with its extras.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${SQUEEZETIME_EXTRAS:-torch,test,export,demo,beam}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing squeezetime_jax[$EXTRAS] into .venv (first run takes a few minutes)"
  # torch==2.13.0 is the CPU build; the pin in pyproject.toml keeps pip from a CUDA one.
  .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
