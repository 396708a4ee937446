"""The layout of a train.py workdir, and its Orbax checkpoints.

    WORKDIR/config.json                  the training ConfigDict (as JSON)
    WORKDIR/checkpoints/<step>/state     the TrainState pytree (Orbax StandardSave)
    WORKDIR/metrics.jsonl, tensorboard/  written by the trainer's metric writer

Orbax writes a step to a temporary directory and renames it to its number when
complete, so a run killed mid-save resumes from the previous complete step, and a
step directory named by a number is always whole. Restores go onto an abstract target
carrying the current shardings, so a checkpoint saved on one mesh loads on any other.
The data position is not saved: it is the step (data/global_batches.py), so a run
resumes on any number of hosts. (Checkpoints of earlier versions also hold a `data`
item, per-process Grain positions; it is ignored.)
Every path goes through `squeezetime_jax.files`, so a workdir may be a gs:// URL.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import orbax.checkpoint as ocp

from squeezetime_jax import files
from squeezetime_jax.checkpoints.errors import CheckpointError

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"


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
    """The complete checkpoint steps of a workdir, ascending ([] when there are none).

    Orbax decides what is complete: locally a step directory appears under its
    number only once renamed from a temporary name; on GCS, which has no atomic
    rename, a step is complete once its commit_success.txt exists. Listing
    directory names would count a half-written GCS step.
    """
    root = checkpoint_dir(workdir)
    files.refresh(root)  # steps other processes saved since this one last looked
    if not files.isdir(root):
        return []
    manager = ocp.CheckpointManager(
        root, item_names=(STATE_ITEM,), options=ocp.CheckpointManagerOptions(read_only=True)
    )
    try:
        return sorted(int(step) for step in manager.all_steps())
    finally:
        manager.close()


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
) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_names=(STATE_ITEM,),
        item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler()},
    )


def save(
    manager: ocp.CheckpointManager, step: int, state: Any, force: bool = False
) -> bool:
    args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state)})
    return manager.save(step, args=args, force=force)


def abstract_with_shardings(abstract_tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=sharding
        ),
        abstract_tree,
        shardings,
    )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """Restores the state onto `abstract_state`'s shardings."""
    args = ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardRestore(abstract_state)})
    return manager.restore(step, args=args)[STATE_ITEM]
