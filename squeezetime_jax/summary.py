"""Prints one JSON line of model facts for a config.

    python -m squeezetime_jax.summary --config configs/k400.py [--batch 1] [--no_flops]

"params", "backbone_params", "head_params"; "macs": multiply-adds of convs and
dense layers over full windows (fvcore's and the paper's convention); "flops":
XLA's cost analysis of the jitted forward pass, which skips taps on zero
padding and adds elementwise work.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from squeezetime_jax.models import build_model
from squeezetime_jax.models.stats import model_summary

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size of the summarized forward pass.")
_FLOPS = flags.DEFINE_bool("flops", True, "Compile the forward pass for XLA's FLOP count.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    model_config = _CONFIG.value.model
    size = model_config.image_size
    shape = (_BATCH.value, model_config.num_frames, size, size, 3)
    summary = model_summary(build_model(model_config), shape, with_flops=_FLOPS.value)
    summary["config"] = model_config.to_dict()
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
