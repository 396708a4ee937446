"""Writes a run's report: training curves, confusion matrices or most confused pairs.

    python -m squeezetime_jax.report WORKDIR [--eval_dir DIR ...] [--out DIR]

WORKDIR is a train.py workdir (metrics.jsonl; eval outputs under eval/PROTOCOL/step_N,
each protocol's latest step) or an eval.py --output_dir. Writes PNG figures and
report.md into WORKDIR/report (or --out). With more than --matrix_classes classes
(Kinetics-400) the report shows the most confused pairs and per-class accuracy
instead of a matrix. Needs matplotlib (`pip install -e '.[report]'`).
"""

from __future__ import annotations

import sys

from absl import app, flags

_EVAL_DIRS = flags.DEFINE_multi_string(
    "eval_dir",
    None,
    "Eval output directory (metrics.json, predictions.npz); repeatable. Default: "
    "those under WORKDIR/eval.",
)
_OUT = flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/report).")
_MATRIX = flags.DEFINE_integer(
    "matrix_classes", 30, "Largest class count drawn as a confusion matrix."
)
_PAIRS = flags.DEFINE_integer("top_pairs", 20, "Most confused pairs listed.")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m squeezetime_jax.report WORKDIR [flags]")
    from squeezetime_jax.evaluation import report

    try:
        written = report.write_report(
            argv[1],
            out_dir=_OUT.value,
            eval_dirs=_EVAL_DIRS.value,
            matrix_classes=_MATRIX.value,
            top_pairs=_PAIRS.value,
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written.figures + [written.markdown]:
        print(f"wrote {path}")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
