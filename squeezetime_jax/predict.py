"""Classifies video files with a SqueezeTime checkpoint.

    python -m squeezetime_jax.predict --checkpoint PATH [--classes classes.txt] \
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

import argparse
import json
import sys
from typing import Sequence

import jax
import numpy as np

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m squeezetime_jax.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="training workdir, converted checkpoint directory or .pth",
    )
    parser.add_argument("--classes", help="class names, one per line, in label order")
    parser.add_argument(
        "--views",
        default="10x3",
        help="CLIPSxCROPS (default: 10x3, the test protocol; 1x1 is one centre clip)",
    )
    parser.add_argument(
        "--short_side", type=int, help="resize the short side to this (default 224)"
    )
    parser.add_argument("--crop_size", type=int, help="crop size (default 224)")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--batch_size", type=int, help="views per forward pass")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("videos", nargs="+", metavar="VIDEO")
    args = parser.parse_args(argv)
    try:
        views = parse_views(args.views)
        predictor = Predictor(
            args.checkpoint,
            views=views,
            short_side=args.short_side,
            crop_size=args.crop_size,
            batch_size=args.batch_size,
        )
        num_classes = predictor.model_config.num_classes
        names = (
            read_class_file(args.classes, num_classes)
            if args.classes
            else default_class_names(args.checkpoint, num_classes)
        )
    except (ValueError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    except Exception as error:  # checkpoint errors name the file
        parser.exit(2, f"error: {type(error).__name__}: {error}\n")

    failures = 0
    for path in args.videos:
        try:
            probabilities = predictor.probabilities(path)
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            reason = (
                f"unreadable video: {error}"
                if isinstance(error, VideoDecodeError)
                else f"{type(error).__name__}: {error}"
            )
            if args.json:
                print(json.dumps({"video": path, "error": reason}), flush=True)
            else:
                print(f"{path}: error: {reason}", flush=True)
            continue
        best = top_k(probabilities, names, args.top_k)
        if args.json:
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
        print(f"{failures} of {len(args.videos)} videos could not be read", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
