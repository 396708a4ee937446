"""Exports a checkpoint for mobile and checks every file against the JAX model.

  python -m squeezetime_jax.export --checkpoint PATH --format {pytorch,executorch,onnx,all}
      --out DIR [--frames 16 --size 224] [--raw_input] [--int8
      [--calibration_data DATA --calibration_clips N] [--check_data DATA]]

PATH is a released-layout .pth, a converted checkpoint directory, a train.py workdir
(its latest checkpoint) or a released checkpoint's name (k400...). The export info
carries the checkpoint's class names and clip settings. Writes a .pth
state_dict and a torch.export .pt2 (pytorch), an XNNPACK-lowered ExecuTorch .pte
(executorch; with --int8 also a PT2E int8 one) and an .onnx (onnx). Inputs are float32
(1, 3, T, H, W), normalized, or 0..255 pixels with --raw_input. Exits non-zero when a
file's logits differ from the JAX model's beyond the documented tolerance.

int8 is calibrated on real clips with --calibration_data (a prepared dataset directory,
its --calibration_split, or a video list `PATH [LABEL]` per line); --check_data
measures the int8 program's top-1 agreement with float32, and both accuracies, on
held-out clips (--check_split of a prepared dataset, or a list), and
--max_int8_accuracy_drop makes a larger drop an error.
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
    "Released-layout .pth, converted checkpoint directory, train.py workdir (its "
    "latest checkpoint) or a released checkpoint's name (k400, k600, hmdb51).",
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
SIZE = FLAGS.integer(
    "size",
    None,
    "Crop size H = W (default: the checkpoint's eval crop size, else the model's, 224).",
)
RAW_INPUT = FLAGS.boolean(
    "raw_input",
    False,
    "Programs take 0..255 pixels; normalization folded into the stem convolution.",
)
INT8 = FLAGS.boolean(
    "int8", False, "Also write an int8 (PT2E, XNNPACK) ExecuTorch program."
)

CALIBRATION_DATA = FLAGS.string(
    "calibration_data",
    None,
    "int8: calibrate on real clips, a prepared dataset directory (DIR or DIR:CONFIG) or "
    "a video list file (default: a few synthetic clips).",
)
CALIBRATION_CLIPS = FLAGS.integer(
    "calibration_clips", 64, "int8: videos to calibrate on (the centre clip of each)."
)
CALIBRATION_SPLIT = FLAGS.string(
    "calibration_split", "train", "int8: split of a prepared calibration dataset."
)
CHECK_DATA = FLAGS.string(
    "check_data",
    None,
    "int8: held-out clips (prepared dataset directory or video list file) on which the "
    "int8 program's top-1 is compared with float32's.",
)
CHECK_CLIPS = FLAGS.integer("check_clips", None, "int8: videos to check on (default: all).")
CHECK_SPLIT = FLAGS.string(
    "check_split", "test", "int8: split of a prepared check dataset."
)
FRAME_INTERVAL = FLAGS.integer(
    "frame_interval",
    None,
    "Real clips: frames between sampled frames (default: the checkpoint's, else 4).",
)
SHORT_SIDE = FLAGS.integer(
    "short_side",
    None,
    "Real clips: short side before the centre crop (default: the checkpoint's test "
    "protocol's, scaled to --size, else --size).",
)
MAX_INT8_DROP = FLAGS.float(
    "max_int8_accuracy_drop",
    None,
    "Fail when int8 top-1 on the check data is more than this below float32's (a "
    "fraction: 0.01 = 1 point); default: report only.",
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
            calibration_data=CALIBRATION_DATA.value,
            calibration_clips=CALIBRATION_CLIPS.value,
            calibration_split=CALIBRATION_SPLIT.value,
            check_data=CHECK_DATA.value,
            check_clips=CHECK_CLIPS.value,
            check_split=CHECK_SPLIT.value,
            frame_interval=FRAME_INTERVAL.value,
            short_side=SHORT_SIDE.value,
            max_int8_accuracy_drop=MAX_INT8_DROP.value,
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
