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
from typing import Sequence

from squeezetime_jax import cli

FLAGS = cli.Flags("python -m squeezetime_jax.report", __doc__)
EVAL_DIRS = FLAGS.multi_string(
    "eval_dir",
    None,
    "Eval output directory (metrics.json, predictions.npz); repeatable. Default: "
    "those under WORKDIR/eval.",
)
OUT = FLAGS.string("out", None, "Output directory (default: WORKDIR/report).")
MATRIX_CLASSES = FLAGS.integer(
    "matrix_classes", 30, "Largest class count drawn as a confusion matrix."
)
TOP_PAIRS = FLAGS.integer("top_pairs", 20, "Most confused pairs listed.")


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    positional = FLAGS.parse(argv)
    if len(positional) != 1:
        raise cli.UsageError(f"expected one WORKDIR, got {positional or 'none'}")
    from squeezetime_jax.evaluation import report

    try:
        written = report.write_report(
            positional[0],
            out_dir=OUT.value,
            eval_dirs=EVAL_DIRS.value,
            matrix_classes=MATRIX_CLASSES.value,
            top_pairs=TOP_PAIRS.value,
        )
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in written.figures + [written.markdown]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
