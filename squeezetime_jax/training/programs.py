"""The jitted programs of training and evaluation, built for a mesh.

One place builds them, so that the trainer, the evaluator and the ahead-of-time
compile benchmark (benchmarks/tpu_compile.py) compile the same programs with the
same shardings. The mesh's devices decide the platform: the model's kernels
(`models.kernels`) and the compiler options are those of the devices the program
runs on, which need not be the host's (a TPU topology compiled from a CPU host).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import ml_collections
from jax.sharding import Mesh

from squeezetime_jax.inference.model import predict_step
from squeezetime_jax.models import build_model
from squeezetime_jax.runtime.compile_options import compiler_options
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training import optim
from squeezetime_jax.training.state import create_train_state
from squeezetime_jax.training.step import train_step


@dataclasses.dataclass
class TrainProgram:
    model: Any
    tx: Any
    schedule: Callable[[jax.Array], jax.Array]
    init_fn: Callable[[jax.Array], Any]  # rng -> TrainState
    abstract_state: Any  # TrainState of ShapeDtypeStructs
    state_shardings: Any
    step: Any  # jitted (state, batch) -> (state, metrics); donates the state


def train_program(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    total_steps: int,
    steps_per_epoch: int,
) -> TrainProgram:
    """The model, optimizer, state shardings and jitted train step for `mesh`."""
    platform = mesh_lib.platform(mesh)
    model = build_model(config.model, platform=platform)
    schedule = optim.make_schedule(config, config.batch_size, total_steps, steps_per_epoch)
    tx = optim.make_optimizer(config, schedule)
    size = config.data.train.crop_size
    clip_shape = (1, config.model.num_frames, size, size, 3)
    init_fn = functools.partial(create_train_state, model, tx, clip_shape=clip_shape)
    abstract_state = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
    state_shardings = mesh_lib.state_shardings(mesh, abstract_state, config.shard_params)
    step = jax.jit(
        functools.partial(
            train_step,
            model=model,
            tx=tx,
            schedule=schedule,
            crop_size=config.data.train.crop_size,
        ),
        in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh)),
        out_shardings=(state_shardings, mesh_lib.replicated(mesh)),
        donate_argnums=0,
        compiler_options=compiler_options(platform),
    )
    return TrainProgram(model, tx, schedule, init_fn, abstract_state, state_shardings, step)


def predict_program(model, mesh: Mesh):
    """The jitted inference step (variables, batch) -> logits, sharded like the batch."""
    return jax.jit(
        functools.partial(predict_step, model=model),
        out_shardings=mesh_lib.batch_sharding(mesh),
        compiler_options=compiler_options(mesh_lib.platform(mesh)),
    )
