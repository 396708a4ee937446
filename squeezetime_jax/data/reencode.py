"""Optional prepare-time re-encoding to the training resolution with a short, fixed GOP.

A Kinetics file is typically H.264 with a keyframe every few seconds and B-frames that
other frames reference, so a 16x4 training clip at a random offset decodes on average
half a GOP of lead-in plus every frame of its 61-frame span. Re-encoding once at
preparation time to

  * short side 256 (the size the recipe resizes to anyway: decoding is cheaper, and the
    train crop is cut from frames already at that size), and
  * a keyframe every `gop` frames with `bframes` B-frames between reference frames
    that nothing references (x264 `b-pyramid=none`, fixed `b-adapt=0`, no scene-cut
    keyframes),

bounds the lead-in to `gop` frames and lets the decoder skip the unwanted B-frames, so
a clip with interval 4 decodes about 16 P-frames, its wanted B-frames and a short
lead-in. Every frame is kept, in presentation order, so frame indices (and hence the
mmaction2 sampling) are unchanged; the frame rate becomes constant. The pixels are a
second lossy generation at the given CRF: a change to the data, documented as such.
"""

from __future__ import annotations

import dataclasses
import fractions
import io

import av
import numpy as np

from squeezetime_jax.data import video_decode


@dataclasses.dataclass(frozen=True)
class ReencodeSpec:
    short_side: int = 256
    gop: int = 32
    bframes: int = 3
    crf: int = 23
    preset: str = "veryfast"
    tune: str = ""  # x264 tune; "fastdecode" (CAVLC, no deblocking) decodes faster


def parse_spec(text: str) -> ReencodeSpec:
    """'short_side=256,gop=32[,bframes=3,crf=23,preset=veryfast,tune=fastdecode]'."""
    fields = {f.name: f.type for f in dataclasses.fields(ReencodeSpec)}
    values = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"--reencode item {item!r}: expected KEY=VALUE with KEY in {sorted(fields)}"
            )
        values[key] = value if key in ("preset", "tune") else _positive_int(key, value)
    spec = ReencodeSpec(**values)
    if spec.short_side % 2 or spec.bframes < 0 or spec.crf > 51:
        raise ValueError(f"--reencode {text!r}: short_side must be even, crf at most 51")
    return spec


def _positive_int(key: str, value: str) -> int:
    if not value.isdigit() or (int(value) == 0 and key not in ("bframes", "crf")):
        raise ValueError(f"--reencode {key}={value!r}: expected a positive integer")
    return int(value)


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """mmcv's short-side size, the long side rounded to even (4:2:0 needs even sides)."""
    h, w = video_decode.short_side_size(height, width, short_side)
    return h + h % 2, w + w % 2


def reencode(data: bytes, spec: ReencodeSpec) -> bytes:
    """Encoded video bytes -> H.264 mp4 bytes at `spec`; every decodable frame is kept.

    Raises:
      VideoDecodeError: the source does not decode or has no frames.
    """
    src = video_decode._open(data)
    out_buf = io.BytesIO()
    n = 0
    try:
        stream = src.streams.video[0]
        stream.codec_context.thread_count = 1  # one core per prepare worker
        rate = stream.average_rate or stream.guessed_rate or fractions.Fraction(30)
        with av.open(out_buf, "w", format="mp4") as dst:
            enc = None
            try:
                for frame in src.decode(stream):
                    if enc is None:
                        enc = _encoder(dst, frame, rate, spec)
                    img = _scaled_yuv(frame, enc.height, enc.width)
                    img.pts, img.time_base = n, enc.codec_context.time_base
                    # A decoded frame carries its source picture type, which x264 would obey.
                    img.pict_type = av.video.frame.PictureType.NONE
                    dst.mux(enc.encode(img))
                    n += 1
            except av.FFmpegError as e:
                if (
                    n == 0
                ):  # a corrupt tail keeps the frames before it, as training would read
                    raise video_decode.VideoDecodeError(f"no frame decodes: {e}") from e
            if enc is None:
                raise video_decode.VideoDecodeError("no decodable frame")
            dst.mux(enc.encode(None))
    finally:
        src.close()
    return out_buf.getvalue()


def _encoder(dst, frame: av.VideoFrame, rate, spec: ReencodeSpec):
    width, height = video_decode._rotated_size(frame)
    h, w = output_size(height, width, spec.short_side)
    enc = dst.add_stream("libx264", rate=rate)
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.codec_context.time_base = fractions.Fraction(1, 1) / rate
    enc.codec_context.thread_count = 1
    enc.options = {
        **({"tune": spec.tune} if spec.tune else {}),
        "preset": spec.preset,
        "crf": str(spec.crf),
        "x264-params": (
            f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes={spec.bframes}"
            ":b-pyramid=none:b-adapt=0"
        ),
    }
    return enc


def _scaled_yuv(frame: av.VideoFrame, h: int, w: int) -> av.VideoFrame:
    if video_decode._rotation(frame):
        # Rotation is applied to the pixels, so the output needs no display matrix.
        rgb = video_decode._to_rgb(frame, None)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")
