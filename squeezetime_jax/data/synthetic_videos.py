"""Real, tiny video files made with PyAV, for tests, demos and benchmarks.

Each frame's content encodes its presentation index, so a reader can tell which frames
were sampled despite lossy compression: the top half of the frame is a flat gray level
``index_to_level(i, n)`` (flat gray has no chroma, so it survives codecs and the YUV
4:2:0 round trip within about a level), and in the bottom half red is a horizontal
ramp, so a crop's horizontal position can be read from its red values.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import struct

import av
import numpy as np

# Levels stay inside [LOW, HIGH]: video codecs clip YUV to the "limited" 16-235 range.
_LOW, _HIGH = 24.0, 224.0


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """How to encode one synthetic video."""

    codec: str = "libx264"
    container: str = "mp4"
    num_frames: int = 40
    width: int = 64
    height: int = 48
    fps: int = 25
    bframes: bool = True
    variable_frame_rate: bool = False


def index_to_level(index: int, num_frames: int) -> float:
    """Green level that encodes frame `index` of a `num_frames`-frame video."""
    if num_frames <= 1:
        return _LOW
    return _LOW + (_HIGH - _LOW) * index / (num_frames - 1)


def level_to_index(level: np.ndarray | float, num_frames: int) -> np.ndarray:
    """Inverse of `index_to_level`, rounding to the nearest frame index."""
    if num_frames <= 1:
        return np.zeros_like(np.asarray(level), dtype=np.int64)
    idx = (np.asarray(level, np.float64) - _LOW) * (num_frames - 1) / (_HIGH - _LOW)
    return np.clip(np.rint(idx), 0, num_frames - 1).astype(np.int64)


def x_ramp(width: int) -> np.ndarray:
    """Red value of each column in the bottom half: a linear ramp."""
    return np.linspace(_LOW, _HIGH, width, dtype=np.float64)


def make_frame(index: int, spec: VideoSpec) -> np.ndarray:
    """The RGB uint8 frame `index` of a video described by `spec`."""
    frame = np.full((spec.height, spec.width, 3), index_to_level(index, spec.num_frames))
    frame[spec.height // 2 :, :, 0] = x_ramp(spec.width)[None, :]
    return np.rint(frame).astype(np.uint8)


def read_frame_indices(video: np.ndarray, num_frames: int) -> np.ndarray:
    """Frame index of each frame of a (..., H, W, 3) clip made by `make_frame`.

    Works on any crop or resize that keeps some of the top half (the top quarter is read).
    """
    h = video.shape[-3]
    level = video[..., : max(1, h // 4), :, :].astype(np.float64).mean(axis=(-3, -2, -1))
    return level_to_index(level, num_frames)


def read_red_columns(video: np.ndarray) -> np.ndarray:
    """Mean red of each column over the bottom quarter rows (and any leading axes)."""
    h, w = video.shape[-3], video.shape[-2]
    red = video[..., h - max(1, h // 4) :, :, 0].astype(np.float64)
    return red.reshape(-1, red.shape[-2], w).mean(axis=(0, 1))


def _codec_options(spec: VideoSpec) -> dict[str, str]:
    if spec.codec == "libx264":
        # Near-lossless so the encoded levels read back within a level or two.
        opts = {"crf": "4", "preset": "ultrafast" if not spec.bframes else "medium"}
        # Fixed B-frame placement: adaptive placement may choose none for simple content.
        opts["x264-params"] = "bframes=3:b-adapt=0" if spec.bframes else "bframes=0"
        return opts
    if spec.codec == "mpeg4":
        return {"qmin": "1", "qmax": "3"}  # near-lossless, so levels read back
    if spec.codec in ("libvpx-vp9", "libvpx"):
        return {"crf": "4", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return {}


def write_video(path: str | os.PathLike, spec: VideoSpec = VideoSpec()) -> str:
    """Encodes `spec.num_frames` frames into `path`; returns the path."""
    path = os.fspath(path)
    with av.open(path, mode="w", format=spec.container) as container:
        stream = container.add_stream(spec.codec, rate=spec.fps)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.options = _codec_options(spec)
        if spec.codec == "mpeg4":
            stream.codec_context.max_b_frames = 0
            # Inter frames skip small flat changes, which would blur the index levels.
            stream.codec_context.gop_size = 1
        if spec.codec == "libx264" and spec.bframes:
            stream.codec_context.gop_size = 12
        # A fine time base lets variable-frame-rate timestamps be exact.
        time_base = fractions.Fraction(1, spec.fps * 10)
        stream.codec_context.time_base = time_base
        pts = 0
        for i in range(spec.num_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i, spec), format="rgb24")
            frame.pts = pts
            frame.time_base = time_base
            # Variable frame rate: alternate short and long frame durations.
            pts += (5 if i % 3 else 23) if spec.variable_frame_rate else 10
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_truncated(
    src: str | os.PathLike, dst: str | os.PathLike, keep_fraction: float = 0.3
) -> str:
    """Copies the first `keep_fraction` of the bytes of `src` into `dst`."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: max(1, int(len(data) * keep_fraction))])
    return os.fspath(dst)


