"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    # A raw uint32 key: plain arrays checkpoint and shard like everything else.
    rng: jax.Array

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats}


def create_train_state(
    model, tx, rng: jax.Array, clip_shape: tuple[int, ...]
) -> TrainState:
    """Initializes parameters, statistics and optimizer state (jit this)."""
    init_rng, state_rng = jax.random.split(rng)
    variables = model.init(init_rng, jnp.zeros(clip_shape, jnp.float32), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=state_rng,
    )


def init_train_state(init_fn, rng: jax.Array, shardings: Any) -> TrainState:
    """Runs `init_fn(rng)` jitted onto `shardings`.

    Initialization runs once, so on CPU it is compiled without LLVM's
    optimizations: the threefry draws of every parameter otherwise take XLA's
    CPU backend minutes to optimize, for a program that runs in milliseconds.
    """
    jitted = (
        jax.jit(init_fn) if shardings is None else jax.jit(init_fn, out_shardings=shardings)
    )
    lowered = jitted.lower(rng)
    options = (
        {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    )
    return lowered.compile(compiler_options=options)(rng)
