"""Classifying video files: a checkpoint's views of a file, their mean probabilities
and the top classes (the library behind `python -m squeezetime_jax.predict` and
`python -m squeezetime_jax.features`)."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from squeezetime_jax import files
from squeezetime_jax.data import default_data_config, eval_protocol
from squeezetime_jax.data.single_video import read_video_bytes, video_views
from squeezetime_jax.evaluation.scoring import softmax
from squeezetime_jax.inference.model import load


def parse_views(text: str) -> tuple[int, int]:
    """'10x3' -> (10 clips, 3 crops)."""
    try:
        clips, crops = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"--views {text!r}: expected CLIPSxCROPS, e.g. 10x3 or 1x1"
        ) from None
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"--views {text!r}: clips must be >= 1 and crops 1 or 3")
    return clips, crops


def read_class_file(path: str, num_classes: int) -> list[str]:
    names = [line.strip() for line in files.read_text(path).splitlines() if line.strip()]
    if len(names) != num_classes:
        raise ValueError(
            f"{path}: {len(names)} class names, but the model predicts "
            f"{num_classes} classes"
        )
    return names


def default_class_names(checkpoint: str, num_classes: int) -> list[str]:
    """The names stored with a checkpoint, the shipped K400 names, or class_<i>."""
    from squeezetime_jax.checkpoints.restore import restore

    return restore(checkpoint).metadata.class_names_for(num_classes)


class Predictor:
    """Mean softmax probabilities of a video file's views under a checkpoint."""

    def __init__(
        self,
        checkpoint: str,
        *,
        views: tuple[int, int] | None = None,
        short_side: int | None = None,
        crop_size: int | None = None,
        batch_size: int | None = None,
    ):
        # The default device: an accelerator where there is one.
        self.model = load(checkpoint, device=jax.devices()[0])
        self.model_config = self.model.config
        self.class_names = self.model.class_names
        self.data_config = default_data_config()
        # The clip settings stored with the checkpoint; the arguments override them.
        self.model.metadata.apply_to_data_config(self.data_config)
        self.data_config.num_frames = self.model_config.num_frames
        overrides = {"base": "test"}
        if views:
            overrides.update(num_clips=views[0], num_crops=views[1])
        if short_side:
            overrides["short_side"] = short_side
        if crop_size:
            overrides["crop_size"] = crop_size
        elif short_side and short_side < self.data_config.test.crop_size:
            overrides["crop_size"] = short_side
        self.protocol = eval_protocol(self.data_config, overrides)
        self.views = (self.protocol.num_clips, self.protocol.num_crops)
        self.batch_size = batch_size or self.views[0] * self.views[1]

    def view_logits(self, video: np.ndarray) -> np.ndarray:
        """Logits of (V, T, C, C, 3) uint8 views, in fixed-size batches (one compile)."""
        return self.model.pixel_logits(video, self.batch_size)

    def read_views(self, path: str) -> dict[str, np.ndarray]:
        """The file's views under this protocol; VideoDecodeError if it is unreadable."""
        return video_views(read_video_bytes(path), self.data_config, self.protocol)

    def probabilities(self, path: str) -> np.ndarray:
        """Mean softmax over the views; VideoDecodeError if the file is unreadable."""
        return softmax(self.view_logits(self.read_views(path)["video"])).mean(axis=0)


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"class": class_names[i], "index": int(i), "probability": float(probabilities[i])}
        for i in order
    ]
