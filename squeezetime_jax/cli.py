"""What every command line of the package shares: absl flags, one spelling.

Flags are spelled with underscores (`--drop_head`, `--short_side`), as absl and
ml_collections' `--config.field=value` are. Hyphenated long flags (`--drop-head`),
the spelling some commands used before, are accepted as aliases.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags


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


class UsageError(ValueError):
    """Bad flags or arguments: the message says which."""


class Flags:
    """The absl flags of one `python -m squeezetime_jax.<tool>` command, in a FlagValues
    of its own, so that several commands can be imported (and their `main(argv)`
    called) in one process without their flags colliding or leaking between calls.

        FLAGS = cli.Flags("python -m squeezetime_jax.tool", __doc__)
        OUT = FLAGS.string("out", None, "Where results go.", required=True)
        def main(argv=None):
            positional = FLAGS.parse(argv)   # --help prints every flag and exits 0
    """

    def __init__(self, prog: str, doc: str | None):
        self.prog = prog
        self.doc = (doc or "").strip()
        self.values = flags.FlagValues()
        self._required: list[str] = []

    def _define(self, define, name, default, help_text, required=False, **kwargs):
        holder = define(name, default, help_text, flag_values=self.values, **kwargs)
        if required:
            self._required.append(name)
        return holder

    def string(self, name, default, help_text, **kwargs):
        return self._define(flags.DEFINE_string, name, default, help_text, **kwargs)

    def integer(self, name, default, help_text, **kwargs):
        return self._define(flags.DEFINE_integer, name, default, help_text, **kwargs)

    def float(self, name, default, help_text, **kwargs):
        return self._define(flags.DEFINE_float, name, default, help_text, **kwargs)

    def boolean(self, name, default, help_text, **kwargs):
        return self._define(flags.DEFINE_bool, name, default, help_text, **kwargs)

    def enum(self, name, default, choices, help_text, **kwargs):
        return self._define(
            lambda n, d, h, **kw: flags.DEFINE_enum(n, d, choices, h, **kw),
            name,
            default,
            help_text,
            **kwargs,
        )

    def multi_string(self, name, default, help_text, **kwargs):
        return self._define(flags.DEFINE_multi_string, name, default, help_text, **kwargs)

    def help(self) -> str:
        lines = [self.doc, "", "flags:"]
        for name in sorted(self.values):
            flag = self.values[name]
            if flag.name != name:  # a short alias
                continue
            spelling = f"--[no]{name}" if flag.boolean else f"--{name}"
            required = " (required)" if name in self._required else ""
            lines.append(f"  {spelling}: {flag.help}{required}")
            if flag.default is not None and not required:
                lines.append(f"    (default: {flag.default_as_str})")
        return "\n".join(lines)

    def parse(
        self, argv: Sequence[str] | None = None, known_only: bool = False
    ) -> list[str]:
        """Parses `argv` (default sys.argv[1:]); returns the positional arguments,
        and with `known_only` the flags this command does not define too (in order;
        for commands that hand them on, e.g. to Beam).

        Flags not given take their defaults, whatever an earlier call parsed.
        """
        args = underscored_flags(sys.argv[1:] if argv is None else argv)
        if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in args):
            print(self.help())
            raise SystemExit(0)
        self.values.unparse_flags()
        try:
            positional = self.values([self.prog] + args, known_only=known_only)[1:]
        except flags.Error as error:
            raise UsageError(f"{self.prog}: {error}") from None
        missing = [name for name in self._required if self.values[name].value is None]
        if missing:
            raise UsageError(
                f"{self.prog}: missing required flag(s): "
                + ", ".join(f"--{name}" for name in missing)
            )
        return positional


def exit_on_usage_error(main: Callable[[Sequence[str] | None], int]):
    """Wraps a command's main: a UsageError prints its message and returns 2."""

    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except UsageError as error:
            print(f"error: {error}\n(--help lists the flags)", file=sys.stderr)
            return 2

    wrapped.__doc__ = main.__doc__
    return wrapped
