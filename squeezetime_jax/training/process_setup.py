"""The process flags of a training or evaluation job and the set-up they drive.

train.py and eval.py call `define_flags()` at import (absl's global flags: host
memory, log levels, multi-host start-up) and `configure_from_flags()` first thing in
main.
"""

from __future__ import annotations

from squeezetime_jax.runtime import host_memory, log_levels
from squeezetime_jax.training import distributed


def define_flags() -> None:
    distributed.define_flags()
    host_memory.define_flags()
    log_levels.define_flags()


def configure_from_flags() -> None:
    """In the order it must happen: heap settings before JAX creates its CPU backend,
    log levels, then jax.distributed."""
    host_memory.configure_from_flags()
    log_levels.configure_from_flags()
    distributed.initialize_from_flags()
