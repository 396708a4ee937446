"""Checks of a training config that run before anything is compiled."""

from __future__ import annotations

import jax
import ml_collections

from squeezetime_jax.models import STAGE_SIZES


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises one ValueError line for the first problem found."""

    def fail(message: str):
        raise ValueError(f"config error: {message}")

    if config.batch_size <= 0:
        fail(f"batch_size must be positive, got {config.batch_size}")
    if config.batch_size % jax.device_count():
        fail(
            f"batch_size {config.batch_size} is not divisible by the {jax.device_count()} devices"
        )
    if config.batch_size % jax.process_count():
        fail(
            f"batch_size {config.batch_size} is not divisible by the {jax.process_count()} processes"
        )
    if config.eval_batch_size % jax.device_count():
        fail(
            f"eval_batch_size {config.eval_batch_size} is not divisible by the "
            f"{jax.device_count()} devices"
        )
    if config.model.depth not in STAGE_SIZES:
        fail(f"model.depth must be one of {sorted(STAGE_SIZES)}, got {config.model.depth}")
    if config.model.num_frames != config.data.num_frames:
        fail(
            f"model.num_frames ({config.model.num_frames}) differs from data.num_frames "
            f"({config.data.num_frames})"
        )
    if config.schedule.name not in ("warmup_cosine", "step", "constant"):
        fail(
            f"schedule.name must be warmup_cosine, step or constant, got {config.schedule.name!r}"
        )
    if config.get("total_steps") is None and config.get("total_epochs") is None:
        fail("set total_steps or total_epochs")
    if config.log_every_steps <= 0 or config.checkpoint_every_steps <= 0:
        fail("log_every_steps and checkpoint_every_steps must be positive")
    if config.model.dtype not in ("float32", "bfloat16"):
        fail(f"model.dtype must be float32 or bfloat16, got {config.model.dtype!r}")
