"""Orbax checkpoints of the train state and the Grain iterator, saved together.

A checkpoint step directory holds two items: `state` (the TrainState pytree) and
`data` (each process's Grain iterator position). Orbax writes a step to a
temporary directory and renames it when complete, so a run killed mid-save
resumes from the previous complete step. Restores go onto an abstract target
carrying the current shardings, so a checkpoint saved on one mesh loads on any
other.
"""

from __future__ import annotations

from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from squeezetime_jax import files

STATE_ITEM = "state"
DATA_ITEM = "data"


def checkpoint_dir(workdir: str) -> str:
    """workdir/checkpoints: absolute for a local workdir, a URL left as it is."""
    return files.join(workdir, "checkpoints")


def make_manager(
    workdir: str,
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


def complete_steps(workdir: str) -> list[int]:
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


def restore_state_only(
    directory: str, step: int | None, abstract_state: Any
) -> tuple[Any, int]:
    """The train state of a training workdir's checkpoint (latest if `step` is None)."""
    manager = ocp.CheckpointManager(
        checkpoint_dir(directory),
        item_names=(STATE_ITEM,),
        options=ocp.CheckpointManagerOptions(read_only=True),
    )
    available = manager.all_steps()
    if not available:
        raise FileNotFoundError(f"no complete checkpoint under {checkpoint_dir(directory)}")
    if step is None:
        step = max(available)
    elif step not in available:
        raise FileNotFoundError(
            f"no checkpoint for step {step} under {checkpoint_dir(directory)};"
            f" available: {sorted(available)}"
        )
    items = {STATE_ITEM: ocp.args.StandardRestore(abstract_state)}
    return manager.restore(step, args=ocp.args.Composite(**items))[STATE_ITEM], step
