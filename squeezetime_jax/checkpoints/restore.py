"""Checkpoint files: PyTorch .pth in and out, and converted (Orbax) directories.

A converted checkpoint directory holds:
  model_config.json  the model ConfigDict (squeezetime_jax.models.build_model input)
  variables/         an Orbax StandardCheckpointer save of {'params', 'batch_stats'}
  conversion.json    where it came from and what the conversion did
  metadata.json      class names and clip settings (squeezetime_jax.checkpoints.metadata)
It restores on CPU with no accelerator, whatever devices it was written from. Training
workdirs of train.py (config.json + checkpoints/<step>/state) restore the same way.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints.errors import CheckpointError, CheckpointMismatchError
from squeezetime_jax.interop import naming
from squeezetime_jax.interop.conversion import (
    Conversion,
    expected_variables,
    from_torch,
    make_model_config,
    to_torch,
)

CONFIG_FILE = "model_config.json"
VARIABLES_DIR = "variables"
REPORT_FILE = "conversion.json"
FORMAT = "squeezetime_jax.converted/1"
TRAIN_CONFIG_FILE = "config.json"  # written by train.py next to checkpoints/


def load_torch_checkpoint(
    path: str | os.PathLike,
    config=None,
    *,
    drop_head: bool = False,
    num_classes: int | None = None,
    seed: int = 0,
) -> Conversion:
    """Reads a released-layout .pth on CPU and converts it (see `conversion.from_torch`),
    with the class names and clip settings of its `meta` (see `metadata`)."""
    read_checkpoint = _torch_io(path).read_checkpoint
    state_dict, meta = read_checkpoint(path)
    conversion = from_torch(
        state_dict,
        config,
        drop_head=drop_head,
        num_classes=num_classes,
        source=os.fspath(path),
        seed=seed,
    )
    stored = metadata_lib.from_pth_meta(meta, os.fspath(path))
    if drop_head and stored.class_names:
        stored.class_names = None  # they named the discarded head's classes
    conversion.metadata = stored.checked(conversion.config, os.fspath(path))
    return conversion


def save_torch_checkpoint(
    path: str | os.PathLike,
    variables,
    config,
    *,
    plain: bool = False,
    meta: Mapping | None = None,
    metadata: metadata_lib.Metadata | None = None,
) -> "dict[str, np.ndarray]":
    """Writes {'state_dict', 'meta'} (bare state_dict if plain) that the released model
    loads with strict=True; `metadata` goes into meta. Returns the state_dict written."""
    write_checkpoint = _torch_io(path).write_checkpoint
    state_dict = to_torch(variables, config)
    meta = dict(meta or {})
    if metadata is not None:
        meta.update(metadata_lib.to_pth_meta(metadata))
    meta.setdefault("model_config", json.loads(make_model_config(dict(config)).to_json()))
    meta.setdefault("exported_by", "squeezetime_jax")
    write_checkpoint(path, state_dict, meta, plain=plain)
    return state_dict


def _torch_io(path):
    try:
        from squeezetime_jax.interop import torch_io
    except ImportError as error:
        raise CheckpointError(
            f"{os.fspath(path)}: PyTorch files need torch ({error}); "
            "install the torch extra: pip install 'squeezetime_jax[torch]'"
        ) from None
    return torch_io


def save_converted(
    directory: str | os.PathLike, conversion: Conversion, source: str | None = None
) -> None:
    """Writes a converted checkpoint directory (must not exist or be empty)."""
    directory = os.path.abspath(os.fspath(directory))  # Orbax wants absolute paths
    if os.path.exists(directory) and os.listdir(directory):
        raise CheckpointError(f"{directory}: exists and is not empty")
    os.makedirs(directory, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, VARIABLES_DIR), conversion.variables)
    checkpointer.wait_until_finished()
    checkpointer.close()
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        f.write(conversion.config.to_json(indent=2) + "\n")
    with open(os.path.join(directory, REPORT_FILE), "w") as f:
        json.dump(
            {"format": FORMAT, "source": source, "notes": conversion.notes}, f, indent=2
        )
        f.write("\n")
    metadata_lib.write(directory, conversion.metadata)


def is_converted_dir(path: str | os.PathLike) -> bool:
    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isdir(
        os.path.join(path, VARIABLES_DIR)
    )


def read_model_config(directory: str | os.PathLike) -> ml_collections.ConfigDict:
    path = os.path.join(os.fspath(directory), CONFIG_FILE)
    try:
        with open(path) as f:
            fields = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read the model config: {error}") from None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{path}: expected a JSON object of model settings")
    return make_model_config(fields)


def restore_converted(directory: str | os.PathLike) -> Conversion:
    """Restores a converted checkpoint directory onto the CPU (numpy-backed jax arrays)."""
    directory = os.path.abspath(os.fspath(directory))
    if not is_converted_dir(directory):
        raise CheckpointError(
            f"{directory}: not a converted checkpoint directory (expected "
            f"{CONFIG_FILE} and {VARIABLES_DIR}/)"
        )
    config = read_model_config(directory)
    variables = _restore_on_cpu(os.path.join(directory, VARIABLES_DIR))
    _check_stored_tree(directory, variables, expected_variables(config))
    notes = []
    report = os.path.join(directory, REPORT_FILE)
    if os.path.isfile(report):
        with open(report) as f:
            notes = json.load(f).get("notes", [])
    stored = metadata_lib.read(directory) or metadata_lib.Metadata()
    return Conversion(variables, config, notes, stored.checked(config, directory))


def is_training_workdir(path: str | os.PathLike) -> bool:
    from squeezetime_jax.checkpoints import workdir as checkpointing

    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, TRAIN_CONFIG_FILE)) and os.path.isdir(
        checkpointing.checkpoint_dir(path)
    )


def restore_training_workdir(
    workdir: str | os.PathLike, step: int | None = None
) -> Conversion:
    """params and batch_stats of a train.py workdir's checkpoint (latest step by default)."""
    from squeezetime_jax.checkpoints import workdir as checkpointing

    workdir = os.path.abspath(os.fspath(workdir))
    config_path = os.path.join(workdir, TRAIN_CONFIG_FILE)
    try:
        with open(config_path) as f:
            model_fields = json.load(f)["model"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{config_path}: cannot read the model config ({type(error).__name__}: {error})"
        ) from None
    config = make_model_config(model_fields)
    root = checkpointing.checkpoint_dir(workdir)
    # Orbax renames a step directory to its number only once the save is complete.
    steps = sorted(int(name) for name in os.listdir(root) if name.isdigit())
    if not steps:
        raise CheckpointError(f"{root}: no complete checkpoint")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"{root}: no checkpoint for step {step}; available: {steps}")
    state = _restore_on_cpu(os.path.join(root, str(step), checkpointing.STATE_ITEM))
    variables = {"params": state.get("params"), "batch_stats": state.get("batch_stats")}
    _check_stored_tree(workdir, variables, expected_variables(config))
    stored = metadata_lib.read_workdir(workdir).checked(config, workdir)
    return Conversion(
        variables, config, [f"restored training step {step} of {workdir}"], stored
    )


