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

from squeezetime_jax.data import transforms
from squeezetime_jax.data.normalize import normalize

PARAM_KEYS = (
    "aug_flip",
    "aug_jitter_order",
    "aug_jitter_factors",
    "aug_erase_box",
    "aug_erase_seed",
)


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
    """uint8 (B, T, H, W, 3) + params -> augmented float32 levels in [0, 255].

    Computes the same floats as `transforms.flip`, `apply_color_jitter` and the box of
    `random_erasing` (a backend that fuses multiply-adds may move a level by one where
    a value sits on an integer); the erasing fill is other uniform random pixels.
    """
    import jax
    import jax.numpy as jnp

    v = jnp.asarray(video_uint8).astype(jnp.float32)
    flip = jnp.asarray(params["aug_flip"], bool)[:, None, None, None, None]
    v = jnp.where(flip, v[:, :, :, ::-1], v)
    v = jax.vmap(_jitter_one)(v, params["aug_jitter_order"], params["aug_jitter_factors"])
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
    """One clip's colour jitter, as `transforms.apply_color_jitter` computes it.

    The order is data (per clip), so instead of branching the ops are laid out as up
    to three linear steps before the hue shift and up to three after it; a step is
    v*a + (1-a)*(p*grey(v) + m*grey(mean)) with (p, m) = (0, 0) for brightness, (0, 1)
    for contrast, (1, 0) for saturation, and a = 1, p = m = 0 for an empty slot. With
    these 0/1 selectors every step is the host's formula. XLA fuses multiply-adds
    (one rounding instead of two), so a value may land on the other side of an integer
    and move a level (measured: about 3 in 10^4 values, by at most a few levels after
    the hue round trip).
    """
    import jax.numpy as jnp

    hue_at = jnp.argmax(order == 3)
    mean = _frame_mean(v)
    for j in range(3):
        op = jnp.where(j < hue_at, order[j], -1)
        v, mean = _linear_step(v, mean, op, factors)
    hue = factors[3]
    shifted = _adjust_hue(v, hue)
    v = jnp.where(hue != 0, shifted, v)
    mean = jnp.where(hue != 0, _frame_mean(shifted), mean)
    for j in range(3):
        at = hue_at + 1 + j
        op = jnp.where(at < 4, order[jnp.minimum(at, 3)], -1)
        v, mean = _linear_step(v, mean, op, factors)
    return jnp.floor(jnp.clip(v, 0, 255))


def _frame_mean(v):
    """(T, H, W, 3) integer levels -> (T, 1, 1, 3) means from exact integer sums."""
    import jax.numpy as jnp

    t, h, w, _ = v.shape
    sums = jnp.floor(v).astype(jnp.int32).sum(axis=(1, 2), keepdims=True)
    return sums.astype(jnp.float32) / jnp.float32(h * w)


def _gray(x):
    g = transforms._GRAY
    return x[..., 0:1] * g[0] + x[..., 1:2] * g[1] + x[..., 2:3] * g[2]


def _linear_step(v, mean, op, factors):
    import jax.numpy as jnp

    a = jnp.where(op < 0, jnp.float32(1), factors[jnp.clip(op, 0, 2)])
    pixel = (op == 2).astype(jnp.float32)
    frame = (op == 1).astype(jnp.float32)
    grey_mean = _gray(mean)
    # pixel * grey + frame * grey_mean: one of the two products is 0, the other exact.
    v = v * a + (1 - a) * (pixel * _gray(v) + frame * grey_mean)
    mean = mean * a + (1 - a) * grey_mean * (pixel + frame)
    return v, mean


def _adjust_hue(v, hue):
    """`transforms.adjust_hue` in jnp: OpenCV's 8-bit HSV round trip, hue shifted."""
    import jax.numpy as jnp

    t = transforms
    x = jnp.floor(jnp.clip(v, 0, 255)).astype(jnp.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    val = jnp.maximum(jnp.maximum(r, g), b)
    delta = val - jnp.minimum(jnp.minimum(r, g), b)
    half = 1 << (t.HSV_SHIFT - 1)
    sat = (delta * jnp.take(jnp.asarray(t.SAT_TABLE), val) + half) >> t.HSV_SHIFT
    h = jnp.where(
        val == r, g - b, jnp.where(val == g, b - r + 2 * delta, r - g + 4 * delta)
    )
    h = (h * jnp.take(jnp.asarray(t.HUE_TABLE), delta) + half) >> t.HSV_SHIFT
    h = jnp.where(h < 0, h + t.HUE_RANGE, h)
    offset = jnp.trunc(hue * jnp.float32(255)).astype(jnp.int32)
    h = jnp.mod(h + offset, t.HUE_RANGE)
    # transforms.hsv_to_rgb_u8, op for op. XLA fuses 1 - s*f into one multiply-add on
    # CPU and GPU, as OpenCV and the host path do; a backend that rounds the product
    # first may move a level by one on rare pixels.
    one = jnp.float32(1)
    levels = jnp.asarray(t.UNIT_LEVELS)
    hf = jnp.take(jnp.asarray(t.HUE_SCALED), h)
    s = jnp.take(levels, sat)
    vf = jnp.take(levels, val)
    sector = jnp.trunc(hf)
    f = hf - sector
    tab = jnp.stack(
        [vf, vf * (one - s), vf * (one - s * f), vf * (one - s * (one - f))], -1
    )
    idx = jnp.take(jnp.asarray(t.HUE_SECTORS), sector.astype(jnp.int32), axis=0)
    rgb = jnp.take_along_axis(tab, idx, axis=-1) * jnp.float32(255)
    return jnp.trunc(rgb)


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
    rng: np.random.Generator,
    train_config,
    *,
    height: int,
    width: int,
    num_frames: int,
    jitter_order: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Draws one clip's flip/jitter/erasing parameters as the host path would.

    `jitter_order` is the pipeline's fixed jitter order (None: one drawn per clip).
    """
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
            order=jitter_order,
        )
        out["aug_jitter_order"], out["aug_jitter_factors"] = order, factors
    if rng.random() < t.random_erasing_prob:
        box = transforms.random_erasing_box(
            rng, height, width, area=tuple(t.erasing_area), aspect=tuple(t.erasing_aspect)
        )
        out["aug_erase_box"] = np.array(box, np.int32)
        out["aug_erase_seed"] = np.uint32(rng.integers(2**32))
    return out
