"""`load(path)`: a ready-to-call SqueezeTime from a .pth file or a checkpoint directory
(a converted checkpoint, or a train.py workdir: its latest checkpoint), or a released
checkpoint by name (`k400`, `release:k400`; see squeezetime_jax.interop.release).

Sources are tried in the order of `_SOURCES`; each recognises its own kind of path.
A new kind of checkpoint (e.g. a training directory) is one more entry there.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.checkpoints.restore import (
    is_converted_dir,
    is_training_workdir,
    load_torch_checkpoint,
    restore_converted,
    restore_training_workdir,
)
from squeezetime_jax.interop import release
from squeezetime_jax.interop.conversion import Conversion
from squeezetime_jax.models import build_model
from squeezetime_jax.runtime.compile_options import compiler_options

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

# (recognises path, loads it into a Conversion)
_SOURCES: list[tuple[Callable[[str], bool], Callable[[str], Conversion]]] = [
    (is_converted_dir, restore_converted),
    (is_training_workdir, restore_training_workdir),
    (os.path.isfile, load_torch_checkpoint),
]


def load_variables(path: str | os.PathLike) -> Conversion:
    """Variables, model config, notes and metadata of any supported checkpoint."""
    path = os.fspath(path)
    if release.is_reference(path):
        return release.load(path)
    if not os.path.exists(path):
        raise CheckpointError(
            f"{path}: no such file or directory (nor a released checkpoint: "
            f"{', '.join(release.names())})"
        )
    for recognises, loader in _SOURCES:
        if recognises(path):
            return loader(path)
    raise CheckpointError(
        f"{path}: not a checkpoint this library reads (a PyTorch file "
        f"such as {'/'.join(_TORCH_SUFFIXES)}, a converted checkpoint "
        "directory or a train.py workdir)"
    )


class LoadedModel:
    """A SqueezeTime classifier with its variables, jitted for inference on CPU.

    model(x): x float32 (N, T, H, W, 3), normalized -> logits (N, num_classes) jax.Array.
    """

    def __init__(self, conversion: Conversion, device: jax.Device | None = None):
        self.device = device or jax.devices("cpu")[0]
        self.config = conversion.config
        self.notes = list(conversion.notes)
        self.metadata = conversion.metadata
        self.class_names = conversion.metadata.class_names_for(self.config.num_classes)
        self.module = build_model(self.config)
        self.variables = jax.device_put(conversion.variables, self.device)
        self._apply = jax.jit(
            lambda variables, x: self.module.apply(variables, x, train=False),
            compiler_options=compiler_options(self.device.platform),
        )

    def __call__(self, x) -> jax.Array:
        x = jax.device_put(jnp.asarray(np.asarray(x), jnp.float32), self.device)
        return self._apply(self.variables, x)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"LoadedModel(depth={c.depth}, widen_factor={c.widen_factor}, "
            f"num_classes={c.num_classes}, num_frames={c.num_frames})"
        )


def load(path: str | os.PathLike) -> LoadedModel:
    """A callable model from a released-layout .pth, a converted checkpoint directory, a
    train.py workdir or a released checkpoint's name (k400, k600, hmdb51, in1k)."""
    return LoadedModel(load_variables(path))
