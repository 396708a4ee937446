"""Classifies video files with a SqueezeTime checkpoint.

    python -m squeezetime_jax.predict --checkpoint PATH [--classes classes.txt]
        [--views 10x3] [--json] VIDEO [VIDEO ...]

For each video, the top-5 classes with their probabilities (softmax averaged
over the views). Views follow the checkpoint's test protocol (clips, crops, short
side, crop size and frame interval stored with it; else 10 clips x 3 crops at short
side 224); --views CLIPSxCROPS (e.g. 1x1 for speed), --short_side and --crop_size
override it. A video that cannot be read is reported on its own line with the
reason; the others are still classified, and the exit status is 1. Class names:
--classes (one per line), else those stored with the checkpoint, else the
Kinetics-400 names shipped with the package for a 400-class model. PATH may also
be a released checkpoint's name (k400, k600, hmdb51).
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from squeezetime_jax import cli
from squeezetime_jax.data.video_decode import VideoDecodeError
from squeezetime_jax.inference.videos import (  # noqa: F401 (the command's library)
    Predictor,
    default_class_names,
    parse_views,
    read_class_file,
    top_k,
)


def define_view_flags(flags: cli.Flags) -> tuple:
    """--checkpoint and the view flags (checkpoint, views, short_side, crop_size,
    batch_size holders), shared with squeezetime_jax.features."""
    return (
        flags.string(
            "checkpoint",
            None,
            "Training workdir, converted checkpoint directory or .pth (local or gs://), "
            "or a released checkpoint's name (k400, k600, hmdb51).",
            required=True,
        ),
        flags.string(
            "views",
            None,
            "CLIPSxCROPS (default: the checkpoint's test protocol, else 10x3); 1x1 is "
            "one centre clip.",
        ),
        flags.integer(
            "short_side",
            None,
            "Resize the short side to this (default: the checkpoint's, else 224).",
        ),
        flags.integer(
            "crop_size", None, "Crop size (default: the checkpoint's, else 224)."
        ),
        flags.integer("batch_size", None, "Views per forward pass (all views)."),
    )


FLAGS = cli.Flags("python -m squeezetime_jax.predict", __doc__)
CHECKPOINT, VIEWS, SHORT_SIDE, CROP_SIZE, BATCH_SIZE = define_view_flags(FLAGS)
CLASSES = FLAGS.string("classes", None, "Class names, one per line, in label order.")
TOP_K = FLAGS.integer("top_k", 5, "Classes listed per video.")
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
        views = parse_views(VIEWS.value) if VIEWS.value else None
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
            else predictor.class_names
        )
        views = predictor.views
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
