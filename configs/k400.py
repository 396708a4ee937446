"""SqueezeTime on Kinetics-400, as released (depth 50, 16x224x224, 400 classes).

Variants select other sizes: `configs/k400.py:depth=18`, `...:frames=8,widen=0.5`.
"""

import ml_collections

from squeezetime_jax.config_utils import parse_arg
from squeezetime_jax.models import model_config


def get_config(arg=None):
    variant = parse_arg(arg, depth=50, frames=16, widen=1.0)
    config = ml_collections.ConfigDict()
    config.model = model_config(depth=variant.depth, num_frames=variant.frames,
                                widen_factor=variant.widen, num_classes=400)
    return config
