"""Frame sampling (mmaction2 SampleFrames) and that decoded pixels are those frames."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from squeezetime_jax.data import (
    make_eval_dataset,
    make_train_dataset,
    sampling,
    video_decode,
)
from tests.fixtures import synthetic_videos as sv
from tests.fixtures.demo_dataset import DATASET
from tests.fixtures.demo_dataset import small_data_config as small_config
from tests.fixtures.demo_dataset import write_demo_dataset as prepare_suite


def expected_test_indices(n, clip_len, interval, num_clips):
    """mmaction2 (>= 1.0) SampleFrames._get_test_clips, one clip at a time.

    A clip covers (clip_len - 1) * interval + 1 frames; its starts run from 0 to the
    last start that fits (0 for a shorter video) in num_clips - 1 equal float steps,
    each rounded by Python's round (half to even, as np.round); one clip takes the
    floor of the middle. Indices past the end wrap around ('loop').
    """
    last = max(n - ((clip_len - 1) * interval + 1), 0)
    if num_clips == 1:
        starts = [last // 2]
    else:
        step = last / float(num_clips - 1)
        starts = [round(k * step) for k in range(num_clips)]
    return np.array([[(s + j * interval) % n for j in range(clip_len)] for s in starts])


@pytest.mark.parametrize(
    "n", [1, 9, 40, 60, 61, 62, 63, 64, 65, 66, 70, 71, 100, 119, 250, 300, 1000]
)
@pytest.mark.parametrize("num_clips", [1, 2, 3, 7, 10])
def test_test_mode_matches_mmaction2(n, num_clips):
    got = sampling.sample_frame_indices(n, 16, 4, num_clips, train=False)
    np.testing.assert_array_equal(got, expected_test_indices(n, 16, 4, num_clips))


def test_test_mode_release_examples():
    # 300 frames, 16 x 4: the last clip that fits starts at 300 - 61 = 239.
    got = sampling.clip_offsets(300, 16, 4, 10, train=False)
    np.testing.assert_array_equal(got, [0, 27, 53, 80, 106, 133, 159, 186, 212, 239])
    assert sampling.clip_offsets(300, 16, 4, 1, train=False).tolist() == [119]
    # HMDB51's 2 clips: the first and the last start.
    assert sampling.clip_offsets(300, 16, 4, 2, train=False).tolist() == [0, 239]
    # Ties round to even: last start 9 over 6 steps is 1.5 per step.
    assert sampling.clip_offsets(70, 16, 4, 7, train=False).tolist() == [
        0,
        2,
        3,
        4,
        6,
        8,
        9,
    ]
    # Shorter than one clip: every clip starts at 0 and wraps.
    np.testing.assert_array_equal(
        sampling.sample_frame_indices(9, 16, 4, 3, train=False),
        np.tile((4 * np.arange(16)) % 9, (3, 1)),
    )


def test_val_centre_clip_example():
    # 100 frames, a clip spans 61: starts 0..39, the middle one is 19.
    got = sampling.sample_frame_indices(100, 16, 4, 1, train=False)
    np.testing.assert_array_equal(got[0], 19 + 4 * np.arange(16))


@pytest.mark.parametrize("n", [5, 40, 62, 63])
def test_train_short_video_starts_at_zero_and_loops(n):
    rng = np.random.default_rng(0)
    got = sampling.sample_frame_indices(n, 16, 4, 1, train=True, rng=rng)[0]
    np.testing.assert_array_equal(got, (4 * np.arange(16)) % n)


def test_train_offsets_cover_the_valid_range_uniformly():
    rng = np.random.default_rng(0)
    n = 70  # starts 0..6 are valid (70 - 64 + 1 = 7)
    starts = [
        sampling.sample_frame_indices(n, 16, 4, 1, train=True, rng=rng)[0, 0]
        for _ in range(2000)
    ]
    counts = np.bincount(starts, minlength=7)
    assert len(counts) == 7 and counts.min() > 200


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vids")
    return {v.path: v for v in sv.write_suite(root) if v.num_frames}, root


def frame_indices(video, num_frames):
    """Recovers each frame's index from its content (see synthetic_videos)."""
    return sv.read_frame_indices(video, num_frames)


