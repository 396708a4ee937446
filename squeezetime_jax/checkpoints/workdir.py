"""The layout of a train.py workdir, and its Orbax checkpoints.

    WORKDIR/config.json                  the training ConfigDict (as JSON)
    WORKDIR/checkpoints/<step>/state     the TrainState pytree (Orbax StandardSave)
    WORKDIR/checkpoints/<step>/data      each process's Grain iterator position
    WORKDIR/metrics.jsonl, tensorboard/  written by the trainer's metric writer

Orbax writes a step to a temporary directory and renames it to its number when
complete, so a run killed mid-save resumes from the previous complete step, and a
step directory named by a number is always whole. Restores go onto an abstract target
carrying the current shardings, so a checkpoint saved on one mesh loads on any other.
Every path goes through `squeezetime_jax.files`, so a workdir may be a gs:// URL.
"""

from __future__ import annotations

import json
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from squeezetime_jax import files
from squeezetime_jax.checkpoints.errors import CheckpointError

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"
DATA_ITEM = "data"


def checkpoint_dir(workdir: files.PathLike) -> str:
    return files.join(workdir, CHECKPOINTS_DIR)


def config_path(workdir: files.PathLike) -> str:
    return files.join(workdir, CONFIG_FILE)


def is_workdir(path: files.PathLike) -> bool:
    """A train.py workdir: its config file beside a checkpoints directory."""
    return files.isfile(config_path(path)) and files.isdir(checkpoint_dir(path))


def write_config(workdir: files.PathLike, config: dict[str, Any]) -> str:
    """Writes the training config (a ConfigDict's `to_dict()`) into the workdir."""
    text = json.dumps(config, indent=2, default=str)  # default: values JSON lacks
    return files.write_text(config_path(workdir), text + "\n")


def read_config(workdir: files.PathLike) -> dict[str, Any]:
    """The training config of a workdir, as a dict; must hold the model settings."""
    path = config_path(workdir)
    try:
        config = json.loads(files.read_text(path))
        if not isinstance(config.get("model"), dict):
            raise KeyError("model")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"{path}: cannot read the training config ({type(error).__name__}: {error})"
        ) from None
    return config


def complete_steps(workdir: files.PathLike) -> list[int]:
    """Steps with a complete checkpoint (Orbax renames a step to its number last)."""
    return sorted(int(n) for n in files.listdir(checkpoint_dir(workdir)) if n.isdigit())


def choose_step(workdir: files.PathLike, step: int | None) -> int:
    """`step` if it has a complete checkpoint, the latest one if `step` is None."""
    steps = complete_steps(workdir)
    if not steps:
        raise CheckpointError(f"{checkpoint_dir(workdir)}: no complete checkpoint")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise CheckpointError(
            f"{checkpoint_dir(workdir)}: no checkpoint for step {step}; available: {steps}"
        )
    return step


def state_item(workdir: files.PathLike, step: int) -> str:
    return files.join(checkpoint_dir(workdir), str(step), STATE_ITEM)


def make_manager(
    workdir: files.PathLike,
    *,
    max_to_keep: int | None = 3,
    async_save: bool = True,
    with_data: bool = True,
) -> ocp.CheckpointManager:
    item_names = (STATE_ITEM, DATA_ITEM) if with_data else (STATE_ITEM,)
    handlers = {STATE_ITEM: ocp.StandardCheckpointHandler()}
    if with_data:
        handlers[DATA_ITEM] = grain.checkpoint.CheckpointHandler()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_names=item_names,
        item_handlers=handlers,
    )


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    data_iterator: Any | None = None,
    force: bool = False,
) -> bool:
    items = {STATE_ITEM: ocp.args.StandardSave(state)}
    if data_iterator is not None:
        items[DATA_ITEM] = grain.checkpoint.CheckpointSave(data_iterator)
    return manager.save(step, args=ocp.args.Composite(**items), force=force)


def abstract_with_shardings(abstract_tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=sharding
        ),
        abstract_tree,
        shardings,
    )


def restore(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_state: Any,
    data_iterator: Any | None = None,
) -> Any:
    """Restores the state onto `abstract_state`'s shardings, and the iterator in place."""
    items = {STATE_ITEM: ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
        items[DATA_ITEM] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored[STATE_ITEM]
