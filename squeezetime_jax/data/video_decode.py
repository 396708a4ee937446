"""PyAV decoding from encoded bytes held in memory.

Frames are indexed in presentation order, counted as the decoder emits them. That is
what a user means by "frame i", and it holds for B-frames (the decoder reorders
packets into presentation order), variable frame rate (no timestamp arithmetic) and
containers whose header frame count is wrong or absent (the header is never used).
"""

from __future__ import annotations

import dataclasses
import io
import threading

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter


class VideoDecodeError(Exception):
    """A video could not be decoded; the message says why."""


class ShortVideoError(VideoDecodeError):
    """The stream ended before a requested frame; `num_decoded` frames were readable."""

    def __init__(self, num_decoded: int, wanted: int):
        super().__init__(
            f"stream ends after {num_decoded} frames, frame {wanted} requested"
        )
        self.num_decoded = num_decoded


@dataclasses.dataclass(frozen=True)
class VideoProbe:
    num_frames: int
    width: int  # after applying rotation metadata
    height: int


def _open(data: bytes):
    if not data:
        raise VideoDecodeError("empty file (0 bytes)")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise VideoDecodeError(f"cannot open container: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("no video stream")
    return container


def _rotated_size(frame: av.VideoFrame) -> tuple[int, int]:
    if abs(_rotation(frame)) in (90, 270):
        return frame.height, frame.width
    return frame.width, frame.height


def _rotation(frame: av.VideoFrame) -> int:
    try:
        return int(round(frame.rotation)) % 360
    except (AttributeError, TypeError, ValueError):
        return 0


def probe(data: bytes) -> VideoProbe:
    """Checks that `data` holds a decodable video and counts its frames.

    Frames are counted by demuxing the video stream (one packet per frame), which is far
    cheaper than decoding and ignores the header count. The first frame is decoded to
    prove the stream is readable.
    """
    container = _open(data)
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as e:
            raise VideoDecodeError(f"first frame does not decode: {e}") from e
        if first is None:
            raise VideoDecodeError("no decodable frame")
        width, height = _rotated_size(first)
        container.seek(0)
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    count += 1
        except av.FFmpegError as e:
            if count == 0:
                raise VideoDecodeError(f"demuxing fails: {e}") from e
        if count == 0:
            raise VideoDecodeError("zero frames")
        return VideoProbe(num_frames=count, width=width, height=height)
    finally:
        container.close()


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side scaled to `short_side`, as mmcv rescales."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def decode_frames(
    data: bytes,
    indices: np.ndarray,
    *,
    short_side: int | None = None,
    crop_resize: tuple[tuple[int, int, int, int], int, int] | None = None,
    threads: int = 1,
    crop_resizes: list | None = None,
    packets: "PacketTable | None" = None,
) -> np.ndarray:
    """Decodes the frames at presentation `indices` (any order, repeats allowed).

    Decoding stops after the largest requested index. Only requested frames are
    converted to RGB, at the size where the short side is `short_side` (libswscale
    bilinear) or the native size if None. Rotation metadata is applied.

    With `crop_resize` = ((top, left, height, width), out_h, out_w), the box given in
    the coordinates of the short-side-resized frame is cut from the decoded frame and
    scaled to out_h x out_w in one resampling (instead of resize, crop, resize).
    With `crop_resizes`, a list of such tuples, every frame is decoded once and cut for
    each: the result is (len(indices), len(crop_resizes), out_h, out_w, 3).
    With `packets` (stored at preparation time by `packet_table`), the needed packets are
    fed straight to a decoder: no container open, no demuxing, no seek.

    Returns:
      uint8 array (len(indices), H, W, 3).
    Raises:
      ShortVideoError: the stream ended (or broke) before the largest index.
      VideoDecodeError: no frame could be decoded at all.
    """
    if crop_resizes is not None:
        if short_side is None or crop_resize is not None:
            raise ValueError("crop_resizes needs short_side and excludes crop_resize")
        convert = lambda frame: np.stack(
            [_crop_resize_rgb(frame, short_side, *c) for c in crop_resizes]
        )
    elif crop_resize is None:
        convert = lambda frame: _to_rgb(frame, short_side)
    else:
        if short_side is None:
            raise ValueError("crop_resize needs short_side")
        convert = lambda frame: _crop_resize_rgb(frame, short_side, *crop_resize)
    return _decode_converted(data, indices, convert, threads, packets)


