"""Exports a checkpoint for mobile and checks every file against the JAX model.

  python -m squeezetime_jax.export --checkpoint PATH --format {pytorch,executorch,onnx,all}
      --out DIR [--frames 16 --size 224] [--raw-input] [--int8
      [--calibration_data DATA --calibration_clips N] [--check_data DATA]]

PATH is a released-layout .pth or a converted checkpoint directory. Writes a .pth
state_dict and a torch.export .pt2 (pytorch), an XNNPACK-lowered ExecuTorch .pte
(executorch; with --int8 also a PT2E int8 one) and an .onnx (onnx). Inputs are float32
(1, 3, T, H, W), normalized, or 0..255 pixels with --raw-input. Exits non-zero when a
file's logits differ from the JAX model's beyond the documented tolerance.

int8 is calibrated on real clips with --calibration_data (a prepared dataset directory,
its --calibration_split, or a video list `PATH [LABEL]` per line); --check_data
measures the int8 program's top-1 agreement with float32, and both accuracies, on
held-out clips (--check_split of a prepared dataset, or a list), and
--max_int8_accuracy_drop makes a larger drop an error.
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
        help="released-layout .pth or converted checkpoint directory",
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
    int8 = parser.add_argument_group("int8 calibration and check (with --int8)")
    int8.add_argument(
        "--calibration_data",
        default=None,
        help="prepared dataset directory (DIR or DIR:CONFIG) or video list file; "
        "default: synthetic clips",
    )
    int8.add_argument(
        "--calibration_clips",
        type=int,
        default=None,
        help="videos to calibrate on (centre clip of each; default 64)",
    )
    int8.add_argument("--calibration_split", default="train")
    int8.add_argument(
        "--check_data",
        default=None,
        help="held-out clips: prepared dataset directory or video list file",
    )
    int8.add_argument(
        "--check_clips", type=int, default=None, help="videos to check on (default: all)"
    )
    int8.add_argument("--check_split", default="test")
    int8.add_argument(
        "--frame_interval",
        type=int,
        default=4,
        help="frames between sampled frames of real clips (the model's training setting)",
    )
    int8.add_argument(
        "--short_side",
        type=int,
        default=None,
        help="real clips: short side before the centre crop (default: --size)",
    )
    int8.add_argument(
        "--max_int8_accuracy_drop",
        type=float,
        default=None,
        help="fail when int8 top-1 on the check data is more than this below float32 "
        "(a fraction: 0.01 = 1 point); default: report only",
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
            calibration_data=args.calibration_data,
            calibration_clips=args.calibration_clips or export.CALIBRATION_DATA_CLIPS,
            calibration_split=args.calibration_split,
            check_data=args.check_data,
            check_clips=args.check_clips,
            check_split=args.check_split,
            frame_interval=args.frame_interval,
            short_side=args.short_side,
            max_int8_accuracy_drop=args.max_int8_accuracy_drop,
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
