"""Spatial and colour transforms as the released recipe (mmaction2 v1.2) defines them."""

import platform

import numpy as np
import pytest

from squeezetime_jax.data import transforms


def test_multiscale_crop_sizes_and_offsets_follow_mmaction2():
    rng = np.random.default_rng(0)
    h, w = 256, 340
    sizes = [256, 224, 192, 168, 128]  # int(256 * s) for the recipe scales, 224 snapped
    allowed = {(sizes[j], sizes[i]) for i in range(5) for j in range(5) if abs(i - j) <= 1}
    seen_sizes, seen_offsets = set(), set()
    for _ in range(3000):
        top, left, ch, cw = transforms.multiscale_crop_box(
            h,
            w,
            rng,
            scales=(1, 0.875, 0.75, 0.66, 0.5),
            max_aspect_gap=1,
            input_size=224,
            random_crop=False,
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


def test_multiscale_random_crop_reaches_every_box_mmaction2_can_draw():
    # mmaction2 (random_crop=True): sizes int(short * scale) for scale pairs at most
    # max_wh_scale_gap apart, snapped to input_size within 3 pixels; offsets from
    # random.randint(0, W - w) and (0, H - h), both ends included.
    h, w, scales, size = 16, 21, (1, 0.875, 0.75, 0.5), 13
    sides = [int(min(h, w) * s) for s in scales]  # 16, 14, 12, 8
    sides = [size if abs(x - size) < 3 else x for x in sides]  # 14 and 12 snap to 13
    expected = set()
    for i in range(len(scales)):
        for j in range(len(scales)):
            if abs(i - j) <= 1:
                ch, cw = sides[i], sides[j]
                expected |= {
                    (top, left, ch, cw)
                    for top in range(h - ch + 1)
                    for left in range(w - cw + 1)
                }
    rng = np.random.default_rng(0)
    seen = {
        transforms.multiscale_crop_box(
            h, w, rng, scales=scales, max_aspect_gap=1, input_size=size
        )
        for _ in range(40000)
    }
    assert seen == expected


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


def test_opencv_hsv_conversions_bit_exact():
    cv2 = pytest.importorskip("cv2")
    # Every (r, g) pair with b on a grid of 32 levels (ties and all sextants included);
    # every H with S and V on 64 levels. The whole cube agrees too (16x slower).
    levels = np.arange(256)
    rgb = np.stack(
        np.meshgrid(levels, levels, np.arange(3, 256, 8), indexing="ij"), -1
    ).astype(np.uint8)
    rgb = rgb.reshape(256 * 256, 32, 3)
    np.testing.assert_array_equal(
        transforms.rgb_to_hsv_u8(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    )
    hsv = np.stack(
        np.meshgrid(np.arange(180), levels, np.arange(1, 256, 4), indexing="ij"), -1
    ).astype(np.uint8)
    hsv = hsv.reshape(180 * 256, 64, 3)
    np.testing.assert_array_equal(
        transforms.hsv_to_rgb_u8(hsv), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    )


def _mmaction2_color_jitter(video, order, factors, cv2):
    """mmaction2 v1.2 ColorJitter.transform for given draws, frame by frame with
    OpenCV, as its code reads: float32 frames, each op skipped at its identity, the
    contrast mean re-reduced over the frame, hue through cv2 HSV, truncation last."""
    b, c, s, h = (float(x) for x in factors)
    frames = []
    for frame in video:
        img = frame.astype(np.float32)
        for op in order:
            grey = 0.2989 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
            if op == 0 and b != 1:
                img = img * np.float32(b)
            elif op == 1 and c != 1:
                img = np.float32(c) * img + np.float32(1 - c) * np.float32(grey.mean())
            elif op == 2 and s != 1:
                img = np.float32(s) * img + np.float32(1 - s) * grey[..., None]
            elif op == 3 and h != 0:
                u8 = np.clip(img, 0, 255).astype(np.uint8)
                hsv = cv2.cvtColor(u8, cv2.COLOR_RGB2HSV)
                hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(h * 255)) % 180
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def test_color_jitter_equals_mmaction2_with_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(30):
        video = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        order, factors = transforms.color_jitter_params(
            rng,
            brightness=0.5,
            contrast=0.5,
            saturation=0.5,
            hue=0.1,
            order=rng.permutation(4),
        )
        np.testing.assert_array_equal(
            transforms.apply_color_jitter(video, order, factors),
            _mmaction2_color_jitter(video, order, factors, cv2),
        )


def test_hue_through_opencv_equals_the_numpy_conversions(monkeypatch):
    pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    # Float levels beyond [0, 255] too: both paths clip and truncate them first.
    video = rng.uniform(-20, 280, (3, 24, 20, 3)).astype(np.float32)
    hues = (-0.5, -0.1, -0.001, 0.05, 0.1, 0.5)
    if transforms._opencv() is None:  # it must be used on the x86 builds we pin
        assert platform.machine() not in ("x86_64", "AMD64")
        pytest.skip("OpenCV converts HSV otherwise on this machine")
    fast = [transforms.adjust_hue(video, hue) for hue in hues]
    monkeypatch.setattr(transforms, "_opencv", lambda: None)
    for hue, got in zip(hues, fast):
        want = transforms.adjust_hue(video, hue)
        assert got.dtype == want.dtype == np.float32 and got.shape == video.shape
        np.testing.assert_array_equal(got, want, err_msg=f"hue {hue}")


def test_an_opencv_that_converts_otherwise_is_not_used(monkeypatch, caplog):
    cv2 = pytest.importorskip("cv2")
    convert = cv2.cvtColor

    def off_by_one_level(image, code):  # as a build without fused multiply-adds might
        out = convert(image, code)
        if code == cv2.COLOR_HSV2RGB:
            out[0, 0, 0] = out[0, 0, 0] ^ 1
        return out

    monkeypatch.setattr(cv2, "cvtColor", off_by_one_level)
    transforms._opencv.cache_clear()
    try:
        assert transforms._opencv() is None
        assert "converts 8-bit HSV otherwise" in caplog.text
    finally:
        monkeypatch.undo()
        transforms._opencv.cache_clear()
    if platform.machine() in ("x86_64", "AMD64"):
        assert transforms._opencv() is cv2


def test_color_jitter_no_clamping_between_ops_and_hue_units():
    # Brightness 1.5 takes 200 to 300 and it stays 300 for the contrast step: grey
    # mean (300 + 30) / 2 * 0.9999, so 0.5 * 300 + 0.5 * 164.98 = 232.49 -> 232
    # (clamping at 255 first would give 198).
    video = np.zeros((1, 1, 2, 3), np.uint8)
    video[0, 0, 0], video[0, 0, 1] = 200, 20
    out = transforms.apply_color_jitter(
        video, np.array([0, 1, 2, 3]), np.array([1.5, 0.5, 1, 0], np.float32)
    )
    assert out[0, 0, 0].tolist() == [232] * 3 and out[0, 0, 1].tolist() == [97] * 3
    # Hue: int(h * 255) units of OpenCV's 180, truncated towards zero.
    assert [transforms.hue_offset(h) for h in (0.1, -0.1, 0.0039, -0.05)] == [
        25,
        -25,
        0,
        -12,
    ]
    # Pure red (hue 0) shifted by 25 units = 50 degrees, towards yellow.
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 255
    out = transforms.apply_color_jitter(
        red, np.array([3, 0, 1, 2]), np.array([1, 1, 1, 0.1], np.float32)
    )
    assert out.ravel().tolist() == [255, 212, 0]  # 255 * 50 / 60 = 212.5, truncated
    # A shift of 0 units still goes through 8-bit HSV (mmaction2 skips only h == 0).
    rng = np.random.default_rng(3)
    video = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    tiny = transforms.apply_color_jitter(
        video, np.arange(4), np.array([1, 1, 1, 0.001], np.float32)
    )
    assert not np.array_equal(tiny, video) and np.abs(tiny - video.astype(int)).max() < 8


def test_jitter_order_is_fixed_per_seed_as_mmaction2_builds_it():
    orders = {tuple(transforms.jitter_order(seed)) for seed in range(40)}
    assert len(orders) > 6 and all(sorted(o) == [0, 1, 2, 3] for o in orders)
    np.testing.assert_array_equal(transforms.jitter_order(7), transforms.jitter_order(7))
    fixed = transforms.jitter_order(7)
    rng = np.random.default_rng(0)
    for _ in range(5):
        order, _ = transforms.color_jitter_params(
            rng, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1, order=fixed
        )
        np.testing.assert_array_equal(order, fixed)
    with pytest.raises(ValueError, match="hue"):
        transforms.color_jitter_params(
            rng, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.6
        )


def test_random_erasing_one_box_per_clip_within_area_range():
    rng = np.random.default_rng(1)
    video = np.full((4, 40, 50, 3), 7, np.uint8)
    for _ in range(50):
        out = transforms.random_erasing(
            video, rng, area=(0.02, 1 / 3), aspect=(0.3, 10 / 3)
        )
        changed = (out != 7).any(axis=-1)
        box = changed.any(axis=0)
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        area = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) / (40 * 50)
        assert 0.015 <= area <= 0.36
        # The same box in every frame, filled with fresh random pixels.
        assert (changed.sum(axis=(1, 2)) >= 0.9 * box.sum()).all()
        assert not np.array_equal(out[0][box], out[1][box])