def decode_yuv420_crops(
    data: bytes,
    indices: np.ndarray,
    *,
    short_side: int,
    box: tuple[int, int, int, int],
    buffer: int,
    threads: int = 1,
    packets: "PacketTable | None" = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Like `decode_frames` with `crop_resize`, but the box is cut as YUV 4:2:0 planes at
    the short-side scale, neither scaled to the output size nor converted to RGB: both
    happen on the accelerator (`device_yuv`). A plane copy per frame for records
    re-encoded at the training short side.

    Returns:
      (frames, yuv_to_rgb): uint8 (len(indices), 3 * buffer // 2, buffer) packed as
      `pack_yuv420` does, with the crop of `yuv_crop_size(box)` in the top-left of each
      plane; and the (3, 4) colour matrix of the stream (`yuv_to_rgb_matrix`).
    """
    matrix = []

    def convert(frame):
        if not matrix:
            matrix.append(yuv_to_rgb_matrix(frame))
        return _crop_yuv420(frame, short_side, box, buffer)

    frames = _decode_converted(data, indices, convert, threads, packets)
    return frames, matrix[0]


def _decode_converted(data, indices, convert, threads, packets) -> np.ndarray:
    """The fastest decode path that works, then the converted frames in `indices` order."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    if indices.size == 0:
        raise ValueError("no frame indices requested")
    wanted = set(int(i) for i in indices)
    got = None
    if packets is not None:
        got = _decode_from_table(data, packets, wanted, convert, threads)
    if got is None:
        got = _decode_by_timestamp(data, wanted, convert, threads)
    if got is None:
        got = _decode_from_start(data, wanted, convert, threads)
    return np.stack([got[int(i)] for i in indices])


def _decode_from_start(data, wanted, convert, threads) -> dict[int, np.ndarray]:
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    container = _open(data)
    n = 0
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        try:
            for frame in container.decode(stream):
                if n in wanted:
                    got[n] = convert(frame)
                n += 1
                if n > last:
                    break
        except av.FFmpegError as e:
            # Corrupt data inside the stream: what decoded so far is usable.
            if n == 0:
                raise VideoDecodeError(f"no frame decodes: {e}") from e
    finally:
        container.close()
    if n == 0:
        raise VideoDecodeError("no decodable frame")
    if n <= last:
        raise ShortVideoError(n, last)
    return got


def _decode_by_timestamp(data, wanted, convert, threads) -> dict[int, np.ndarray] | None:
    """Decodes only what the wanted frames need, indexing frames by timestamp.

    Frame i is the frame with the i-th smallest packet timestamp, which matches counting
    decoded frames from the start. Knowing each packet's frame index before decoding
    it allows two savings: start at the last keyframe before the first wanted frame,
    and let the decoder drop unwanted frames that nothing references (most B-frames).
    Returns None (decode from the start instead) whenever that mapping cannot be
    trusted: missing or repeated timestamps, a frame whose timestamp is not a packet's,
    a wanted frame that does not come out, any decoding error.
    """
    try:
        container = _open(data)
    except VideoDecodeError:
        return None
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count = threads
        index = _packet_index(container, stream)
        if index is None:
            return None
        order, keys = index
        last, first = max(wanted), min(wanted)
        if last >= len(order) or len(set(order)) != len(order):
            return None
        index_of = {p: i for i, p in enumerate(order)}
        starts = [k for k in keys if k <= order[first]]
        if not starts:
            return None
        if max(starts) > order[0]:
            container.seek(max(starts), stream=stream, backward=True, any_frame=False)
        else:
            container.seek(order[0], stream=stream, backward=True, any_frame=False)
        got = {}

        def take(frames) -> bool:
            return _take_frames(frames, index_of, wanted, last, convert, got)

        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                # Reference frames still decode: later frames need them.
                ctx.skip_frame = (
                    "DEFAULT" if index_of.get(packet.pts) in wanted else "NONREF"
                )
            if take(ctx.decode(packet if packet.size else None)):
                break
        else:
            ctx.skip_frame = "DEFAULT"
            take(ctx.decode(None))
        return got if len(got) == len(wanted) else None
    except (av.FFmpegError, _Untrusted):
        return None
    finally:
        container.close()


@dataclasses.dataclass(frozen=True)
class PacketTable:
    """Where a video's packets are in its file, for decoding without the container.

    rows: int64 (num_packets, 4) in file (decode) order: byte offset, size, pts, keyframe.
    """

    codec: str
    extradata: bytes
    rows: np.ndarray


def packet_table(data: bytes) -> PacketTable | None:
    """Demuxes `data` once and records its packets; None when that cannot be trusted
    (rotation metadata, which lives in the container; missing timestamps or offsets;
    packet bytes that are not a plain slice of the file)."""
    try:
        container = _open(data)
    except VideoDecodeError:
        return None
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        for frame in container.decode(stream):
            if _rotation(frame):
                return None
            break
        container.seek(0)
        rows = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            pos = packet.pos
            if (
                packet.pts is None
                or pos is None
                or pos < 0
                or data[pos : pos + packet.size] != bytes(packet)
            ):
                return None
            rows.append((pos, packet.size, packet.pts, int(packet.is_keyframe)))
        if not rows:
            return None
        return PacketTable(ctx.name, bytes(ctx.extradata or b""), np.array(rows, np.int64))
    except av.FFmpegError:
        return None
    finally:
        container.close()


def _decode_from_table(data, table: PacketTable, wanted, convert, threads):
    """`_decode_by_timestamp` over stored packets; None (fall back) on any surprise."""
    rows = table.rows
    order = np.sort(rows[:, 2])
    last, first = max(wanted), min(wanted)
    if last >= len(order) or np.any(order[1:] == order[:-1]):
        return None
    index_of = {int(p): i for i, p in enumerate(order)}
    # Decode from the last keyframe (in file order) whose frame is not after the first
    # wanted frame.
    keys = np.flatnonzero((rows[:, 3] == 1) & (rows[:, 2] <= order[first]))
    if keys.size == 0:
        return None
    try:
        ctx = av.CodecContext.create(table.codec, "r")
        if table.extradata:
            ctx.extradata = table.extradata
        ctx.thread_count = threads
        got = {}
        for pos, size, pts, _ in rows[keys[-1] :]:
            ctx.skip_frame = "DEFAULT" if index_of[int(pts)] in wanted else "NONREF"
            packet = av.Packet(data[pos : pos + size])
            packet.pts = int(pts)
            if _take_frames(ctx.decode(packet), index_of, wanted, last, convert, got):
                break
        else:
            ctx.skip_frame = "DEFAULT"
            _take_frames(ctx.decode(None), index_of, wanted, last, convert, got)
        return got if len(got) == len(wanted) else None
    except (av.FFmpegError, ValueError, _Untrusted):
        return None


def _take_frames(frames, index_of, wanted, last, convert, got) -> bool:
    """Converts the wanted frames into `got`; True once frame `last` came out."""
    for frame in frames:
        i = index_of.get(frame.pts)
        if i is None:
            raise _Untrusted
        if i in wanted:
            got[i] = convert(frame)
        if i >= last:
            return True
    return False


def _packet_index(container, stream) -> tuple[list[int], list[int]] | None:
    """(sorted presentation timestamps, keyframe timestamps) of all packets, by demuxing.

    None when a packet has no timestamp (frame indices cannot be trusted).
    """
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size:
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
    return sorted(pts), keys


class _Untrusted(Exception):
    pass


_local = threading.local()
_MAX_CONTEXTS = 16


def _reformatter(key) -> VideoReformatter:
    """A libswscale context kept per thread and per size/format: `frame.reformat` builds
    a new one on every call, which cost three times the scaling itself, and one context
    reused across sizes (several crops per frame) would be rebuilt at every switch."""
    cache = _local.__dict__.setdefault("reformatters", {})
    if key not in cache:
        if len(cache) >= _MAX_CONTEXTS:
            cache.pop(next(iter(cache)))
        cache[key] = VideoReformatter()
    return cache[key]


def _scale(frame: av.VideoFrame, w: int, h: int) -> av.VideoFrame:
    """libswscale bilinear scale to w x h, in the frame's own pixel format."""
    size = (frame.format.name, frame.width, frame.height, w, h)
    return _reformatter(("scale",) + size).reformat(
        frame, width=w, height=h, interpolation=Interpolation.BILINEAR
    )


def _scale_then_rgb(frame: av.VideoFrame, w: int, h: int) -> np.ndarray:
    # Scale in YUV first, then convert: faster than swscale's combined scale+convert
    # path, which also darkens colours by about 1.3 levels.
    return (
        _reformatter(("rgb", w, h))
        .reformat(_scale(frame, w, h), format="rgb24")
        .to_ndarray()
    )


def _to_rgb(frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
    rot = _rotation(frame)
    if short_side is None:
        img = frame.to_ndarray(format="rgb24")
    else:
        # Rotation by 90/270 swaps sides but not the short side's length.
        h, w = short_side_size(frame.height, frame.width, short_side)
        img = _scale_then_rgb(frame, w, h)
    if rot:
        # `rotation` is counter-clockwise degrees the display applies; rot90 turns CCW.
        img = np.ascontiguousarray(np.rot90(img, k=rot // 90))
    return img


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        out.append(rows[: plane.height, : plane.width])
    return out


def _cut_yuv420(
    planes, like: av.VideoFrame, y0: int, x0: int, hh: int, ww: int
) -> av.VideoFrame:
    """A new yuv420p frame holding the (even) box of the 4:2:0 `planes`, copied straight
    into its planes (one copy, no packing), with the colour tags of `like`."""
    cut = av.VideoFrame(ww, hh, "yuv420p")
    boxes = ((y0, x0, hh, ww), (y0 // 2, x0 // 2, hh // 2, ww // 2))
    for src, dst, (r, c, bh, bw) in zip(planes, cut.planes, boxes + boxes[1:]):
        rows = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
        rows[:bh, :bw] = src[r : r + bh, c : c + bw]
    cut.colorspace, cut.color_range = like.colorspace, like.color_range
    return cut


def _crop_resize_rgb(
    frame: av.VideoFrame, short_side: int, box, out_h: int, out_w: int
) -> np.ndarray:
    """Cuts `box` (short-side-resized coordinates) from the YUV frame, scales, converts.

    Working on YUV 4:2:0 planes keeps the per-frame cost to one small libswscale call;
    the box snaps to even source pixels, the 4:2:0 chroma grid.
    """
    if _rotation(frame):
        from squeezetime_jax.data import transforms  # rare: rotated phone videos

        img = _to_rgb(frame, short_side)[None]
        return transforms.resize_bilinear(transforms.crop(img, box), out_h, out_w)[0]
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    height, width = frame.height, frame.width
    scale = min(height, width) / short_side
    top, left, ch, cw = box

    def even(x):
        return int(round(x / 2)) * 2

    y0, x0 = min(even(top * scale), height - 2), min(even(left * scale), width - 2)
    hh = max(2, min(even(ch * scale), (height - y0) // 2 * 2))
    ww = max(2, min(even(cw * scale), (width - x0) // 2 * 2))
    return _scale_then_rgb(_cut_yuv420(_planes(frame), frame, y0, x0, hh, ww), out_w, out_h)


def yuv_crop_size(box) -> tuple[int, int]:
    """(height, width) in luma pixels of the YUV crop shipped for `box`: the box's size at
    the short-side scale, rounded down to even (the 4:2:0 chroma grid)."""
    _, _, ch, cw = box
    return max(2, int(ch) // 2 * 2), max(2, int(cw) // 2 * 2)


def pack_yuv420(y: np.ndarray, u: np.ndarray, v: np.ndarray, buffer: int) -> np.ndarray:
    """Y (h, w), U and V (h/2, w/2) -> one uint8 (3 * buffer // 2, buffer) array: Y in the
    top-left of the first `buffer` rows, then U and V, each a (buffer/2, buffer/2) block
    flattened into buffer/4 rows. Unused pixels are zero."""
    out = np.zeros((3 * buffer // 2, buffer), np.uint8)
    h, w = y.shape
    out[:h, :w] = y
    half = buffer // 2
    for k, plane in enumerate((u, v)):
        block = np.zeros((half, half), np.uint8)
        block[: h // 2, : w // 2] = plane
        out[buffer + k * buffer // 4 : buffer + (k + 1) * buffer // 4] = block.reshape(
            -1, buffer
        )
    return out


def yuv_to_rgb_matrix(frame: av.VideoFrame) -> np.ndarray:
    """(3, 4) float32 M with rgb = M @ (y, u, v, 1) for this frame's colour matrix and
    range, as libswscale converts: BT.709 when the stream says so, BT.601 otherwise
    (also when unspecified); full range only for JPEG-range streams."""
    kr, kb = (0.2126, 0.0722) if frame.colorspace == 1 else (0.299, 0.114)
    full = frame.color_range == 2
    ys, cs, y0 = (1.0, 1.0, 0.0) if full else (255 / 219, 255 / 224, 16.0)
    kg = 1 - kr - kb
    m = np.array(
        [
            [ys, 0.0, cs * 2 * (1 - kr)],
            [ys, -cs * 2 * (1 - kb) * kb / kg, -cs * 2 * (1 - kr) * kr / kg],
            [ys, cs * 2 * (1 - kb), 0.0],
        ]
    )
    offset = -m @ np.array([y0, 128.0, 128.0])
    return np.concatenate([m, offset[:, None]], axis=1).astype(np.float32)


def _crop_yuv420(frame: av.VideoFrame, short_side: int, box, buffer: int) -> np.ndarray:
    """Cuts `box` (short-side-resized coordinates) from the frame's YUV 4:2:0 planes at the
    short-side scale and packs it (`pack_yuv420`). Sources already at that scale (the
    `--reencode short_side=...` records) need no resampling at all: a plane copy."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    planes = _planes(frame)
    rot = _rotation(frame)
    if rot:
        planes = [np.ascontiguousarray(np.rot90(p, k=rot // 90)) for p in planes]
    height, width = planes[0].shape
    scale = min(height, width) / short_side
    top, left, ch, cw = box
    out_h, out_w = yuv_crop_size(box)
    if out_h > buffer or out_w > buffer:
        raise ValueError(
            f"crop {out_h}x{out_w} does not fit the {buffer}x{buffer} YUV buffer"
        )

    def even(x):
        return int(x) // 2 * 2

    hh = max(2, min(even(out_h * scale + 1), height // 2 * 2))
    ww = max(2, min(even(out_w * scale + 1), width // 2 * 2))
    y0 = min(even(top * scale + 1), height - hh)
    x0 = min(even(left * scale + 1), width - ww)
    if (hh, ww) != (out_h, out_w):
        return pack_yuv420(
            *_planes(_scale(_cut_yuv420(planes, frame, y0, x0, hh, ww), out_w, out_h)),
            buffer,
        )
    boxes = ((y0, x0, hh, ww), (y0 // 2, x0 // 2, hh // 2, ww // 2))
    cut = [
        p[r : r + bh, c : c + bw] for p, (r, c, bh, bw) in zip(planes, boxes + boxes[1:])
    ]
    return pack_yuv420(*cut, buffer)
