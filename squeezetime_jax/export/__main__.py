"""Exports a checkpoint for mobile and checks every file against the JAX model.

  python -m squeezetime_jax.export --checkpoint PATH --format {pytorch,executorch,onnx,all}
      --out DIR [--frames 16 --size 224] [--raw-input] [--int8]

PATH is a released-layout .pth, a converted checkpoint directory or a train.py workdir
(its latest checkpoint). Writes a .pth
state_dict and a torch.export .pt2 (pytorch), an XNNPACK-lowered ExecuTorch .pte
(executorch; with --int8 also a PT2E int8 one) and an .onnx (onnx). Inputs are float32
(1, 3, T, H, W), normalized, or 0..255 pixels with --raw-input. Exits non-zero when a
file's logits differ from the JAX model's beyond the documented tolerance.
"""

from __future__ import annotations

import argparse
import sys

from squeezetime_jax.checkpoints.errors import CheckpointError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m squeezetime_jax.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="released-layout .pth, converted checkpoint directory or train.py workdir "
        "(its latest checkpoint)",
    )
    parser.add_argument(
        "--format",
        required=True,
        action="append",
        choices=("pytorch", "executorch", "onnx", "all"),
        help="what to write (repeatable; 'all' for every format)",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames per clip (default: the model's, 16 for the releases)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="crop size H = W (default: the model's image_size, 224)",
    )
    parser.add_argument(
        "--raw-input",
        action="store_true",
        help="programs take 0..255 pixels; normalization folded into the stem convolution",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 (PT2E, XNNPACK) ExecuTorch program",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from squeezetime_jax.export import mobile as export

    formats = export.FORMATS if "all" in args.format else args.format
    try:
        export.export_checkpoint(
            args.checkpoint,
            args.out,
            formats,
            frames=args.frames,
            size=args.size,
            raw_input=args.raw_input,
            int8=args.int8,
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
