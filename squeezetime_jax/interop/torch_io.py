"""Reading and writing PyTorch checkpoint files (imports torch)."""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch

from squeezetime_jax import files
from squeezetime_jax.checkpoints.errors import CheckpointError

_WRAPPERS = ("state_dict", "model")
_PREFIX = "module."


class _Opaque:
    """Stands in for any non-tensor object in a checkpoint's metadata (never executed)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()


class _MetadataTolerantPickle:
    """A pickle module for torch.load that rebuilds tensors and nothing else.

    mmaction2 checkpoints carry training metadata (mmengine message hubs, numpy scalars)
    that torch.load(weights_only=True) refuses. Instead of unpickling with full trust,
    every global outside a small allow-list becomes an inert `_Opaque`, so no code from
    the file runs; the state_dict's tensors are rebuilt as usual.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        (
            "torch._utils",
            "_rebuild_parameter_with_state",
        ): torch._utils._rebuild_parameter_with_state,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
    }

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            allowed = _MetadataTolerantPickle._ALLOWED.get((module, name))
            if allowed is not None:
                return allowed
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
            return _Opaque

    @staticmethod
    def load(file, **kwargs):
        return _MetadataTolerantPickle.Unpickler(file, **kwargs).load()


def _torch_load(data: bytes):
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as safe_error:
        # Unknown metadata classes: retry with tensors-only unpickling (see above).
        try:
            return torch.load(
                io.BytesIO(data),
                map_location="cpu",
                weights_only=False,
                pickle_module=_MetadataTolerantPickle,
            )
        except Exception:
            raise safe_error from None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a .pth/.pt checkpoint on CPU into {key: numpy array}.

    Accepts a bare state_dict, {'state_dict': ...} or {'model': ...}, with or without a
    `module.` (DataParallel) prefix on every key.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], object]:
    """(state_dict as in `read_state_dict`, the file's `meta` entry or None)."""
    path = os.fspath(path)
    if not files.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = _torch_load(files.read_bytes(path))
    except Exception as error:  # a damaged file fails anywhere inside the unpickler
        lines = str(error).strip().splitlines()
        detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or "
            f"another format; {detail})"
        ) from None
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return extract_state_dict(obj, path), meta


def extract_state_dict(obj, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """Unwraps a loaded checkpoint object into {key: numpy array}."""
    if isinstance(obj, Mapping):
        for wrapper in _WRAPPERS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source}: not a state_dict (expected a mapping of tensors, "
            f"or one under 'state_dict' or 'model'); got {type(obj).__name__}"
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{source}: not a state_dict, entries that are not tensors: "
            + ", ".join(not_tensors[:10])
        )
    keys = list(obj)
    if all(k.startswith(_PREFIX) for k in keys):
        keys = [k[len(_PREFIX) :] for k in keys]
    return {k: v.detach().cpu().numpy() for k, v in zip(keys, obj.values())}


def write_checkpoint(
    path: str | os.PathLike,
    state_dict: Mapping[str, np.ndarray],
    meta: Mapping | None = None,
    plain: bool = False,
) -> None:
    """Writes {'state_dict': ..., 'meta': ...} (or the bare state_dict if plain)."""
    tensors = OrderedDict(
        (k, torch.from_numpy(np.array(v, copy=True, order="C")))
        for k, v in state_dict.items()
    )
    obj = tensors if plain else {"state_dict": tensors, "meta": dict(meta or {})}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    files.write_bytes(path, buffer.getvalue())
