"""Per-channel normalization of 0..255 RGB pixels, as the released configs do it:
(x - MEAN_RGB) / STD_RGB on channels-last arrays, in float32.

`normalize` works on numpy arrays (hosts, exporters) and `normalize_on_device` on jax
arrays inside jitted steps; the host ships uint8 clips (4x fewer bytes than float32
across PCIe/ICI and through the worker queues) and the device turns them into floats.
"""

from __future__ import annotations

import numpy as np

from squeezetime_jax.data.config import MEAN_RGB, STD_RGB


def normalize(pixels, xp=np):
    """(..., 3) pixels in 0..255 -> float32 (x - mean) / std; `xp` is numpy or jax.numpy."""
    x = xp.asarray(pixels).astype(xp.float32)
    return (x - xp.asarray(MEAN_RGB, xp.float32)) / xp.asarray(STD_RGB, xp.float32)


def normalize_on_device(video_uint8):
    """uint8 (..., 3) channels-last -> float32 (x - mean) / std, per RGB channel."""
    import jax.numpy as jnp  # imported here so the data package never initializes jax

    return normalize(video_uint8, jnp)
