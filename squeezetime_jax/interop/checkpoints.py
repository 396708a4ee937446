"""Checkpoint files: PyTorch .pth in and out, and converted (Orbax) directories.

A converted checkpoint directory holds:
  model_config.json  the model ConfigDict (squeezetime_jax.models.build_model input)
  variables/         an Orbax StandardCheckpointer save of {'params', 'batch_stats'}
  conversion.json    where it came from and what the conversion did
It restores on CPU with no accelerator, whatever devices it was written from.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from squeezetime_jax.interop import naming
from squeezetime_jax.interop.conversion import (
    Conversion, expected_variables, from_torch, make_model_config, to_torch)
from squeezetime_jax.interop.errors import CheckpointError, CheckpointMismatchError

CONFIG_FILE = "model_config.json"
VARIABLES_DIR = "variables"
REPORT_FILE = "conversion.json"
FORMAT = "squeezetime_jax.converted/1"


def load_torch_checkpoint(path: str | os.PathLike, config=None, *, drop_head: bool = False,
                          num_classes: int | None = None, seed: int = 0) -> Conversion:
    """Reads a released-layout .pth on CPU and converts it (see `conversion.from_torch`)."""
    read_state_dict = _torch_io(path).read_state_dict
    state_dict = read_state_dict(path)
    return from_torch(state_dict, config, drop_head=drop_head, num_classes=num_classes,
                      source=os.fspath(path), seed=seed)


def save_torch_checkpoint(path: str | os.PathLike, variables, config, *, plain: bool = False,
                          meta: Mapping | None = None) -> "dict[str, np.ndarray]":
    """Writes {'state_dict', 'meta'} (bare state_dict if plain) that the released model
    loads with strict=True. Returns the state_dict written."""
    write_checkpoint = _torch_io(path).write_checkpoint
    state_dict = to_torch(variables, config)
    meta = dict(meta or {})
    meta.setdefault("model_config", json.loads(make_model_config(dict(config)).to_json()))
    meta.setdefault("exported_by", "squeezetime_jax")
    write_checkpoint(path, state_dict, meta, plain=plain)
    return state_dict


def _torch_io(path):
    try:
        from squeezetime_jax.interop import torch_io
    except ImportError as error:
        raise CheckpointError(f"{os.fspath(path)}: PyTorch files need torch ({error}); "
                              "install the torch extra: pip install 'squeezetime_jax[torch]'"
                              ) from None
    return torch_io


def save_converted(directory: str | os.PathLike, conversion: Conversion,
                   source: str | None = None) -> None:
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
        json.dump({"format": FORMAT, "source": source, "notes": conversion.notes}, f, indent=2)
        f.write("\n")


def is_converted_dir(path: str | os.PathLike) -> bool:
    path = os.fspath(path)
    return (os.path.isfile(os.path.join(path, CONFIG_FILE))
            and os.path.isdir(os.path.join(path, VARIABLES_DIR)))


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
        raise CheckpointError(f"{directory}: not a converted checkpoint directory (expected "
                              f"{CONFIG_FILE} and {VARIABLES_DIR}/)")
    config = read_model_config(directory)
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    expected = expected_variables(config)
    target = naming.unflatten({p: jax.ShapeDtypeStruct(s, np.float32, sharding=cpu)
                               for p, s in expected.items()})
    checkpointer = ocp.StandardCheckpointer()
    variables_dir = os.path.join(directory, VARIABLES_DIR)
    try:
        stored = checkpointer.metadata(variables_dir).item_metadata
        _check_stored_tree(directory, stored, expected)
        variables = checkpointer.restore(variables_dir, target)
    except CheckpointError:
        raise
    except Exception as error:  # Orbax/tensorstore errors: name the directory
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{variables_dir}: cannot restore ({type(error).__name__}: "
                              f"{first})") from None
    finally:
        checkpointer.close()
    notes = []
    report = os.path.join(directory, REPORT_FILE)
    if os.path.isfile(report):
        with open(report) as f:
            notes = json.load(f).get("notes", [])
    return Conversion(variables, config, notes)


def _check_stored_tree(directory, stored, expected) -> None:
    """Same strict report as for .pth files, before Orbax's own shape errors."""
    flat = {p: tuple(getattr(m, "shape", ())) for p, m in naming.flatten(dict(stored)).items()}
    missing = ["/".join(p) for p in expected if p not in flat]
    unexpected = ["/".join(p) for p in flat if p not in expected]
    wrong = [f"{'/'.join(p)} (stored {s}, model {expected[p]})"
             for p, s in flat.items() if p in expected and s != expected[p]]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(directory, missing, unexpected, wrong)
