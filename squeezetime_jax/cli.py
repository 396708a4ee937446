"""What every command line of the package shares: absl flags, one spelling.

Flags are spelled with underscores (`--drop_head`, `--short_side`), as absl and
ml_collections' `--config.field=value` are. Hyphenated long flags (`--drop-head`),
the spelling some commands used before, are accepted as aliases.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app


def underscored_flags(args: Sequence[str]) -> list[str]:
    """`--drop-head` -> `--drop_head` (the name only; values and positionals kept)."""
    out = []
    for index, arg in enumerate(args):
        if arg == "--":  # everything after it is positional
            return out + list(args[index:])
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        out.append(arg)
    return out


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None):
    """absl's app.run over `argv` (default sys.argv) with hyphenated aliases accepted."""
    argv = list(sys.argv if argv is None else argv)
    app.run(main, argv=argv[:1] + underscored_flags(argv[1:]))