def test_random_erasing_box_one_draw_clipped_as_mmaction2():
    # mmaction2 RandomErasing.random_patch: h = min(round(sqrt(A r)), H),
    # w = min(round(sqrt(A / r)), W), top = randint(0, H - h) (end excluded) when
    # h < H, else 0. Never redrawn: large boxes are clipped to the frame.
    height, width = 10, 12
    rng = np.random.default_rng(0)
    tops, clipped = {}, 0
    for _ in range(4000):
        top, left, h, w = transforms.random_erasing_box(
            rng, height, width, area=(0.3, 1.0), aspect=(0.3, 10 / 3)
        )
        assert 1 <= h <= height and 1 <= w <= width
        assert (top == 0) if h == height else 0 <= top < height - h
        assert (left == 0) if w == width else 0 <= left < width - w
        clipped += h == height or w == width
        tops.setdefault(h, []).append(top)
        # Unclipped sides come from an area in range and an aspect in range.
        if h < height and w < width:
            assert 0.3 * 120 - 12 <= h * w <= 120 + 12
            assert 0.3 / 1.6 <= h / w <= 10 / 3 * 1.6
    assert clipped > 400  # the old rejection sampling never produced these
    for h, drawn in tops.items():
        if h < height and len(drawn) > 200:  # randint's end (H - h) is never drawn
            assert set(drawn) == set(range(height - h)), h