@pytest.mark.parametrize(
    "name", ["c0/bframes.mp4", "c1/vfr.mp4", "c2/mpeg4.avi", "c1/vp9.webm"]
)
def test_decoded_pixels_are_the_requested_frames(files, name):
    videos, root = files
    n = videos[name].num_frames
    data = (root / name).read_bytes()
    assert video_decode.probe(data).num_frames == n
    rng = np.random.default_rng(1)
    wanted = np.concatenate([rng.permutation(n)[:12], [n - 1, 0, 0]])
    frames = video_decode.decode_frames(data, wanted)
    np.testing.assert_array_equal(frame_indices(frames, n), wanted)
    frames = video_decode.decode_frames(data, wanted, short_side=24)
    assert frames.shape == (len(wanted), 24, 32, 3)
    np.testing.assert_array_equal(frame_indices(frames, n), wanted)


def test_short_stream_reports_decoded_count(files):
    videos, root = files
    with pytest.raises(video_decode.ShortVideoError) as e:
        video_decode.decode_frames((root / "c0/short.mp4").read_bytes(), [3, 20])
    assert e.value.num_decoded == 9


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out, videos, _ = prepare_suite(str(tmp_path_factory.mktemp("s")))
    return out, {v.path: v for v in videos if v.num_frames}


def test_val_pipeline_pixels_are_centre_clip(prepared):
    out, videos = prepared
    cfg = small_config(out)
    ds = make_eval_dataset(
        cfg,
        batch_size_per_process=2,
        protocol="val",
        split="train",
        process_index=0,
        process_count=1,
    )
    seen = 0
    for batch in ds:
        for k in np.flatnonzero(batch["mask"]):
            vid = ds.video_ids[batch["video_index"][k]]
            n = videos[vid].num_frames
            np.testing.assert_array_equal(
                frame_indices(batch["video"][k], n), expected_test_indices(n, 16, 4, 1)[0]
            )
            seen += 1
    assert seen == len(videos)


def test_test_pipeline_30_views_with_crop_positions(prepared):
    out, videos = prepared
    cfg = small_config(out)
    ds = make_eval_dataset(
        cfg,
        batch_size_per_process=8,
        protocol="test",
        split="train",
        process_index=0,
        process_count=1,
    )
    assert ds.views_per_video == 30
    views = {}
    for batch in ds:
        for k in np.flatnonzero(batch["mask"]):
            key = (
                int(batch["video_index"][k]),
                int(batch["clip_index"][k]),
                int(batch["crop_index"][k]),
            )
            assert key not in views
            views[key] = batch["video"][k]
    assert len(views) == 30 * len(videos)
    # 64x48 frames at short side 48 stay 64x48; three 48x48 crops at x = 0, 16, 8.
    ramp = np.rint(sv.x_ramp(64))
    expected_x = [0, 16, 8]
    for (v, clip, crop), video in views.items():
        n = videos[ds.video_ids[v]].num_frames
        np.testing.assert_array_equal(
            frame_indices(video, n), expected_test_indices(n, 16, 4, 10)[clip]
        )
        x0 = expected_x[crop]
        red = sv.read_red_columns(video)
        # Chroma is stored per 2x2 pixels, so compare smoothed values: a crop 8 columns
        # off would be ~25 levels off.
        np.testing.assert_allclose(red.mean(), ramp[x0 : x0 + 48].mean(), atol=2)
        np.testing.assert_allclose(
            red.reshape(6, 8).mean(1), ramp[x0 : x0 + 48].reshape(6, 8).mean(1), atol=3
        )


