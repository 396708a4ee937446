"""Flip, colour jitter, random erasing and normalization on the accelerator.

On the host these cost more CPU than decoding a clip (colour jitter alone is several
float passes over 2.4 MB per clip); inside the jitted step they are a few fused
elementwise ops. With `data_config.train.augment_on_device = True` the training
pipeline still draws every random parameter on the host, from the same generator and
in the same order as the host path (so flips, jitter factors and erasing boxes are the
ones the host would apply, and resume stays exact), but ships the cropped uint8 clip
unaugmented together with these parameters:

  aug_flip (B,) bool, aug_jitter_order (B, 4) int32, aug_jitter_factors (B, 4) float32,
  aug_erase_box (B, 4) int32 (top, left, height, width; height 0 = no erasing),
  aug_erase_seed (B,) uint32 (the random fill's pixels are drawn on the device).

The trainer's jitted step then replaces `normalize_on_device(batch["video"])` by
`augment_and_normalize(batch)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax

from squeezetime_jax.data.normalize import normalize
from squeezetime_jax.data.transforms import _GRAY

PARAM_KEYS = (
    "aug_flip",
    "aug_jitter_order",
    "aug_jitter_factors",
    "aug_erase_box",
    "aug_erase_seed",
)

# transforms._hue_matrix(shift) = inv(YIQ) @ R(2 pi shift) @ YIQ, built traceably below.
_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64
)
_FROM_YIQ = np.linalg.inv(_TO_YIQ)


def no_augment_params(batch_size: int) -> dict[str, np.ndarray]:
    """Parameters that leave clips unchanged (eval batches, tests)."""
    return {
        "aug_flip": np.zeros(batch_size, bool),
        "aug_jitter_order": np.tile(np.arange(4, dtype=np.int32), (batch_size, 1)),
        "aug_jitter_factors": np.tile(np.array([1, 1, 1, 0], np.float32), (batch_size, 1)),
        "aug_erase_box": np.zeros((batch_size, 4), np.int32),
        "aug_erase_seed": np.zeros(batch_size, np.uint32),
    }


def augment(video_uint8, params) -> "jax.Array":
    """uint8 (B, T, H, W, 3) + params -> augmented float32 in [0, 255], rounded as the host.

    Matches `transforms.flip`, `apply_color_jitter` and the box of `random_erasing` up to
    float rounding (a value within 1e-3 of a .5 boundary may round the other way); the
    erasing fill is other uniform random pixels.
    """
    import jax
    import jax.numpy as jnp

    v = jnp.asarray(video_uint8).astype(jnp.float32)
    flip = jnp.asarray(params["aug_flip"], bool)[:, None, None, None, None]
    v = jnp.where(flip, v[:, :, :, ::-1], v)
    v = jax.vmap(_jitter_one)(v, params["aug_jitter_order"], params["aug_jitter_factors"])
    v = jnp.floor(v + 0.5)
    return jax.vmap(_erase_one)(v, params["aug_erase_box"], params["aug_erase_seed"])


def augment_and_normalize(batch, crop_size: int | None = None) -> "jax.Array":
    """batch dict (video + PARAM_KEYS) -> normalized float32 clips, for the jitted step.

    A batch of YUV crops (`data.train.resize_on_device`, keys `device_yuv.KEYS` instead of
    `video`) is first scaled to `crop_size` and converted to RGB (`device_yuv.to_rgb`).
    """
    import jax.numpy as jnp

    if "video" in batch:
        video = batch["video"]
    else:
        from squeezetime_jax.data import device_yuv

        if crop_size is None:
            raise ValueError(
                "the batch carries YUV crops (data.train.resize_on_device): pass "
                "crop_size (data.train.crop_size) to augment_and_normalize"
            )
        video = device_yuv.to_rgb(batch, crop_size)
    v = augment(video, {k: batch[k] for k in PARAM_KEYS})
    return normalize(v, jnp)


def _jitter_one(v, order, factors):
    """Four clamped steps; each is v @ M.T + c * mean(gray(v)) per frame.

    Every op is affine in the pixel (brightness f I; contrast f I plus (1 - f) times the
    frame's mean gray; saturation f I + (1 - f) 1 gray^T; hue the YIQ rotation), so a
    step picks a 3x3 matrix and a coefficient instead of branching over the pixels:
    one fused pass per step.
    """
    import jax.numpy as jnp

    gray = jnp.asarray(_GRAY)
    eye = jnp.eye(3, dtype=jnp.float32)
    a = 2 * jnp.pi * factors[3]
    c, s = jnp.cos(a), jnp.sin(a)
    rot = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], jnp.float32)
    rot = rot.at[1, 1].set(c).at[1, 2].set(-s).at[2, 1].set(s).at[2, 2].set(c)
    hue = jnp.asarray(_FROM_YIQ, jnp.float32) @ rot @ jnp.asarray(_TO_YIQ, jnp.float32)
    mats = jnp.stack(
        [
            factors[0] * eye,
            factors[1] * eye,
            factors[2] * eye + (1 - factors[2]) * jnp.outer(jnp.ones(3), gray),
            hue,
        ]
    )
    mean_coef = jnp.array([0.0, 1.0, 0.0, 0.0], jnp.float32) * (1 - factors[1])
    for step in range(4):
        op = order[step]
        mean = _mix(v, gray[None]).mean(axis=(1, 2))[:, None, None, :]
        v = jnp.clip(_mix(v, mats[op]) + mean_coef[op] * mean, 0, 255)
    return v


def _mix(v, m):
    """v @ m.T over the channel axis, written elementwise so XLA fuses it with its
    neighbours instead of materializing a dot product's output (5x the memory traffic)."""
    return v[..., 0:1] * m[:, 0] + v[..., 1:2] * m[:, 1] + v[..., 2:3] * m[:, 2]


def _erase_one(v, box, seed):
    import jax
    import jax.numpy as jnp

    t, h, w, c = v.shape
    top, left, eh, ew = box[0], box[1], box[2], box[3]
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    inside = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    # The hardware generator ("rbg") is far cheaper than threefry for a full clip of
    # fill; its pixels are as uniform, which is all erasing needs.
    key = jax.random.key(seed, impl="rbg")
    fill = jax.random.bits(key, v.shape, jnp.uint8).astype(v.dtype)
    return jnp.where(inside[None, :, :, None], fill, v)


def host_params(
    rng: np.random.Generator, train_config, *, height: int, width: int, num_frames: int
) -> dict[str, np.ndarray]:
    """Draws one clip's flip/jitter/erasing parameters as the host path would."""
    from squeezetime_jax.data import transforms

    t = train_config
    del num_frames  # the fill is drawn on the device
    out = no_augment_params(1)
    out = {k: v[0] for k, v in out.items()}
    out["aug_flip"] = np.bool_(rng.random() < t.flip_prob)
    if t.color_jitter:
        order, factors = transforms.color_jitter_params(
            rng,
            brightness=t.brightness,
            contrast=t.contrast,
            saturation=t.saturation,
            hue=t.hue,
        )
        out["aug_jitter_order"], out["aug_jitter_factors"] = order, factors
    if rng.random() < t.random_erasing_prob:
        box = transforms.random_erasing_box(
            rng, height, width, area=tuple(t.erasing_area), aspect=tuple(t.erasing_aspect)
        )
        if box is not None:
            out["aug_erase_box"] = np.array(box, np.int32)
            out["aug_erase_seed"] = np.uint32(rng.integers(2**32))
    return out
