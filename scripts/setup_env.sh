#!/usr/bin/env bash
# Creates ./.venv if missing and installs the project with its extras.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
#
#   bash scripts/setup_env.sh          # CPU machine: torch,test,export,demo,beam,gcs
#   bash scripts/setup_env.sh tpu      # Cloud TPU VM: jax[tpu] and gcsfs, no torch
#
# Python 3.11 is required. In tpu mode, when no python3.11 is on the PATH (TPU VM
# images ship 3.10), uv (from PyPI) installs a managed CPython 3.11 and creates
# .venv with it. SQUEEZETIME_EXTRAS overrides the extras of either mode;
# TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) adds PyTorch's
# wheel index, for machines where the plain pin would resolve to a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-cpu}"
case "$MODE" in
  cpu) DEFAULT_EXTRAS="torch,test,export,demo,beam,gcs" ;;
  tpu) DEFAULT_EXTRAS="tpu" ;;
  *) echo "usage: $0 [cpu|tpu]" >&2; exit 2 ;;
esac
EXTRAS="${SQUEEZETIME_EXTRAS:-$DEFAULT_EXTRAS}"
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  if command -v "$PYTHON" >/dev/null 2>&1; then
    echo "[setup] creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
  elif [ "$MODE" = tpu ]; then
    echo "[setup] no $PYTHON here: installing uv and a managed Python 3.11"
    python3 -m pip install --quiet --user uv
    UV="$(python3 -m site --user-base)/bin/uv"
    "$UV" python install 3.11
    "$UV" venv --seed --python 3.11 .venv
  else
    PYTHON=python3
    echo "[setup] creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
  fi
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing squeezetime_jax[$EXTRAS] into .venv (first run takes a few minutes)"
  index_args=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    index_args=(--extra-index-url "$TORCH_INDEX_URL")
  fi
  # torch==2.13.0 is the CPU build here; the pin in pyproject.toml keeps pip from a CUDA one.
  .venv/bin/python -m pip install --quiet "${index_args[@]}" -e ".[$EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
