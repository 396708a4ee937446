"""Spatial transforms on uint8 clips (T, H, W, 3), following the released recipe.

Crops, colour jitter and random erasing follow mmaction2 (MultiScaleCrop, CenterCrop,
ThreeCrop, ColorJitter, RandomErasing) with our own random generators. One set of
random parameters is drawn per clip so every frame of a clip gets the same geometry
and colour, as in mmaction2 (only the erasing fill differs per frame).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from typing import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # top, left, height, width


def resize_bilinear(video: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR convention)."""
    t, h, w, c = video.shape
    if (h, w) == (out_h, out_w):
        return video

    def axis(n_in, n_out):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo).astype(np.float32)

    y0, y1, wy = axis(h, out_h)
    x0, x1, wx = axis(w, out_w)
    v = video.astype(np.float32)
    rows = v[:, y0] * (1 - wy)[None, :, None, None] + v[:, y1] * wy[None, :, None, None]
    out = (
        rows[:, :, x0] * (1 - wx)[None, None, :, None]
        + rows[:, :, x1] * wx[None, None, :, None]
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def crop(video: np.ndarray, box: Box) -> np.ndarray:
    top, left, h, w = box
    return video[:, top : top + h, left : left + w]


def multiscale_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    scales: Sequence[float],
    max_aspect_gap: int,
    input_size: int,
    random_crop: bool = True,
) -> Box:
    """mmaction2 MultiScaleCrop: crop sides from `scales` x short side.

    random_crop=True (the released recipe): the offset is uniform over every position
    that fits; False: one of mmaction2's 5 fixed positions (corners and centre).
    """
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    candidates = [
        (w, h)
        for i, h in enumerate(sizes)
        for j, w in enumerate(sizes)
        if abs(i - j) <= max_aspect_gap
    ]
    cw, ch = candidates[int(rng.integers(len(candidates)))]
    # Sizes within 3 pixels of the output size snap to it, as mmaction2 does.
    cw = input_size if abs(cw - input_size) < 3 else cw
    ch = input_size if abs(ch - input_size) < 3 else ch
    cw, ch = min(cw, width), min(ch, height)
    if random_crop:
        return (
            int(rng.integers(height - ch + 1)),
            int(rng.integers(width - cw + 1)),
            ch,
            cw,
        )
    ws, hs = (width - cw) // 4, (height - ch) // 4
    offsets = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    x, y = offsets[int(rng.integers(len(offsets)))]
    return (y, x, ch, cw)


def center_crop_box(height: int, width: int, size: int) -> Box:
    ch, cw = min(size, height), min(size, width)
    return ((height - ch) // 2, (width - cw) // 2, ch, cw)


def three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """mmaction2 ThreeCrop: along the long side, in the order start, end, centre."""
    ch, cw = min(size, height), min(size, width)
    if width >= height:
        step = (width - cw) // 2
        return [(0, 0, ch, cw), (0, 2 * step, ch, cw), (0, step, ch, cw)]
    step = (height - ch) // 2
    return [(0, 0, ch, cw), (2 * step, 0, ch, cw), (step, 0, ch, cw)]


def flip(video: np.ndarray) -> np.ndarray:
    return video[:, :, ::-1]


# mmaction2's ColorJitter grey level (its rgb_to_grayscale weights).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
_GRAY = np.array(GRAY_WEIGHTS, np.float32)

# OpenCV's 8-bit RGB->HSV works in fixed point with 12 fractional bits and two
# reciprocal tables, rounded half to even as its saturate_cast<int>(double).
HSV_SHIFT = 12
_LEVELS = np.arange(1, 256, dtype=np.float64)
SAT_TABLE = np.concatenate([[0], np.round((255 << HSV_SHIFT) / _LEVELS)]).astype(np.int32)
HUE_TABLE = np.concatenate([[0], np.round((180 << HSV_SHIFT) / (6 * _LEVELS))]).astype(
    np.int32
)
# OpenCV 8-bit hue: 180 units per turn, so a sector of the colour hexagon is 30 units.
HUE_RANGE = 180
# For each sector 0..5 of the hexagon, the (r, g, b) entries of (v, p, q, t) below.
HUE_SECTORS = np.array(
    [[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]], np.int32
)


def rgb_to_hsv_u8(rgb: np.ndarray) -> np.ndarray:
    """uint8-valued RGB (..., 3) -> int32 HSV as OpenCV's COLOR_RGB2HSV on uint8.

    H in [0, 180), S and V in [0, 255]; bit-exact with OpenCV (tests compare all 2^24
    colours).
    """
    rgb = np.asarray(rgb).astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    half = 1 << (HSV_SHIFT - 1)
    s = (delta * SAT_TABLE[v] + half) >> HSV_SHIFT
    # Hue before scaling, in units of delta/6 of a turn: red, green or blue sextant pair.
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * delta, r - g + 4 * delta))
    h = (h * HUE_TABLE[delta] + half) >> HSV_SHIFT
    h = np.where(h < 0, h + HUE_RANGE, h)
    return np.stack([h, s, v], axis=-1)


# OpenCV's 8-bit HSV->RGB scales H by 6/180 and S, V by 1/255 in float32; as lookup
# tables the device path computes the same values without a multiply that a compiler
# could fuse with the following subtraction.
HUE_SCALED = np.arange(HUE_RANGE, dtype=np.float32) * np.float32(6.0 / HUE_RANGE)
UNIT_LEVELS = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)


def one_minus_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 1 - a*b rounded once (a fused multiply-add), as OpenCV's x86 builds and
    XLA's CPU and GPU code compute it; exact here since a*b is exact in float64."""
    return (1.0 - a.astype(np.float64) * b.astype(np.float64)).astype(np.float32)


def hsv_to_rgb_u8(hsv: np.ndarray) -> np.ndarray:
    """int HSV (OpenCV 8-bit ranges) -> float32 RGB levels, as OpenCV's COLOR_HSV2RGB.

    OpenCV's vectorized 8-bit path: float32 with 1 - s*f fused, results truncated
    (bit-exact with OpenCV 5 on all 180 x 256 x 256 inputs, tested).
    """
    hsv = np.asarray(hsv)
    h = HUE_SCALED[hsv[..., 0]]
    s = UNIT_LEVELS[hsv[..., 1]]
    v = UNIT_LEVELS[hsv[..., 2]]
    sector = np.trunc(h)
    f = h - sector
    tab = (
        v,
        v * (np.float32(1) - s),
        v * one_minus_product(s, f),
        v * one_minus_product(s, np.float32(1) - f),
    )
    sector = sector.astype(np.int8)
    rgb = np.empty(h.shape + (3,), np.float32)
    for c in range(3):
        rgb[..., c] = np.choose(sector, [tab[HUE_SECTORS[k, c]] for k in range(6)])
    rgb *= np.float32(255)
    return np.trunc(rgb, out=rgb)


def hue_offset(hue: float) -> int:
    """mmaction2's hue shift: int(h * 255) units of OpenCV's 180 (truncated to zero)."""
    return int(np.trunc(np.float32(hue) * np.float32(255)))


# OpenCV converts each image row in SIMD blocks and its last few pixels one by one,
# and the two can differ by a level (a fused multiply-add or not). Rows of this many
# pixels, a multiple of every SIMD width, keep every pixel on the blocked path.
OPENCV_ROW_PIXELS = 64


