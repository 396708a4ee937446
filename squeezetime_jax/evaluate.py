"""Evaluates SqueezeTime checkpoints with the paper's protocols.

    python eval.py --config configs/k400.py --checkpoint PATH --data PREPARED_DIR
        [--protocol test] [--output_dir DIR]
    python -m squeezetime_jax.evaluate ...       (the same command)

PATH is a train.py workdir (latest step, or --step), a converted checkpoint
directory, a .pth or a released checkpoint's name (k400, k600, hmdb51). The clip
settings stored with the checkpoint (frame interval, short side, crop, clips, crops)
replace the config file's; `--config.data.*` flags and --protocol overrides win. Protocols: `val` (1 clip, short side 256, centre
crop 224), `test` (10 clips x 3 crops at short side 224; configs/hmdb51.py sets
the released 2 x 3 crops of 286), or either with overrides, e.g.
`--protocol test:num_clips=4,num_crops=1,short_side=256,crop_size=256`.

    python eval.py --config ... --checkpoint WORKDIR --data ... --watch

evaluates each new checkpoint of a running training job, writing metrics to the
workdir's metrics.jsonl and TensorBoard, until its final step (or --timeout
seconds without a new checkpoint).
"""

from absl import app, flags
from ml_collections import config_flags

from squeezetime_jax import cli
from squeezetime_jax.evaluation.job import evaluate_checkpoint, parse_protocol, watch
from squeezetime_jax.training import process_setup

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config (configs/*.py): data and mesh.", lock_config=False
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training workdir, converted checkpoint directory or .pth."
)
_DATA = flags.DEFINE_string(
    "data", None, "Prepared data directory (overrides data.data_dir)."
)
_PROTOCOL = flags.DEFINE_string(
    "protocol",
    "test",
    "val | test, optionally with overrides "
    "test:num_clips=N,num_crops=1|3,short_side=S,crop_size=C,split=X.",
)
_STEP = flags.DEFINE_integer("step", None, "Training step to evaluate (default: latest).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where metrics.json and predictions.npz go."
)
_BATCH = flags.DEFINE_integer(
    "batch_size", None, "Global views per batch (config.eval_batch_size)."
)
_WATCH = flags.DEFINE_bool(
    "watch", False, "Evaluate each new checkpoint of a training workdir."
)
_TIMEOUT = flags.DEFINE_float(
    "timeout", 3600.0, "--watch: stop after this many seconds with no new checkpoint."
)
_POLL = flags.DEFINE_float(
    "poll_seconds", 30.0, "--watch: seconds between looks for checkpoints."
)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
process_setup.define_flags()
flags.mark_flags_as_required(["config", "checkpoint"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    process_setup.configure_from_flags()
    protocol = parse_protocol(_PROTOCOL.value)
    overrides = tuple(config_flags.get_override_values(flags.FLAGS["config"]))
    if _WATCH.value:
        watch(
            _CONFIG.value,
            _CHECKPOINT.value,
            protocol=protocol,
            data_dir=_DATA.value,
            timeout=_TIMEOUT.value,
            poll_seconds=_POLL.value,
            batch_size=_BATCH.value,
            output_root=_OUTPUT_DIR.value,
            progress=_PROGRESS.value,
            config_overrides=overrides,
        )
    else:
        evaluate_checkpoint(
            _CONFIG.value,
            _CHECKPOINT.value,
            protocol=protocol,
            data_dir=_DATA.value,
            step=_STEP.value,
            output_dir=_OUTPUT_DIR.value,
            batch_size=_BATCH.value,
            progress=_PROGRESS.value,
            config_overrides=overrides,
        )


if __name__ == "__main__":
    cli.run(main)
