"""Spatial transforms as the released recipe defines them."""

import numpy as np

from squeezetime_jax.data import transforms


def test_multiscale_crop_sizes_and_offsets_follow_mmaction2():
    rng = np.random.default_rng(0)
    h, w = 256, 340
    sizes = [256, 224, 192, 168, 128]  # int(256 * s) for the recipe scales, 224 snapped
    allowed = {(sizes[j], sizes[i]) for i in range(5) for j in range(5) if abs(i - j) <= 1}
    seen_sizes, seen_offsets = set(), set()
    for _ in range(3000):
        top, left, ch, cw = transforms.multiscale_crop_box(
            h, w, rng, scales=(1, 0.875, 0.75, 0.66, 0.5), max_aspect_gap=1, input_size=224
        )
        seen_sizes.add((cw, ch))
        ws, hs = (w - cw) // 4, (h - ch) // 4
        pos = {
            (0, 0): "tl",
            (0, 4 * ws): "tr",
            (4 * hs, 0): "bl",
            (4 * hs, 4 * ws): "br",
            (2 * hs, 2 * ws): "c",
        }
        assert (top, left) in pos
        seen_offsets.add(pos[(top, left)])
    assert seen_sizes == allowed
    assert seen_offsets == {"tl", "tr", "bl", "br", "c"}


def test_three_crop_order_and_centre_crop():
    assert transforms.three_crop_boxes(224, 300, 224) == [
        (0, 0, 224, 224),
        (0, 76, 224, 224),
        (0, 38, 224, 224),
    ]
    assert transforms.three_crop_boxes(300, 224, 224) == [
        (0, 0, 224, 224),
        (76, 0, 224, 224),
        (38, 0, 224, 224),
    ]
    assert transforms.center_crop_box(256, 341, 224) == (16, 58, 224, 224)


def test_resize_bilinear_keeps_constants_and_linear_ramps():
    const = np.full((2, 5, 7, 3), 77, np.uint8)
    assert (transforms.resize_bilinear(const, 11, 3) == 77).all()
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8)[None, None, :, None], (1, 4, 1, 3))
    up = transforms.resize_bilinear(ramp, 4, 40)[0, 0, :, 0].astype(int)
    # Half-pixel centres: output column x samples input (x + 0.5) / 2 - 0.5.
    x = np.clip((np.arange(40) + 0.5) / 2 - 0.5, 0, 19)
    np.testing.assert_allclose(up, np.rint(10 * x), atol=1)


def test_color_jitter_identity_and_brightness():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    same = transforms.color_jitter(
        video, rng, brightness=0, contrast=0, saturation=0, hue=0
    )
    np.testing.assert_array_equal(same, video)
    gray = np.full((2, 4, 4, 3), 100, np.uint8)
    out = transforms.color_jitter(
        gray, rng, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1
    )
    # Gray stays gray under saturation and hue; all frames get the same draw.
    assert np.ptp(out.astype(int), axis=-1).max() <= 1
    assert len(np.unique(out)) <= 2


def test_random_erasing_one_box_per_clip_within_area_range():
    rng = np.random.default_rng(1)
    video = np.full((4, 40, 50, 3), 7, np.uint8)
    for _ in range(50):
        out = transforms.random_erasing(video, rng, area=(0.02, 1 / 3), aspect=(0.3, 3.33))
        changed = (out != 7).any(axis=-1)
        box = changed.any(axis=0)
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        area = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / (40 * 50)
        assert 0.015 <= area <= 0.36
        # The same box in every frame, filled with fresh random pixels.
        assert (changed.sum(axis=(1, 2)) >= 0.9 * box.sum()).all()
        assert not np.array_equal(out[0][box], out[1][box])
