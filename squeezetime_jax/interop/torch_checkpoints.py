"""PyTorch checkpoint files in the release's layout, read into and written from Flax
variables (conversion by `conversion`, file I/O by `torch_io`, which imports torch)."""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.interop.conversion import (
    Conversion,
    from_torch,
    make_model_config,
    to_torch,
)

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def load_torch_checkpoint(
    path: str | os.PathLike,
    config=None,
    *,
    drop_head: bool = False,
    num_classes: int | None = None,
    seed: int = 0,
) -> Conversion:
    """Reads a released-layout .pth on CPU and converts it (see `conversion.from_torch`),
    with the class names and clip settings of its `meta` (checkpoints.metadata)."""
    state_dict, meta = _torch_io(path).read_checkpoint(path)
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
    state_dict = to_torch(variables, config)
    meta = dict(meta or {})
    if metadata is not None:
        meta.update(metadata_lib.to_pth_meta(metadata))
    meta.setdefault("model_config", json.loads(make_model_config(dict(config)).to_json()))
    meta.setdefault("exported_by", "squeezetime_jax")
    _torch_io(path).write_checkpoint(path, state_dict, meta, plain=plain)
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