def test_train_pipeline_pixels_follow_a_valid_random_offset(prepared):
    out, videos = prepared
    cfg = small_config(out)
    cfg.num_frames, cfg.frame_interval = 8, 2  # span 16 < most videos: offsets vary
    cfg.train.multiscale_crop = False
    cfg.train.color_jitter = False
    cfg.train.random_erasing_prob = 0.0
    cfg.train.flip_prob = 0.0
    source = tfds.data_source(DATASET, split="train", data_dir=out)
    n_of_label = {}
    for i in range(len(source)):
        n_of_label.setdefault(int(source[i]["label"]), set()).add(
            int(source[i]["num_frames"])
        )
    it = iter(
        make_train_dataset(
            cfg, batch_size_per_process=5, seed=3, process_index=0, process_count=1
        )
    )
    starts = set()
    for _ in range(4):
        batch = next(it)
        assert batch["video"].shape == (5, 8, 32, 32, 3)
        for video, label in zip(batch["video"], batch["label"]):
            matches = []
            for n in n_of_label[int(label)]:
                idx = frame_indices(video, n)
                start = idx[0]
                if np.array_equal(idx, (start + 2 * np.arange(8)) % n) and start <= max(
                    0, n - 16
                ):
                    matches.append(start)
            assert matches, "frames are not a clip of stride 2 from a valid offset"
            starts.add(matches[0])
    assert len(starts) > 3  # the offset is random


@pytest.mark.parametrize("name", ["c0/bframes.mp4", "c1/vfr.mp4", "c2/mpeg4.avi"])
def test_keyframe_seek_gives_the_same_frames_as_decoding_from_start(files, name):
    videos, root = files
    n = videos[name].num_frames
    data = (root / name).read_bytes()
    wanted = set(range(n // 2, n, 3))
    convert = lambda f: f.to_ndarray(format="rgb24")
    seeked = video_decode._decode_by_timestamp(data, wanted, convert, 1)
    assert seeked is not None  # timestamps are usable in these files: this path is taken
    full = video_decode._decode_from_start(data, wanted, convert, 1)
    assert seeked.keys() == full.keys() == wanted
    for i in wanted:
        np.testing.assert_array_equal(seeked[i], full[i])
    np.testing.assert_array_equal(
        frame_indices(np.stack([seeked[i] for i in sorted(wanted)]), n), sorted(wanted)
    )


def test_rotation_metadata_is_applied(tmp_path):
    spec = sv.VideoSpec(num_frames=6, bframes=False)
    src = sv.write_video(tmp_path / "landscape.mp4", spec)
    with open(sv.write_rotated_copy(src, tmp_path / "portrait.mp4"), "rb") as f:
        data = f.read()
    info = video_decode.probe(data)
    assert (info.width, info.height) == (48, 64)  # displayed as portrait
    frames = video_decode.decode_frames(data, [1, 4])
    assert frames.shape == (2, 64, 48, 3)
    np.testing.assert_array_equal(frame_indices(frames[:, :, 24:], 6), [1, 4])
    # Turned clockwise: the red ramp of the bottom half now runs down the left half.
    red = frames[0, :, :20, 0].astype(float).mean(axis=1)
    np.testing.assert_allclose(red, np.rint(sv.x_ramp(64)), atol=6)
    # The train path (crop cut and scaled during decoding) sees the same orientation.
    crop = video_decode.decode_frames(
        data, [1], short_side=48, crop_resize=((0, 0, 64, 48), 64, 48)
    )
    np.testing.assert_allclose(crop[0].astype(int), frames[0].astype(int), atol=3)


def test_odd_frame_size(tmp_path):
    spec = sv.VideoSpec(
        codec="libvpx-vp9",
        container="webm",
        num_frames=12,
        width=63,
        height=47,
        bframes=False,
    )
    with open(sv.write_video(tmp_path / "odd.webm", spec), "rb") as f:
        data = f.read()
    info = video_decode.probe(data)
    assert (info.width, info.height, info.num_frames) == (63, 47, 12)
    frames = video_decode.decode_frames(data, [0, 11, 5])
    assert frames.shape == (3, 47, 63, 3)
    np.testing.assert_array_equal(frame_indices(frames, 12), [0, 11, 5])
    crops = video_decode.decode_frames(
        data, [2, 7], short_side=47, crop_resize=((0, 15, 47, 47), 32, 32)
    )
    assert crops.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(frame_indices(crops, 12), [2, 7])