def _restore_on_cpu(item_dir: str):
    """Restores an Orbax StandardCheckpointer item onto the CPU, whatever devices (and
    shardings) wrote it, using the stored metadata as the target."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    # The handler, not a Checkpointer: an item inside a CheckpointManager step has no
    # checkpoint-level metadata file of its own.
    handler = ocp.StandardCheckpointHandler()
    try:
        stored = handler.metadata(epath.Path(item_dir))
        stored = getattr(stored, "tree", stored)
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu), stored
        )
        return handler.restore(epath.Path(item_dir), args=ocp.args.StandardRestore(target))
    except Exception as error:  # Orbax/tensorstore errors: name the directory
        lines = str(error).strip().splitlines()
        raise CheckpointError(
            f"{item_dir}: cannot restore ({type(error).__name__}"
            f"{': ' + lines[0] if lines else ''})"
        ) from None
    finally:
        handler.close()


def _check_stored_tree(directory, stored, expected) -> None:
    """Same strict report as for .pth files, before Orbax's own shape errors."""
    flat = {p: tuple(np.shape(v)) for p, v in naming.flatten(dict(stored)).items()}
    missing = ["/".join(p) for p in expected if p not in flat]
    unexpected = ["/".join(p) for p in flat if p not in expected]
    wrong = [
        f"{'/'.join(p)} (stored {s}, model {expected[p]})"
        for p, s in flat.items()
        if p in expected and s != expected[p]
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(directory, missing, unexpected, wrong)
