"""Quiet logs by default: absl and library INFO records off unless --verbose_logs.

Orbax, JAX and absl itself log each checkpoint save, restore and compile at INFO;
in a training log those lines outnumber the trainer's own. Entry points call
`define_flags()` at import and `configure_from_flags()` in main: without
--verbose_logs only WARNING and above are logged (the trainer's progress lines are
printed, not logged). An explicit --verbosity / -v wins over both.
"""

from __future__ import annotations

import logging as std_logging

from absl import flags, logging

# Python loggers of the libraries whose INFO records fill a run's log.
NOISY_LOGGERS = ("absl", "orbax", "jax", "etils", "grain", "tensorstore")


def define_flags() -> None:
    if "verbose_logs" not in flags.FLAGS:
        flags.DEFINE_bool(
            "verbose_logs",
            False,
            "Keep INFO records of absl, Orbax and JAX (checkpoint saves, restores, "
            "compiles); by default only warnings and errors are logged.",
        )


def quiet(level: int = logging.WARNING) -> None:
    """Only records at `level` and above from absl and the NOISY_LOGGERS."""
    logging.set_verbosity(level)
    for name in NOISY_LOGGERS:
        std_logging.getLogger(name).setLevel(
            std_logging.WARNING if level >= logging.WARNING else std_logging.INFO
        )


def configure_from_flags() -> None:
    fl = flags.FLAGS
    if fl["verbosity"].present or fl.verbose_logs:
        return
    quiet()
