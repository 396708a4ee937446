"""YUV 4:2:0 crops -> RGB training clips, scaled and converted on the accelerator.

With `data_config.train.resize_on_device = True` (it needs `augment_on_device`), a
training clip leaves the host as the YUV planes of its crop at the short-side scale
(`video_decode.decode_yuv420_crops`): for records re-encoded at the training short
side that is a plane copy per frame, where scaling to the crop size and converting to
RGB in libswscale cost about as much CPU as decoding. The batch carries instead of
`video`:

  video_yuv420 (B, T, 3S/2, S) uint8  planes packed as `video_decode.pack_yuv420`,
                                      S = data.train.short_side
  yuv_crop_size (B, 2) int32          the crop's (height, width) in luma pixels
  yuv_to_rgb (B, 3, 4) float32        the stream's colour matrix

and `to_rgb(batch, out_size)` rebuilds (B, T, out, out, 3) in [0, 255], rounded like
uint8 pixels, inside the jitted step, the way the host path does it with libswscale:
each plane resampled separably with a triangle filter (widened when shrinking, as
swscale's bilinear mode does), chroma at half resolution and then replicated over 2x2
pixels, then the stream's colour matrix. Measured against the host path: mean
absolute difference about 1.1 levels, at most 4; the conversion here is exact
arithmetic, libswscale's fixed-point one comes out about one level darker.
"""

from __future__ import annotations

import numpy as np

KEYS = ("video_yuv420", "yuv_crop_size", "yuv_to_rgb")


def _resample_matrix(out_size: int, in_size, buffer: int):
    """(out_size, buffer) weights that resample the first `in_size` (traced) of `buffer`
    samples to `out_size`: pixel centres aligned, triangle filter of width max(1, in/out),
    weights renormalized at the edges."""
    import jax.numpy as jnp

    in_size = jnp.asarray(in_size, jnp.float32)
    step = in_size / out_size
    support = jnp.maximum(step, 1.0)
    centres = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * step - 0.5
    taps = jnp.arange(buffer, dtype=jnp.float32)
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(taps[None, :] - centres[:, None]) / support)
    weights = jnp.where(taps[None, :] < in_size, weights, 0.0)
    return weights / jnp.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def _one_clip(packed, crop_size, matrix, out_size: int):
    import jax
    import jax.numpy as jnp

    frames, _, side = packed.shape
    half = side // 2
    y = packed[:, :side].astype(jnp.float32)
    chroma = packed[:, side:].reshape(frames, 2, half, half).astype(jnp.float32)
    height, width = crop_size[0], crop_size[1]
    hi = jax.lax.Precision.HIGHEST
    luma = jnp.einsum(
        "oh,thw,pw->top",
        _resample_matrix(out_size, height, side),
        y,
        _resample_matrix(out_size, width, side),
        precision=hi,
    )
    # As libswscale does on the host: chroma is scaled as a 4:2:0 plane, then each
    # sample covers its 2x2 output pixels (swscale's same-size YUV->RGB replicates it).
    out_c = (out_size + 1) // 2
    rows_c = _resample_matrix(out_c, height / 2, half)
    cols_c = _resample_matrix(out_c, width / 2, half)
    uv = jnp.einsum("oh,tchw,pw->tcop", rows_c, chroma, cols_c, precision=hi)
    uv = jnp.repeat(jnp.repeat(uv, 2, axis=2), 2, axis=3)[:, :, :out_size, :out_size]
    yuv1 = jnp.stack([luma, uv[:, 0], uv[:, 1], jnp.ones_like(luma)], axis=-1)
    rgb = jnp.einsum("tope,ce->topc", yuv1, matrix, precision=hi)
    return jnp.floor(jnp.clip(rgb, 0.0, 255.0) + 0.5)


def to_rgb(batch, out_size: int):
    """Batch with KEYS -> float32 (B, T, out_size, out_size, 3), values 0..255 integers."""
    import jax
    import jax.numpy as jnp

    return jax.vmap(lambda p, c, m: _one_clip(p, c, m, out_size))(
        jnp.asarray(batch["video_yuv420"]),
        jnp.asarray(batch["yuv_crop_size"]),
        jnp.asarray(batch["yuv_to_rgb"], jnp.float32),
    )


def blank(num_frames: int, short_side: int) -> dict[str, np.ndarray]:
    """One clip's arrays for a black clip (replacement when every retry failed)."""
    matrix = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    return {
        "video_yuv420": np.zeros((num_frames, 3 * short_side // 2, short_side), np.uint8),
        "yuv_crop_size": np.array([short_side, short_side], np.int32),
        "yuv_to_rgb": matrix,
    }
