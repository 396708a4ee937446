"""The one inference path: a checkpoint's network jitted on its variables.

`load(path)` restores any checkpoint (checkpoints.restore: a released .pth, a
converted directory or a train.py workdir) into a `LoadedModel`. predict, feature
extraction and export's reference logits all run through it, so every caller gets
the same program, compiled with the runtime's options for its backend.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from squeezetime_jax.checkpoints.restore import Restored, restore
from squeezetime_jax.data.normalize import normalize_on_device
from squeezetime_jax.models import build_model
from squeezetime_jax.runtime.compile_options import compiler_options


def predict_step(
    variables: dict[str, Any], batch: dict[str, jax.Array], *, model
) -> jax.Array:
    """Float32 logits of a batch of uint8 (or 0..255 float) clips, in inference mode."""
    return model.apply(variables, normalize_on_device(batch["video"]), train=False)


class LoadedModel:
    """A SqueezeTime classifier with its variables, jitted for inference on one device
    (the CPU unless given).

    model(x): x float32 (N, T, H, W, 3), normalized -> logits (N, num_classes).
    model.pixel_logits(pixels): pixels (N, T, H, W, 3) in 0..255 -> float32 numpy
    logits, normalized on the device and run in fixed-size batches (one compile).
    """

    def __init__(self, restored: Restored, device: jax.Device | None = None):
        self.device = device or jax.devices("cpu")[0]
        self.config = restored.config
        self.notes = list(restored.notes)
        self.restored = restored
        # Class names and clip settings stored with the weights (checkpoints.metadata).
        self.metadata = restored.metadata
        self.class_names = restored.metadata.class_names_for(self.config.num_classes)
        self.module = build_model(self.config)
        self.variables = jax.device_put(restored.variables, self.device)
        options = compiler_options(self.device.platform)
        self._apply = jax.jit(
            lambda variables, x: self.module.apply(variables, x, train=False),
            compiler_options=options,
        )
        self._apply_pixels = jax.jit(
            lambda variables, pixels: predict_step(
                variables, {"video": pixels}, model=self.module
            ),
            compiler_options=options,
        )

    def __call__(self, x) -> jax.Array:
        x = jax.device_put(jnp.asarray(np.asarray(x), jnp.float32), self.device)
        return self._apply(self.variables, x)

    def pixel_logits(self, pixels: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        pixels = np.asarray(pixels)
        batch_size = batch_size or len(pixels)
        out = []
        for start in range(0, len(pixels), batch_size):
            chunk = pixels[start : start + batch_size]
            padded = np.zeros((batch_size,) + chunk.shape[1:], chunk.dtype)
            padded[: len(chunk)] = chunk
            logits = self._apply_pixels(self.variables, jax.device_put(padded, self.device))
            out.append(np.asarray(logits, np.float32)[: len(chunk)])
        return np.concatenate(out)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"LoadedModel(depth={c.depth}, widen_factor={c.widen_factor}, "
            f"num_classes={c.num_classes}, num_frames={c.num_frames})"
        )


def load(
    path: str | os.PathLike, step: int | None = None, device: jax.Device | None = None
) -> LoadedModel:
    """A callable model from a released-layout .pth, a converted checkpoint directory,
    a train.py workdir (its latest step, or `step`) or a released checkpoint's name
    (k400, k600, hmdb51, in1k), on `device` (default CPU)."""
    return LoadedModel(restore(path, step), device)
