"""The conversion table between PyTorch state_dict entries and Flax variables.

Pure numpy, no torch. Module names mirror the release: a PyTorch Sequential index
`.<digit>` is `_<digit>` in Flax (`layer2.0.downsample.1` <-> `layer2_0/downsample_1`);
the top-level `backbone.net` <-> `backbone` and `cls_head.fc_cls` <-> `fc_cls`.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from squeezetime_jax.models.squeezetime import HEAD

# Flax top-level module <-> PyTorch key prefix.
TOP_LEVEL = {"backbone": "backbone.net", HEAD: "cls_head.fc_cls"}

# (collection, Flax leaf) <-> PyTorch leaf. `kernel` and `scale` both map to `weight`;
# the direction torch -> Flax tells them apart by rank (see `torch_leaf_to_flax`).
_FLAX_TO_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("params", "pos_embed"): "pos_embed",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
# Present in PyTorch BatchNorm state only; unused at inference, regenerated on export.
NUM_BATCHES_TRACKED = "num_batches_tracked"

_INDEXED = re.compile(r"^(.+)_(\d+)$")

FlatPath = tuple[str, ...]  # (collection, module, ..., leaf)


def flax_path_to_torch_key(path: FlatPath) -> str:
    """('params', 'backbone', 'layer2_0', 'downsample_0', 'kernel') -> torch key."""
    collection, top, *modules, leaf = path
    if top not in TOP_LEVEL:
        raise KeyError(f"no PyTorch name for Flax variable {'/'.join(path)}")
    torch_leaf = _FLAX_TO_TORCH_LEAF.get((collection, leaf))
    if torch_leaf is None:
        raise KeyError(f"no PyTorch name for Flax variable {'/'.join(path)}")
    names = [TOP_LEVEL[top]] + [_INDEXED.sub(r"\1.\2", m) for m in modules] + [torch_leaf]
    return ".".join(names)


def torch_key_to_flax_path(key: str, ndim: int) -> FlatPath | None:
    """Inverse of `flax_path_to_torch_key`; None for names outside the table."""
    for top, prefix in TOP_LEVEL.items():
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1 :].split(".")
            break
    else:
        return None
    *segments, leaf = rest
    modules: list[str] = []
    for seg in segments:
        if seg.isdigit():
            if not modules:
                return None
            modules[-1] = f"{modules[-1]}_{seg}"
        else:
            modules.append(seg)
    collection, flax_leaf = torch_leaf_to_flax(leaf, ndim)
    if flax_leaf is None:
        return None
    return (collection, top, *modules, flax_leaf)


def torch_leaf_to_flax(leaf: str, ndim: int) -> tuple[str, str | None]:
    if leaf == "weight":
        # Conv (4-D) and dense (2-D) weights are kernels; 1-D weights are BatchNorm scales.
        return "params", ("scale" if ndim == 1 else "kernel")
    if leaf == "bias":
        return "params", "bias"
    if leaf == "pos_embed":
        return "params", "pos_embed"
    if leaf == "running_mean":
        return "batch_stats", "mean"
    if leaf == "running_var":
        return "batch_stats", "var"
    return "params", None


def torch_array_to_flax(path: FlatPath, value: np.ndarray) -> np.ndarray:
    """Layout change for one array, PyTorch -> Flax."""
    leaf = path[-1]
    if leaf == "kernel" and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO (depthwise: O,1 -> 1,O)
    if leaf == "kernel" and value.ndim == 2:
        return np.transpose(value)  # (out, in) -> (in, out)
    if leaf == "pos_embed":
        return np.transpose(value, (0, 2, 3, 1))  # (1, C, P, P) -> (1, P, P, C)
    return value


def flax_array_to_torch(path: FlatPath, value: np.ndarray) -> np.ndarray:
    """Layout change for one array, Flax -> PyTorch."""
    leaf = path[-1]
    if leaf == "kernel" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if leaf == "kernel" and value.ndim == 2:
        return np.transpose(value)
    if leaf == "pos_embed":
        return np.transpose(value, (0, 3, 1, 2))
    return value


def flatten(tree: Mapping, prefix: FlatPath = ()) -> dict[FlatPath, object]:
    """Nested dict -> {path tuple: leaf}."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix + (name,)))
        else:
            flat[prefix + (name,)] = value
    return flat


def unflatten(flat: Mapping[FlatPath, object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return tree
