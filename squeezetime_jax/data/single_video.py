"""All evaluation views of one video file, sampled and cropped as the eval pipeline does.

For classifying loose files (python -m squeezetime_jax.predict): the file is probed
for its frame count, then decoded by the same per-element function the evaluation
dataset maps over, so a file gets exactly the views its record would get.
"""

from __future__ import annotations

import os

import numpy as np

from squeezetime_jax import files
from squeezetime_jax.data import clips, video_decode
from squeezetime_jax.data.pipeline import EvalProtocol


def read_video_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; VideoDecodeError (with the reason) when it cannot be read."""
    path = os.fspath(path)
    if not files.exists(path):
        raise video_decode.VideoDecodeError("no such file")
    if files.isdir(path):
        raise video_decode.VideoDecodeError("is a directory")
    try:
        return files.read_bytes(path)
    except OSError as e:
        raise video_decode.VideoDecodeError(f"cannot read file: {e.strerror or e}") from e


def video_views(data: bytes, data_config, protocol: EvalProtocol) -> dict[str, np.ndarray]:
    """dict(video uint8 (V, T, C, C, 3), clip_index, crop_index), V = clips x crops.

    Raises:
      VideoDecodeError: the bytes are not a decodable video (the message says why).
    """
    probe = video_decode.probe(data)
    record = {"video": data, "num_frames": probe.num_frames, "label": 0}
    views = clips.EvalViews(data_config, protocol).map((0, record))
    if views["decode_failed"].any():
        raise video_decode.VideoDecodeError("the sampled frames do not decode")
    return {k: views[k] for k in ("video", "clip_index", "crop_index")}
