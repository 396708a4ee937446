"""Trains SqueezeTime.

    python train.py --config configs/k400.py --workdir DIR [--config.field=value ...]
    python -m squeezetime_jax.train ...          (the same command)

Re-running the same command resumes from the latest complete checkpoint in DIR.
On a multi-host TPU slice, run the same command on every worker. Elsewhere,
several processes find each other through --coordinator_address,
--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, ...).
"""

from absl import app, flags
from ml_collections import config_flags

from squeezetime_jax import cli
from squeezetime_jax.training import process_setup
from squeezetime_jax.training.trainer import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Checkpoints, metrics and the saved config."
)
process_setup.define_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    process_setup.configure_from_flags()
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
