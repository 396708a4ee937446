"""python -m squeezetime_jax.demo [--workdir DIR] [--quick]: the built-in demo job.

Generates videos whose classes differ only in temporal order, prepares them, trains
SqueezeTime (the demo config), evaluates it with the 10x3 test protocol and with
shuffled frames, converts it to PyTorch and writes a report.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from squeezetime_jax import cli
from squeezetime_jax.demo.run import StageError, run_demo

FLAGS = cli.Flags("python -m squeezetime_jax.demo", __doc__)
WORKDIR = FLAGS.string("workdir", "demo_output", "Where everything goes.")
QUICK = FLAGS.boolean(
    "quick", False, "A smoke run: 32 tiny videos and 6 training steps (about a minute)."
)


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    if positional := FLAGS.parse(argv):
        raise cli.UsageError(f"unexpected arguments: {positional}")
    if os.path.isfile(WORKDIR.value):
        raise cli.UsageError(f"--workdir {WORKDIR.value} is a file")
    try:
        run_demo(WORKDIR.value, quick=QUICK.value)
    except StageError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
