"""Two-way conversion between released-layout PyTorch state_dicts and Flax variables.

Table-driven (see `naming`) and strict: the result is compared, key by key and shape
by shape, with the variable tree the Flax model expects (`jax.eval_shape` of its init),
and every mismatch is reported at once in a `CheckpointMismatchError`. A checkpoint
with another number of classes loads only with `drop_head=True`, which re-initializes
the head as released (normal(0.01) weights, zero bias) and says so in the notes.

Works on numpy arrays; torch is needed only to read or write .pth files.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from squeezetime_jax.checkpoints.errors import CheckpointError, CheckpointMismatchError
from squeezetime_jax.checkpoints.metadata import Metadata
from squeezetime_jax.interop import naming
from squeezetime_jax.interop.infer import infer_model_config
from squeezetime_jax.models import build_model
from squeezetime_jax.models import model_config as default_model_config

Variables = dict  # {'params': ..., 'batch_stats': ...}
_EXPECTED_CACHE: dict[str, dict] = {}
# Input size for shape inference only: the variables do not depend on it.
_PROBE_SIZE = 64


@dataclasses.dataclass
class Conversion:
    """A converted checkpoint: Flax variables, the model config, what was done, and the
    class names and clip settings that travel with the weights."""

    variables: Variables
    config: ml_collections.ConfigDict
    notes: list[str] = dataclasses.field(default_factory=list)
    metadata: Metadata = dataclasses.field(default_factory=Metadata)


def make_model_config(fields: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A full model ConfigDict from the given fields (others keep their defaults)."""
    known = default_model_config()
    return default_model_config(**{k: v for k, v in fields.items() if k in known})


def expected_variables(config: ml_collections.ConfigDict) -> dict[naming.FlatPath, tuple]:
    """{flat path: shape} of the variables the Flax model built from `config` holds."""
    key = config.to_json(sort_keys=True)
    if key not in _EXPECTED_CACHE:
        model = build_model(config)
        probe = jnp.zeros((1, config.num_frames, _PROBE_SIZE, _PROBE_SIZE, 3), jnp.float32)
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        abstract = jax.eval_shape(lambda: model.init(rngs, probe, train=False))
        _EXPECTED_CACHE[key] = {
            p: tuple(v.shape) for p, v in naming.flatten(dict(abstract)).items()
        }
    return _EXPECTED_CACHE[key]


def _torch_name(path: naming.FlatPath) -> str:
    try:
        return naming.flax_path_to_torch_key(path)
    except KeyError:
        return "/".join(path)


def init_head(shapes: Mapping[naming.FlatPath, tuple], seed: int = 0) -> dict:
    """The head as released: weight normal(std 0.01), bias zero."""
    kernel_shape = shapes[("params", naming.HEAD, "kernel")]
    kernel = 0.01 * jax.random.normal(jax.random.key(seed), kernel_shape, jnp.float32)
    return {
        ("params", naming.HEAD, "kernel"): np.asarray(kernel),
        ("params", naming.HEAD, "bias"): np.zeros(kernel_shape[-1], np.float32),
    }


