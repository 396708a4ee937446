#!/usr/bin/env bash
# The built-in demo job: creates or refreshes ./.venv, then generates a small video
# dataset whose classes differ only in temporal order, prepares it, trains SqueezeTime
# (configs/demo.py), evaluates it (10 clips x 3 crops, and with shuffled frames),
# converts it to PyTorch and writes a report. No download of data; about 5 minutes on 2 CPU
# cores once .venv is installed (BENCHMARKS.md, "Demo").
#
#   bash scripts/demo.sh [WORKDIR] [--quick]     (WORKDIR defaults to ./demo_output)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
WORKDIR="demo_output"
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --*) ARGS+=("$arg") ;;
    *) WORKDIR="$arg" ;;
  esac
done
.venv/bin/python -m squeezetime_jax.demo --workdir "$WORKDIR" "${ARGS[@]}"
echo "The demo's output went to $(cd "$WORKDIR" && pwd) (report in $WORKDIR/report/)."
