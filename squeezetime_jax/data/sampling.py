"""Temporal sampling with the semantics of mmaction2's SampleFrames (video input).

The released SqueezeTime recipe samples with mmaction2 (>= 1.0, which its configs need),
so clips here are the frames that recipe would read: training takes a random offset;
test mode (validation and test) places the first of `num_clips` clips at frame 0 and
the last at the last start whose clip fits (the rule mmaction2 took from PySlowFast),
the starts in between evenly spaced and rounded half to even, and a single clip at
the middle start; indices past the end loop back to the start.
"""

from __future__ import annotations

import numpy as np


def clip_offsets(
    total_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Start frame of each clip, shape (num_clips,)."""
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    if not train:
        return _test_offsets(total_frames, clip_len, frame_interval, num_clips)
    span = clip_len * frame_interval
    if rng is None:
        raise ValueError("training sampling needs an rng")
    avg = (total_frames - span + 1) // num_clips
    if avg > 0:
        return np.arange(num_clips) * avg + rng.integers(0, avg, size=num_clips)
    if total_frames > max(num_clips, span):
        return np.sort(rng.integers(0, total_frames - span + 1, size=num_clips))
    if avg == 0:
        ratio = (total_frames - span + 1.0) / num_clips
        return np.around(np.arange(num_clips) * ratio).astype(np.int64)
    return np.zeros(num_clips, np.int64)


def _test_offsets(total_frames, clip_len, frame_interval, num_clips) -> np.ndarray:
    # The clip covers (clip_len - 1) * interval + 1 frames, so its last start is
    # total_frames minus that (0 when the video is shorter: every clip starts at 0).
    last_start = max(total_frames - ((clip_len - 1) * frame_interval + 1), 0)
    if num_clips == 1:
        return np.array([last_start // 2], np.int64)
    # Same float arithmetic as mmaction2 (k * (last / (n - 1)), then np.round, which
    # rounds halves to even), so ties land on the same frame.
    step = last_start / float(num_clips - 1)
    return np.round(np.arange(num_clips) * step).astype(np.int64)


def sample_frame_indices(
    total_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices, shape (num_clips, clip_len); out-of-range indices loop."""
    offsets = clip_offsets(
        total_frames, clip_len, frame_interval, num_clips, train=train, rng=rng
    )
    inds = offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(inds, total_frames).astype(np.int64)