def from_torch(
    state_dict: Mapping[str, np.ndarray],
    config=None,
    *,
    drop_head: bool = False,
    num_classes: int | None = None,
    source: str = "checkpoint",
    seed: int = 0,
) -> Conversion:
    """Released-layout state_dict ({key: numpy array}) -> Flax variables.

    config: the model config to check against; inferred from the shapes when None.
    drop_head: discard the checkpoint's classifier and initialize a new one with
      `num_classes` outputs (required when the class counts differ).
    """
    if drop_head and num_classes is None:
        raise ValueError("drop_head needs num_classes, the size of the new head")
    notes = []
    if config is None:
        fields = infer_model_config({k: v.shape for k, v in state_dict.items()}, source)
        if fields["num_classes"] is None and not drop_head:
            raise CheckpointMismatchError(
                source,
                missing=["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"],
                hint="Pass drop_head (--drop_head --num_classes N) "
                "to initialize a new head",
            )
        fields["num_classes"] = fields["num_classes"] or num_classes
        config = make_model_config(fields)
        notes.append("model config inferred from the checkpoint: " + _describe(config))
    else:
        config = make_model_config(dict(config))
    if drop_head:
        config.num_classes = int(num_classes)
    elif num_classes is not None and num_classes != config.num_classes:
        raise CheckpointMismatchError(
            source,
            wrong_shape=[
                f"cls_head.fc_cls.weight (has {config.num_classes} classes, "
                f"{num_classes} requested)"
            ],
            hint="Pass drop_head (--drop_head) to replace the head",
        )

    expected = expected_variables(config)
    flat, unexpected = {}, []
    for key, value in state_dict.items():
        if key.endswith("." + naming.NUM_BATCHES_TRACKED):
            continue  # BatchNorm bookkeeping, unused at inference
        path = naming.torch_key_to_flax_path(key, np.ndim(value))
        if path is None or path not in expected:
            unexpected.append(key)
            continue
        flat[path] = naming.torch_array_to_flax(path, np.asarray(value))
    if drop_head:
        dropped = [p for p in flat if p[1] == naming.HEAD]
        for path in dropped:
            del flat[path]
        flat.update(init_head(expected, seed))
        notes.append(
            f"head dropped{' (none in checkpoint)' if not dropped else ''}; "
            f"re-initialized with {config.num_classes} classes "
            "(normal(0.01) weights, zero bias)"
        )
    missing = [_torch_name(p) for p in expected if p not in flat]
    wrong = [
        f"{_torch_name(p)} (checkpoint {_torch_shape(p, v.shape)}, model "
        f"{_torch_shape(p, expected[p])})"
        for p, v in flat.items()
        if tuple(v.shape) != expected[p]
    ]
    if missing or unexpected or wrong:
        hint = ""
        if any(p[1] == naming.HEAD for p in flat if tuple(flat[p].shape) != expected[p]):
            hint = "The head has another number of classes: pass drop_head (--drop_head)"
        raise CheckpointMismatchError(source, missing, unexpected, wrong, hint)
    for path, value in flat.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(
                f"{source}: {_torch_name(path)} has dtype {value.dtype}, "
                "expected floating point"
            )
        flat[path] = value.astype(np.float32)
    return Conversion(naming.unflatten(flat), config, notes)


def _torch_shape(path: naming.FlatPath, shape: tuple) -> tuple:
    """A Flax shape in PyTorch layout, so that error messages speak one language."""
    return tuple(naming.flax_array_to_torch(path, np.empty(shape, np.bool_)).shape)


def _describe(config) -> str:
    return ", ".join(
        f"{k}={config[k]}"
        for k in ("depth", "widen_factor", "pos_dims", "num_classes", "num_frames")
    )


def to_torch(variables: Variables, config=None) -> "OrderedDict[str, np.ndarray]":
    """Flax variables -> released-layout state_dict ({key: numpy array}).

    float32 arrays, plus an int64 `num_batches_tracked` (0) per BatchNorm as PyTorch
    keeps one. With `config`, the variables are first checked against the model, and
    keys follow the released order (the PyTorch twin's registration order; needs torch).
    """
    flat = naming.flatten(dict(variables))
    if config is not None:
        config = make_model_config(dict(config))
        expected = expected_variables(config)
        missing = [_torch_name(p) for p in expected if p not in flat]
        unexpected = [_torch_name(p) for p in flat if p not in expected]
        wrong = [
            f"{_torch_name(p)} (has {tuple(np.shape(v))}, model {expected[p]})"
            for p, v in flat.items()
            if p in expected and tuple(np.shape(v)) != expected[p]
        ]
        if missing or unexpected or wrong:
            raise CheckpointMismatchError("variables", missing, unexpected, wrong)
    out = {}
    for path, value in flat.items():
        key = naming.flax_path_to_torch_key(path)
        # A writable C-ordered copy: torch.from_numpy shares memory and wants both.
        out[key] = np.array(
            naming.flax_array_to_torch(path, np.asarray(value, np.float32)),
            order="C",
            copy=True,
        )
        if path[0] == "batch_stats" and path[-1] == "mean":
            counter = key[: -len("running_mean")] + naming.NUM_BATCHES_TRACKED
            out[counter] = np.array(0, np.int64)
    order = _released_order(config) if config is not None else sorted(out)
    return OrderedDict((k, out[k]) for k in order)


def _released_order(config) -> list[str]:
    # Built on the meta device: no memory, no init cost; only the names are used.
    import torch

    from squeezetime_jax.interop.torch_model import SqueezeTimeTorch

    with torch.device("meta"):
        twin = SqueezeTimeTorch.from_config(config)
    return list(twin.state_dict())
