"""The SqueezeTime network (Flax) and its configuration."""

from squeezetime_jax.models.config import build_model, model_config
from squeezetime_jax.models.squeezetime import (
    CTL,
    STAGE_SIZES,
    BasicBlock,
    BottleneckBlock,
    SqueezeTime,
    SqueezeTimeBackbone,
    squeeze_time,
)

__all__ = [
    "CTL",
    "STAGE_SIZES",
    "BasicBlock",
    "BottleneckBlock",
    "SqueezeTime",
    "SqueezeTimeBackbone",
    "build_model",
    "model_config",
    "squeeze_time",
]
