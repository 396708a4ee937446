"""Model settings as ConfigDicts, and the one place that turns them into a module."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections

from squeezetime_jax.models.kernels import AUTO, resolve_kernels
from squeezetime_jax.models.squeezetime import STAGE_SIZES, SqueezeTime

# The K400/K600/HMDB51 releases all use pos_dims (56, 28, 14, 7): one entry per
# stage, the stage's feature size at 224x224. The released code's default is
# (64, 32, 16, 8); pass it explicitly to reproduce that variant.
RELEASED_POS_DIMS = (56, 28, 14, 7)

_DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float64": jnp.float64,
    "float16": jnp.float16,
}


def model_config(**overrides: Any) -> ml_collections.ConfigDict:
    """The released K400 model's settings, with `overrides` applied."""
    config = ml_collections.ConfigDict(
        dict(
            depth=50,
            widen_factor=1.0,
            pos_dims=RELEASED_POS_DIMS,
            num_classes=400,
            num_frames=16,
            image_size=224,
            dropout_rate=0.5,
            dtype="float32",
            # Formulation of the gradient-heavy layers: "xla", "cpu_tuned", or "auto"
            # (by the platform the program is compiled for; models/kernels.py).
            kernels=AUTO,
            # Clips per BatchNorm statistics group; None: the whole global batch. The
            # release trains 8 GPUs x 64 clips without SyncBN: 64 (configs/k400.py).
            bn_group_size=None,
            # Run the stem's output and stage 1 (64-channel interiors) channel-packed,
            # two pixels to a 128-lane row: the same function and parameters, fewer
            # HBM bytes on TPU. Needs kernels "xla" (SqueezeTimeBackbone).
            pack_narrow_channels=False,
        )
    )
    for key, value in overrides.items():
        if key not in config:
            raise KeyError(f"unknown model setting {key!r}; known: {sorted(config.keys())}")
        config[key] = value
    return config


def build_model(
    config: ml_collections.ConfigDict | dict, platform: str | None = None, **kwargs: Any
) -> SqueezeTime:
    """SqueezeTime from a model ConfigDict (`image_size` is only a default for inputs).

    `platform` is that of the devices the model's programs are compiled for ('cpu',
    'tpu', 'gpu'; default JAX's default backend): it picks `kernels` when the config
    says "auto".
    """
    config = dict(config)
    depth = int(config["depth"])
    if depth not in STAGE_SIZES:
        raise ValueError(f"model.depth must be one of {sorted(STAGE_SIZES)}, got {depth}")
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        dtype = _DTYPES[dtype]
    return SqueezeTime(
        depth=depth,
        widen_factor=float(config["widen_factor"]),
        pos_dims=tuple(int(p) for p in config["pos_dims"]),
        num_classes=int(config["num_classes"]),
        num_frames=int(config["num_frames"]),
        dropout_rate=float(config.get("dropout_rate", 0.5)),
        dtype=dtype,
        kernels=resolve_kernels(kwargs.pop("kernels", config.get("kernels")), platform),
        bn_group_size=_group_size(config.get("bn_group_size")),
        pack_narrow_channels=bool(config.get("pack_narrow_channels", False)),
        **kwargs,
    )


def _group_size(value: Any) -> int | None:
    if value is None:
        return None
    if int(value) != value or int(value) < 1:
        raise ValueError(
            f"model.bn_group_size must be a positive integer or None, got {value!r}"
        )
    return int(value)
