"""python -m squeezetime_jax.demo [--workdir DIR] [--quick]: the built-in demo job."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from squeezetime_jax.demo.run import StageError, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m squeezetime_jax.demo",
        description="Generates videos whose classes differ only in temporal order, prepares "
        "them, trains SqueezeTime (configs/demo.py), evaluates it with the 10x3 test "
        "protocol and with shuffled frames, converts it to PyTorch and writes a report.",
    )
    parser.add_argument(
        "--workdir",
        default="demo_output",
        help="where everything goes (default: ./demo_output)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 32 tiny videos and 6 training steps (about a minute)",
    )
    args = parser.parse_args(argv)
    if os.path.isfile(args.workdir):
        parser.exit(2, f"error: --workdir {args.workdir} is a file\n")
    try:
        run_demo(args.workdir, quick=args.quick)
    except StageError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
