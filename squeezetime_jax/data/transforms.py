"""Spatial transforms on uint8 clips (T, H, W, 3), following the released recipe.

Crops follow mmaction2 (MultiScaleCrop, CenterCrop, ThreeCrop); colour jitter and
random erasing follow torchvision / mmpretrain. One set of random parameters is drawn
per clip so every frame of a clip gets the same geometry and colour, as in mmaction2.
"""

from __future__ import annotations

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
    random_crop: bool = False,
) -> Box:
    """mmaction2 MultiScaleCrop: a crop side from `scales` x short side, 5 fixed offsets."""
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


_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def _hue_matrix(shift: float) -> np.ndarray:
    """RGB->RGB matrix rotating chroma by `shift` turns in YIQ space.

    A linear approximation of an HSV hue shift, exact for gray and close elsewhere; it
    costs one 3x3 product per pixel instead of a full HSV round trip.
    """
    to_yiq = np.array(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        np.float64,
    )
    a = 2 * np.pi * shift
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return (np.linalg.inv(to_yiq) @ rot @ to_yiq).astype(np.float32)


def color_jitter_params(
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> tuple[np.ndarray, np.ndarray]:
    """torchvision ColorJitter's draws for one clip: (op order (4,), factors (4,)).

    Ops: 0 brightness, 1 contrast, 2 saturation, 3 hue; factors are the multiplicative
    factors of ops 0-2 and the hue shift in turns. A disabled op keeps its identity
    factor (1, 1, 1, 0) and draws nothing, as torchvision.
    """
    order = rng.permutation(4)
    factors = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    strength = (brightness, contrast, saturation)
    for op in order:
        if op < 3 and strength[op] > 0:
            factors[op] = rng.uniform(max(0, 1 - strength[op]), 1 + strength[op])
        elif op == 3 and hue > 0:
            factors[3] = rng.uniform(-hue, hue)
    return order.astype(np.int32), factors


def apply_color_jitter(
    video: np.ndarray, order: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """Applies `color_jitter_params` draws; each op is clamped to [0, 255], then rounded."""
    v = video.astype(np.float32)
    for op in order:
        f = float(factors[op])
        if op == 0:
            v *= f
        elif op == 1:
            mean = (v @ _GRAY).mean(axis=(1, 2))[:, None, None, None]
            v *= f
            v += (1 - f) * mean
        elif op == 2:
            gray = (v @ _GRAY)[..., None]
            gray *= 1 - f
            v *= f
            v += gray
        else:
            v = v @ _hue_matrix(f).T
        np.clip(v, 0, 255, out=v)
    v += 0.5  # round half up; values are in [0, 255] after the clip
    return v.astype(np.uint8)


def color_jitter(
    video: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> np.ndarray:
    """torchvision ColorJitter order and ranges, one draw per clip, clamped per step."""
    order, factors = color_jitter_params(
        rng, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
    )
    return apply_color_jitter(video, order, factors)


def random_erasing_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    area: tuple[float, float],
    aspect: tuple[float, float],
    max_attempts: int = 10,
) -> Box | None:
    """mmpretrain RandomErasing's box draw; None when no attempt fits."""
    log_lo, log_hi = np.log(aspect[0]), np.log(aspect[1])
    for _ in range(max_attempts):
        target = rng.uniform(*area) * height * width
        ratio = np.exp(rng.uniform(log_lo, log_hi))
        eh, ew = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
        if 0 < eh < height and 0 < ew < width:
            return (
                int(rng.integers(height - eh + 1)),
                int(rng.integers(width - ew + 1)),
                eh,
                ew,
            )
    return None


def random_erasing(
    video: np.ndarray,
    rng: np.random.Generator,
    *,
    area: tuple[float, float],
    aspect: tuple[float, float],
    max_attempts: int = 10,
) -> np.ndarray:
    """mmpretrain RandomErasing (mode 'rand'): one box per clip, uniform random pixels."""
    t, h, w, c = video.shape
    box = random_erasing_box(rng, h, w, area=area, aspect=aspect, max_attempts=max_attempts)
    if box is None:
        return video
    top, left, eh, ew = box
    out = video.copy()
    out[:, top : top + eh, left : left + ew] = rng.integers(
        0, 256, (t, eh, ew, c), dtype=np.uint8
    )
    return out
