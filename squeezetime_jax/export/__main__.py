"""Exports a checkpoint for mobile and checks every file against the JAX model.

  python -m squeezetime_jax.export --checkpoint PATH --format {pytorch,executorch,onnx,all}
      --out DIR [--frames 16 --size 224] [--raw_input] [--int8]

PATH is a released-layout .pth, a converted checkpoint directory or a train.py workdir
(its latest checkpoint). Writes a .pth
state_dict and a torch.export .pt2 (pytorch), an XNNPACK-lowered ExecuTorch .pte
(executorch; with --int8 also a PT2E int8 one) and an .onnx (onnx). Inputs are float32
(1, 3, T, H, W), normalized, or 0..255 pixels with --raw_input. Exits non-zero when a
file's logits differ from the JAX model's beyond the documented tolerance.
"""

from __future__ import annotations

import sys
from typing import Sequence

from squeezetime_jax import cli
from squeezetime_jax.checkpoints.errors import CheckpointError

FORMAT_CHOICES = ("pytorch", "executorch", "onnx", "all")

FLAGS = cli.Flags("python -m squeezetime_jax.export", __doc__)
CHECKPOINT = FLAGS.string(
    "checkpoint",
    None,
    "Released-layout .pth, converted checkpoint directory or train.py workdir (its "
    "latest checkpoint).",
    required=True,
)
FORMAT = FLAGS.multi_string(
    "format",
    None,
    f"What to write, one of {', '.join(FORMAT_CHOICES)} (repeatable; 'all' for every "
    "format).",
    required=True,
)
OUT = FLAGS.string("out", None, "Output directory.", required=True)
FRAMES = FLAGS.integer(
    "frames", None, "Frames per clip (default: the model's, 16 for the releases)."
)
SIZE = FLAGS.integer("size", None, "Crop size H = W (default: the model's, 224).")
RAW_INPUT = FLAGS.boolean(
    "raw_input",
    False,
    "Programs take 0..255 pixels; normalization folded into the stem convolution.",
)
INT8 = FLAGS.boolean(
    "int8", False, "Also write an int8 (PT2E, XNNPACK) ExecuTorch program."
)


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    if positional := FLAGS.parse(argv):
        raise cli.UsageError(f"unexpected arguments: {positional}")
    unknown = [f for f in FORMAT.value if f not in FORMAT_CHOICES]
    if unknown:
        raise cli.UsageError(f"--format {unknown[0]!r}: one of {', '.join(FORMAT_CHOICES)}")
    from squeezetime_jax.export import mobile as export

    formats = export.FORMATS if "all" in FORMAT.value else FORMAT.value
    try:
        export.export_checkpoint(
            CHECKPOINT.value,
            OUT.value,
            formats,
            frames=FRAMES.value,
            size=SIZE.value,
            raw_input=RAW_INPUT.value,
            int8=INT8.value,
        )
    except export.MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except export.ParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
