"""Temporal sampling with the semantics of mmaction2's SampleFrames (video input).

The released SqueezeTime recipe samples with mmaction2, so clips here are the frames
that recipe would read: training takes a random offset, test mode spreads `num_clips`
clips uniformly with each centred in its segment (validation is test mode with one
clip, i.e. the centre clip), and indices past the end loop back to the start.
"""

from __future__ import annotations

import numpy as np

MODES = ("train", "val", "test")


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
    span = clip_len * frame_interval
    if not train:
        avg = (total_frames - span + 1) / float(num_clips)
        if total_frames > span - 1:
            return (np.arange(num_clips) * avg + avg / 2.0).astype(np.int64)
        return np.zeros(num_clips, np.int64)
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