def write_rotated_copy(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copies an mp4 with its track matrix set to "display rotated 90 degrees clockwise".

    The matrix a phone writes for a portrait recording (ffmpeg reports rotation -90).
    """
    with open(src, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"tkhd")
    if at < 0:
        raise ValueError(f"{src}: no tkhd box (not an mp4?)")
    # Version 0 tkhd: version/flags, 5 x 32-bit fields, 8 reserved, 4 x 16-bit fields,
    # then the 3x3 fixed-point matrix.
    matrix = at + 4 + (40 if data[at + 4] == 0 else 52)
    data[matrix : matrix + 36] = struct.pack(
        ">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000
    )
    with open(dst, "wb") as f:
        f.write(bytes(data))
    return os.fspath(dst)


def write_zero_bytes(path: str | os.PathLike) -> str:
    open(path, "wb").close()
    return os.fspath(path)


@dataclasses.dataclass(frozen=True)
class SuiteVideo:
    path: str  # relative to the suite root
    label: int
    num_frames: int | None  # None for files that must be rejected
    reason: str = ""  # why a rejected file is bad


def write_suite(root: str | os.PathLike) -> list[SuiteVideo]:
    """A small set of real files covering the containers and failure modes readers meet.

    Good: H.264 mp4 with B-frames, variable-frame-rate H.264, MPEG-4 avi, VP9 webm, and
    a video shorter than one 16x4 clip. Bad: a truncated mp4 (its index is lost), a
    zero-byte file and a listed file that does not exist.
    """
    root = os.fspath(root)
    good = [
        ("bframes.mp4", 0, VideoSpec(num_frames=60)),
        ("vfr.mp4", 1, VideoSpec(num_frames=45, variable_frame_rate=True)),
        (
            "mpeg4.avi",
            2,
            VideoSpec(codec="mpeg4", container="avi", num_frames=50, bframes=False),
        ),
        (
            "vp9.webm",
            1,
            VideoSpec(codec="libvpx-vp9", container="webm", num_frames=30, bframes=False),
        ),
        ("short.mp4", 0, VideoSpec(num_frames=9)),
    ]
    out = []
    for name, label, spec in good:
        os.makedirs(os.path.join(root, f"c{label}"), exist_ok=True)
        rel = f"c{label}/{name}"
        write_video(os.path.join(root, rel), spec)
        out.append(SuiteVideo(rel, label, spec.num_frames))
    write_truncated(os.path.join(root, out[0].path), os.path.join(root, "c2/truncated.mp4"))
    write_zero_bytes(os.path.join(root, "c0/empty.mp4"))
    out += [
        SuiteVideo("c2/truncated.mp4", 2, None, "cannot open container"),
        SuiteVideo("c0/empty.mp4", 0, None, "empty file"),
        SuiteVideo("c1/missing.mp4", 1, None, "missing file"),
    ]
    return out


def write_list(path: str | os.PathLike, videos: list[SuiteVideo]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for v in videos:
            f.write(f"{v.path} {v.label}\n")
    return os.fspath(path)