def _opencv_rows(pixels: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> (rows, OPENCV_ROW_PIXELS, 3), zero-padded at the end."""
    flat = pixels.reshape(-1, 3)
    padding = -len(flat) % OPENCV_ROW_PIXELS
    if padding:
        flat = np.concatenate([flat, np.zeros((padding, 3), flat.dtype)])
    return flat.reshape(-1, OPENCV_ROW_PIXELS, 3)


@functools.cache
def _opencv():
    """OpenCV if installed and its 8-bit HSV conversions equal ours here, else None.

    They are the conversions mmaction2 calls, and about 30x faster than
    `rgb_to_hsv_u8` / `hsv_to_rgb_u8`, which the device path mirrors. A build whose
    results differ (another instruction set) is not used: the check converts every
    hue and saturation at 16 values, and every red and green at 16 blues. In a worker
    process the workers are the parallelism, so OpenCV gets no threads of its own.
    """
    try:
        import cv2
    except ImportError:
        return None
    if multiprocessing.parent_process() is not None:
        cv2.setNumThreads(1)
    levels, some = np.arange(256), np.arange(7, 256, 16)
    hsv = np.stack(np.meshgrid(np.arange(HUE_RANGE), levels, some, indexing="ij"), -1)
    rgb = np.stack(np.meshgrid(levels, levels, some, indexing="ij"), -1)
    hsv, rgb = _opencv_rows(hsv.astype(np.uint8)), _opencv_rows(rgb.astype(np.uint8))
    if np.array_equal(
        cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), hsv_to_rgb_u8(hsv)
    ) and np.array_equal(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), rgb_to_hsv_u8(rgb)):
        return cv2
    logging.warning(
        "OpenCV %s converts 8-bit HSV otherwise than mmaction2's reference build; "
        "colour jitter uses the slower NumPy conversions",
        cv2.__version__,
    )
    return None


def adjust_hue(video: np.ndarray, hue: float) -> np.ndarray:
    """mmaction2 ColorJitter.adjust_hue: float levels -> clip, truncate to uint8, shift
    OpenCV's 8-bit hue by `hue_offset(hue)` (mod 180), back to RGB (float32 levels)."""
    u8 = np.clip(video, 0, 255).astype(np.uint8)
    cv2 = _opencv()
    if cv2 is None:
        hsv = rgb_to_hsv_u8(u8)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue_offset(hue), HUE_RANGE)
        return hsv_to_rgb_u8(hsv)
    hsv = cv2.cvtColor(_opencv_rows(u8), cv2.COLOR_RGB2HSV)
    hue_shifted = (hsv[..., 0].astype(np.int16) + hue_offset(hue)) % HUE_RANGE
    hsv[..., 0] = hue_shifted.astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(-1, 3)[: u8.size // 3]
    return rgb.reshape(u8.shape).astype(np.float32)


def jitter_order(seed: int) -> np.ndarray:
    """The pipeline's colour-jitter order, drawn once from its seed.

    mmaction2 draws the order of brightness/contrast/saturation/hue once, when the
    ColorJitter transform is built (its seed is shared by all ranks), and applies it
    to every clip of the run; this is that draw for a pipeline seeded with `seed`.
    """
    return np.random.default_rng([int(seed), 0x5EED]).permutation(4).astype(np.int32)


def color_jitter_params(
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """mmaction2 ColorJitter's draws for one clip: (op order (4,), factors (4,)).

    Ops: 0 brightness, 1 contrast, 2 saturation, 3 hue. `order` is the pipeline's
    (`jitter_order`); None draws one for this clip (train.jitter_order = "per_clip").
    Factors: brightness/contrast/saturation from U(1 - x, 1 + x), hue from U(-h, h),
    all four drawn for every clip; a strength of 0 gives the identity (1 or 0).
    """
    for name, x, top in (
        ("brightness", brightness, 1),
        ("contrast", contrast, 1),
        ("saturation", saturation, 1),
        ("hue", hue, 0.5),
    ):
        if not 0 <= x <= top:
            raise ValueError(f"colour jitter {name} must be in [0, {top}], got {x}")
    if order is None:
        order = rng.permutation(4)
    factors = np.array(
        [
            rng.uniform(1 - brightness, 1 + brightness),
            rng.uniform(1 - contrast, 1 + contrast),
            rng.uniform(1 - saturation, 1 + saturation),
            rng.uniform(-hue, hue),
        ],
        np.float32,
    )
    return np.asarray(order, np.int32), factors


def frame_mean_rgb(video_u8: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8-valued -> (T, 3) float32 means (exact integer sums)."""
    t, h, w, c = video_u8.shape
    # Exact integer sums, as a float64 product with ones (BLAS: far faster than an
    # integer reduction over the middle axes).
    pixels = np.asarray(video_u8, np.float64).reshape(t, h * w, c)
    sums = np.ones(h * w) @ pixels
    return sums.astype(np.float32) / np.float32(h * w)


def _gray(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * _GRAY[0] + x[..., 1] * _GRAY[1] + x[..., 2] * _GRAY[2]


def apply_color_jitter(
    video: np.ndarray, order: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """mmaction2 ColorJitter with these draws: (T, H, W, 3) uint8 -> uint8.

    In order: brightness v*b; contrast c*v + (1-c)*mean grey of the frame; saturation
    s*v + (1-s)*grey of the pixel; hue `adjust_hue` (skipped when its factor is 0, as
    mmaction2 skips any identity factor). Float32 throughout, no clamping between
    operations (only hue's uint8 round trip clips), clipped and truncated at the end.

    The frame's mean is carried through the linear operations instead of re-reduced
    over the pixels (equal up to float rounding), so that this and the device path
    (`device_augment`) compute the same floats.
    """
    v = np.asarray(video).astype(np.float32)
    mean = frame_mean_rgb(video)[:, None, None, :]
    one = np.float32(1)
    for op in np.asarray(order):
        f = np.float32(factors[op])
        if op == 0:
            v = v * f
            mean = mean * f
        elif op == 1:
            g = _gray(mean)[..., None]
            v = v * f + (one - f) * g
            mean = mean * f + (one - f) * g
        elif op == 2:
            v = v * f + (one - f) * _gray(v)[..., None]
            mean = mean * f + (one - f) * _gray(mean)[..., None]
        elif f != 0:
            v = adjust_hue(v, float(f))
            mean = frame_mean_rgb(v)[:, None, None, :]
    return np.clip(v, 0, 255).astype(np.uint8)


def color_jitter(
    video: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """mmaction2 ColorJitter on one clip: one draw of the factors for all its frames."""
    order, factors = color_jitter_params(
        rng,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        order=order,
    )
    return apply_color_jitter(video, order, factors)


def random_erasing_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    area: tuple[float, float],
    aspect: tuple[float, float],
) -> Box:
    """mmaction2 RandomErasing's box: one draw, clipped to the image.

    Aspect (h/w) log-uniform in `aspect`, area uniform in `area` x H x W; sides
    rounded (half to even) and clipped to the frame; the offset uniform over
    [0, H - h) (numpy's randint excludes the end), 0 when the box spans the frame.
    """
    log_lo, log_hi = np.log(np.asarray(aspect, np.float32))
    ratio = np.exp(rng.uniform(log_lo, log_hi))
    target = height * width * rng.uniform(area[0], area[1])
    eh = min(int(round(np.sqrt(target * ratio))), height)
    ew = min(int(round(np.sqrt(target / ratio))), width)
    top = int(rng.integers(0, height - eh)) if height > eh else 0
    left = int(rng.integers(0, width - ew)) if width > ew else 0
    return (top, left, eh, ew)


def random_erasing(
    video: np.ndarray,
    rng: np.random.Generator,
    *,
    area: tuple[float, float],
    aspect: tuple[float, float],
) -> np.ndarray:
    """mmaction2 RandomErasing (mode 'rand'): one box per clip, each frame's patch
    filled with its own uniform random pixels."""
    t, h, w, c = video.shape
    top, left, eh, ew = random_erasing_box(rng, h, w, area=area, aspect=aspect)
    out = video.copy()
    out[:, top : top + eh, left : left + ew] = rng.integers(
        0, 256, (t, eh, ew, c), dtype=np.uint8
    )
    return out
