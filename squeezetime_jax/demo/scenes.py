"""Synthetic scenes whose label lives only in the temporal order of their frames.

Every scene holds a disc that slides horizontally and a square that slides vertically,
both wrapping around the frame edges (a torus), over a random textured background,
with jittering distractor shapes and per-frame sensor noise. The class is the disc's
direction: left or right. The square moves up or down at random, independently of the
class: a coherent motion the network must learn to ignore.

Why only the disc's direction is the label: a scene's frames, shuffled, still show
which configurations belong together, so they reveal the motion up to reversing time.
A label that reversing time maps onto another label is therefore the only kind that
shuffled frames cannot reveal. (Labelling the square's direction too would leak: two
shuffled frames show both movers displaced by the same time difference, so the product
of the two directions is visible without the order.) Here, with every position drawn
at a uniform random phase of its wrap-around track,

- any single frame is distributed identically for both classes;
- reversing time maps a left scene onto a right scene with the same frame set (the
  square's direction flips too, but it is uniform and independent of the label), so
  the frames shuffled carry no label either;
- only the order of the frames says which way the disc moves.

Horizontal flipping reverses the disc's direction (the other class), so the demo
trains without flips. Rendering is plain numpy; `scene_frames` is deterministic in
(seed, label, size, num_frames).
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ("disc_moving_left", "disc_moving_right")


def disc_direction(label: int) -> int:
    """-1 (left) or +1 (right)."""
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in [0, {len(CLASSES)}), got {label}")
    return -1 if label == 0 else 1


def label_of(disc_dir: float) -> int:
    return 0 if disc_dir < 0 else 1


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything that varies between frames, as per-frame arrays (T,) or (T, K)."""

    width: int
    height: int
    background: np.ndarray  # (H, W, 3) float, static
    noise_sigma: float
    disc_x: np.ndarray  # (T,) disc centre x (wraps)
    disc_y: float
    disc_radius: float
    disc_colour: np.ndarray  # (3,)
    square_x: float
    square_y: np.ndarray  # (T,) square centre y (wraps)
    square_half: float
    square_colour: np.ndarray
    outline: float  # 0 (black) or 255 (white) outline of both movers
    distractor_kind: np.ndarray  # (K,) 0 triangle, 1 cross, 2 ring
    distractor_xy: np.ndarray  # (T, K, 2)
    distractor_size: np.ndarray  # (K,)
    distractor_colour: np.ndarray  # (K, 3)
    seed: int

    @property
    def num_frames(self) -> int:
        return len(self.disc_x)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency colour blotches plus oriented stripes of random colour, static."""
    grid = rng.uniform(30, 225, size=(rng.integers(3, 7), rng.integers(3, 7), 3))
    ys = np.linspace(0, grid.shape[0] - 1, h)
    xs = np.linspace(0, grid.shape[1] - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, grid.shape[0] - 1), np.minimum(x0 + 1, grid.shape[1] - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    base = top * (1 - fy) + bottom * fy
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 14)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    stripes = np.sin(
        2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period
        + rng.uniform(0, 2 * np.pi)
    )
    return base + stripes[..., None] * rng.uniform(-25, 25, size=3)


def make_scene(seed: int, label: int, width: int, height: int, num_frames: int) -> Scene:
    """Samples a scene of class `label`; the same seed gives the same scene."""
    disc_dir = disc_direction(label)
    rng = np.random.default_rng(seed)
    square_dir = rng.choice([-1, 1])  # independent of the label
    size = min(width, height)
    t = np.arange(num_frames, dtype=np.float64)
    # Speeds in pixels per frame: 1.6-2.8% of the frame between two sampled frames (4
    # apart), 13-22% over an 8-frame clip. Slow on purpose: the network's first layer
    # (a 5x5 convolution over all frames at once) sees motion only while a step
    # between sampled frames stays within its few pixels; at 3-4x this speed the demo
    # network memorized its training clips instead of learning the direction.
    disc_speed = rng.uniform(0.004, 0.007) * width
    square_speed = rng.uniform(0.004, 0.007) * height
    k = int(rng.integers(1, 4))
    steps = rng.normal(0, 0.4, size=(num_frames, k, 2))
    steps[0] = 0
    start = rng.uniform(0, 1, size=(k, 2)) * (width, height)
    return Scene(
        width=width,
        height=height,
        background=_background(rng, height, width),
        noise_sigma=float(rng.uniform(2, 8)),
        disc_x=rng.uniform(0, width) + disc_dir * disc_speed * t,
        disc_y=float(rng.uniform(0.15, 0.85) * height),
        disc_radius=float(rng.uniform(0.12, 0.16) * size),
        disc_colour=rng.uniform(0, 255, size=3),
        square_x=float(rng.uniform(0.15, 0.85) * width),
        square_y=rng.uniform(0, height) + square_dir * square_speed * t,
        square_half=float(rng.uniform(0.1, 0.14) * size),
        square_colour=rng.uniform(0, 255, size=3),
        outline=float(rng.choice([0.0, 255.0])),
        distractor_kind=rng.integers(0, 3, size=k),
        distractor_xy=start[None] + np.cumsum(steps, axis=0),
        distractor_size=rng.uniform(0.06, 0.1, size=k) * size,
        distractor_colour=rng.uniform(0, 255, size=(k, 3)),
        seed=seed,
    )


def reversed_scene(scene: Scene) -> Scene:
    """The same scene played backwards: the other class (and the square reversed)."""
    return dataclasses.replace(
        scene,
        disc_x=scene.disc_x[::-1].copy(),
        square_y=scene.square_y[::-1].copy(),
        distractor_xy=scene.distractor_xy[::-1].copy(),
    )


def _wrapped(delta: np.ndarray, period: float) -> np.ndarray:
    """Signed distance on a circle of length `period` (the frame wraps around)."""
    return (delta + period / 2) % period - period / 2


def _blend(
    image: np.ndarray, signed_distance: np.ndarray, colour, shade: np.ndarray | None = None
) -> None:
    """Paints `colour` (times `shade`, if given) where the signed distance is negative,
    anti-aliased. Only the covered pixels are touched: the shapes are small."""
    cover = np.clip(0.5 - signed_distance, 0.0, 1.0)
    inside = cover > 0
    colour = np.asarray(colour, np.float32)
    if shade is not None:
        colour = colour * np.broadcast_to(shade, inside.shape)[inside][:, None]
    image[inside] += (colour - image[inside]) * cover[inside][:, None]


def _paint(
    image: np.ndarray,
    distance: np.ndarray,
    colour,
    outline: float | None,
    shade: np.ndarray | None = None,
) -> None:
    if outline is not None:
        _blend(image, distance - 1.5, (outline,) * 3)
    _blend(image, distance, colour, shade)


def render_frames(
    scene: Scene, times: np.ndarray, noise_rng: np.random.Generator
) -> np.ndarray:
    """Frames `times` of `scene` as uint8 (len(times), H, W, 3), drawn all at once."""
    h, w = scene.height, scene.width
    times = np.asarray(times)
    # Coordinates as (1, H, 1) and (1, 1, W): wrapping is done on rows and columns only,
    # and broadcasting builds the (T, H, W) distance maps.
    yy = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
    xx = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]
    image = np.repeat(scene.background.astype(np.float32)[None], len(times), axis=0)
    for k, (kind, size, colour) in enumerate(
        zip(scene.distractor_kind, scene.distractor_size, scene.distractor_colour)
    ):
        cx = scene.distractor_xy[times, k, 0].astype(np.float32)[:, None, None]
        cy = scene.distractor_xy[times, k, 1].astype(np.float32)[:, None, None]
        dx, dy = _wrapped(xx - cx, w), _wrapped(yy - cy, h)
        if kind == 0:  # triangle: the max of three half-plane distances
            d = np.maximum(
                np.maximum(-dy - size * 0.6, 0.87 * dx + 0.5 * dy - size * 0.35),
                -0.87 * dx + 0.5 * dy - size * 0.35,
            )
        elif kind == 1:  # plus sign: union of two bars
            d = np.minimum(
                np.maximum(np.abs(dx) - size, np.abs(dy) - size * 0.3),
                np.maximum(np.abs(dx) - size * 0.3, np.abs(dy) - size),
            )
        else:  # ring
            d = np.abs(np.hypot(dx, dy) - size * 0.8) - size * 0.25
        _paint(image, d, colour, None)
    # The movers: a disc on a horizontal track and a square on a vertical one.
    cx = scene.disc_x[times].astype(np.float32)[:, None, None]
    dx = _wrapped(xx - cx, w)
    d = np.hypot(dx, yy - scene.disc_y) - scene.disc_radius
    # Vertical stripes painted on the disc move with it: motion shows across its whole
    # area, not only at its outline.
    stripes = np.where(np.sin(2 * np.pi * dx / (0.8 * scene.disc_radius)) > 0, 1.0, 0.45)
    _paint(image, d, scene.disc_colour, scene.outline, stripes.astype(np.float32))
    cy = scene.square_y[times].astype(np.float32)[:, None, None]
    d = (
        np.maximum(np.abs(xx - scene.square_x), np.abs(_wrapped(yy - cy, h)))
        - scene.square_half
    )
    _paint(image, d, scene.square_colour, scene.outline)
    image += (
        noise_rng.standard_normal(size=image.shape, dtype=np.float32) * scene.noise_sigma
    )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def scene_frames(scene: Scene) -> np.ndarray:
    """All frames, (T, H, W, 3) uint8; the noise is seeded by the scene's seed."""
    noise_rng = np.random.default_rng([scene.seed, 1])
    return render_frames(scene, np.arange(scene.num_frames), noise_rng)
