"""Encoding frames into a video file with PyAV: the one writer used by the demo's
generator, the test fixtures and the input benchmarks."""

from __future__ import annotations

import fractions
import os
from typing import Iterable, Mapping, Sequence

import av
import numpy as np


def encode_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    codec: str = "libx264",
    container_format: str = "mp4",
    options: Mapping[str, str] | None = None,
    gop_size: int | None = None,
    max_b_frames: int | None = None,
    threads: int | None = None,
    frame_durations: Sequence[int] | None = None,
) -> str:
    """Encodes uint8 (H, W, 3) RGB frames as yuv420p; returns the path.

    `frame_durations` (one per frame, in units of 1 / (10 * fps) s) gives every frame
    an explicit timestamp, for variable frame rates; without it the muxer assigns
    them at `fps`.
    """
    path = os.fspath(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to encode")
    with av.open(path, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options or {})
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        if max_b_frames is not None:
            stream.codec_context.max_b_frames = max_b_frames
        if threads is not None:
            stream.codec_context.thread_count = threads
        time_base = None
        if frame_durations is not None:
            # A fine time base lets variable-frame-rate timestamps be exact.
            time_base = fractions.Fraction(1, fps * 10)
            stream.codec_context.time_base = time_base
        pts = 0
        for index, image in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if time_base is not None:
                frame.pts, frame.time_base = pts, time_base
                pts += int(frame_durations[index])
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest
