"""Checkpoints restored for evaluation, replicated over the current mesh.

A train.py workdir is restored step by step with Orbax onto an abstract target
built from the stored metadata with this mesh's replicated sharding, so it loads
on any devices whatever mesh saved it. Converted directories and PyTorch files
are read on the host (squeezetime_jax.inference.loading) and placed on the mesh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints import workdir as checkpointing
from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.checkpoints.restore import TRAIN_CONFIG_FILE, is_training_workdir
from squeezetime_jax.interop.conversion import make_model_config
from squeezetime_jax.training import mesh as mesh_lib


@dataclasses.dataclass
class EvalCheckpoint:
    variables: dict[str, Any]  # {'params', 'batch_stats'}, replicated on the mesh
    model_config: ml_collections.ConfigDict
    step: int | None  # the training step, for workdirs
    source: str  # what was restored, for reports
    # class names and clip settings stored with the weights
    metadata: metadata_lib.Metadata = dataclasses.field(
        default_factory=metadata_lib.Metadata
    )


def training_steps(workdir: str) -> list[int]:
    """Complete checkpoint steps of a workdir (Orbax renames a step to its number last)."""
    root = checkpointing.checkpoint_dir(workdir)
    if not os.path.isdir(root):
        return []
    return sorted(int(name) for name in os.listdir(root) if name.isdigit())


def read_train_config(workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, TRAIN_CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config["model"]  # noqa: B018 -- must exist
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path}: cannot read the training config ({type(error).__name__}: {error})"
        ) from None
    return config


def _replicate(tree: Any, mesh) -> Any:
    """Host arrays (identical on every process) as global arrays replicated on `mesh`."""
    sharding = mesh_lib.replicated(mesh)

    def place(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

    return jax.tree.map(place, tree)


def _restore_workdir(workdir: str, step: int | None, mesh) -> EvalCheckpoint:
    model_config = make_model_config(read_train_config(workdir)["model"])
    steps = training_steps(workdir)
    if not steps:
        raise CheckpointError(
            f"{checkpointing.checkpoint_dir(workdir)}: no complete checkpoint"
        )
    step = steps[-1] if step is None else step
    if step not in steps:
        raise CheckpointError(
            f"{checkpointing.checkpoint_dir(workdir)}: no checkpoint for step "
            f"{step}; available: {steps}"
        )
    item = os.path.join(
        checkpointing.checkpoint_dir(workdir), str(step), checkpointing.STATE_ITEM
    )
    handler = ocp.StandardCheckpointHandler()
    try:
        stored = handler.metadata(epath.Path(item))
    finally:
        handler.close()
    stored = getattr(stored, "tree", stored)
    replicated = mesh_lib.replicated(mesh)
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), stored
    )
    state, step = checkpointing.restore_state_only(workdir, step, target)
    variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
    stored = metadata_lib.read_workdir(workdir).checked(model_config, workdir)
    return EvalCheckpoint(variables, model_config, step, f"{workdir} step {step}", stored)


def restore_for_eval(path: str, mesh, step: int | None = None) -> EvalCheckpoint:
    """Variables, model config and metadata of a workdir, converted directory, .pth
    file or released checkpoint's name."""
    from squeezetime_jax.interop import release

    name = os.fspath(path) if release.is_reference(path) else None
    path = os.path.abspath(os.fspath(path))
    if name is None and not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or directory")
    if name is None and is_training_workdir(path):
        return _restore_workdir(path, step, mesh)
    if step is not None:
        raise CheckpointError(f"{path}: a step can only be chosen in a train.py workdir")
    from squeezetime_jax.inference.loading import (
        load_variables,
    )  # torch only for .pth files

    conversion = load_variables(name or path)
    variables = {
        "params": conversion.variables["params"],
        "batch_stats": conversion.variables.get("batch_stats") or {},
    }
    return EvalCheckpoint(
        _replicate(jax.device_get(variables), mesh),
        conversion.config,
        None,
        name or path,
        conversion.metadata,
    )
