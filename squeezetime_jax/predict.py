"""Classifies video files with a SqueezeTime checkpoint.

    python -m squeezetime_jax.predict --checkpoint PATH [--classes classes.txt]
        [--views 10x3] [--json] VIDEO [VIDEO ...]

For each video, the top-5 classes with their probabilities (softmax averaged
over the views). Views follow the test protocol (10 clips x 3 crops at short
side 224) unless --views CLIPSxCROPS (e.g. 1x1 for speed) says otherwise. A video
that cannot be read is reported on its own line with the reason; the others are
still classified, and the exit status is 1. Class names: --classes (one per
line), else a training workdir's dataset, else the Kinetics-400 names shipped
with the package for a 400-class model.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

import jax
import numpy as np

from squeezetime_jax import cli
from squeezetime_jax.data import default_data_config, eval_protocol
from squeezetime_jax.data.single_video import read_video_bytes, video_views
from squeezetime_jax.data.video_decode import VideoDecodeError
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
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
        raise ValueError(
            f"{path}: {len(names)} class names, but the model predicts "
            f"{num_classes} classes"
        )
    return names


def default_class_names(checkpoint: str, num_classes: int) -> list[str]:
    """A training workdir's dataset names, the shipped K400 names, or class_<i>."""
    from squeezetime_jax.checkpoints import workdir

    if workdir.is_workdir(checkpoint):
        try:
            from squeezetime_jax.data import dataset_info

            data = workdir.read_config(checkpoint)["data"]
            names = dataset_info(data.get("data_dir"), data["dataset"]).class_names
            if len(names) == num_classes:
                return names
        except Exception:  # the dataset is not on this machine: fall through
            pass
    if num_classes == 400:
        from squeezetime_jax.resources import kinetics400_class_names

        return kinetics400_class_names()
    return [f"class_{i}" for i in range(num_classes)]


class Predictor:
    """Mean softmax probabilities of a video file's views under a checkpoint."""

    def __init__(
        self,
        checkpoint: str,
        *,
        views: tuple[int, int] = (10, 3),
        short_side: int | None = None,
        crop_size: int | None = None,
        batch_size: int | None = None,
    ):
        # The default device: an accelerator where there is one.
        self.model = load(checkpoint, device=jax.devices()[0])
        self.model_config = self.model.config
        self.data_config = default_data_config()
        self.data_config.num_frames = self.model_config.num_frames
        overrides = {"base": "test", "num_clips": views[0], "num_crops": views[1]}
        if short_side:
            overrides["short_side"] = short_side
        if crop_size:
            overrides["crop_size"] = crop_size
        elif short_side and short_side < self.data_config.test.crop_size:
            overrides["crop_size"] = short_side
        self.protocol = eval_protocol(self.data_config, overrides)
        self.batch_size = batch_size or views[0] * views[1]

    def view_logits(self, video: np.ndarray) -> np.ndarray:
        """Logits of (V, T, C, C, 3) uint8 views, in fixed-size batches (one compile)."""
        return self.model.pixel_logits(video, self.batch_size)

    def probabilities(self, path: str) -> np.ndarray:
        """Mean softmax over the views; VideoDecodeError if the file is unreadable."""
        views = video_views(read_video_bytes(path), self.data_config, self.protocol)
        return softmax(self.view_logits(views["video"])).mean(axis=0)


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"class": class_names[i], "index": int(i), "probability": float(probabilities[i])}
        for i in order
    ]


FLAGS = cli.Flags("python -m squeezetime_jax.predict", __doc__)
CHECKPOINT = FLAGS.string(
    "checkpoint",
    None,
    "Training workdir, converted checkpoint directory or .pth (local or gs://).",
    required=True,
)
CLASSES = FLAGS.string("classes", None, "Class names, one per line, in label order.")
VIEWS = FLAGS.string(
    "views", "10x3", "CLIPSxCROPS: 10x3 is the test protocol, 1x1 one centre clip."
)
SHORT_SIDE = FLAGS.integer("short_side", None, "Resize the short side to this (224).")
CROP_SIZE = FLAGS.integer("crop_size", None, "Crop size (224).")
TOP_K = FLAGS.integer("top_k", 5, "Classes listed per video.")
BATCH_SIZE = FLAGS.integer("batch_size", None, "Views per forward pass (all views).")
JSON = FLAGS.boolean("json", False, "One JSON object per line.")


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        videos = FLAGS.parse(argv)
    except cli.UsageError as error:
        _fail(str(error))
    if not videos:
        _fail("no VIDEO given")
    try:
        views = parse_views(VIEWS.value)
        predictor = Predictor(
            CHECKPOINT.value,
            views=views,
            short_side=SHORT_SIDE.value,
            crop_size=CROP_SIZE.value,
            batch_size=BATCH_SIZE.value,
        )
        num_classes = predictor.model_config.num_classes
        names = (
            read_class_file(CLASSES.value, num_classes)
            if CLASSES.value
            else default_class_names(CHECKPOINT.value, num_classes)
        )
    except (ValueError, OSError) as error:
        _fail(str(error))
    except Exception as error:  # checkpoint errors name the file
        _fail(f"{type(error).__name__}: {error}")

    failures = 0
    for path in videos:
        try:
            probabilities = predictor.probabilities(path)
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            reason = (
                f"unreadable video: {error}"
                if isinstance(error, VideoDecodeError)
                else f"{type(error).__name__}: {error}"
            )
            if JSON.value:
                print(json.dumps({"video": path, "error": reason}), flush=True)
            else:
                print(f"{path}: error: {reason}", flush=True)
            continue
        best = top_k(probabilities, names, TOP_K.value)
        if JSON.value:
            print(
                json.dumps({"video": path, "views": views[0] * views[1], "top": best}),
                flush=True,
            )
        else:
            print(path)
            for entry in best:
                print(f"  {entry['probability']:7.2%}  {entry['class']}")
            sys.stdout.flush()
    if failures:
        print(f"{failures} of {len(videos)} videos could not be read", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
