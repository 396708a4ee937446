"""SqueezeTime on HMDB51 (split 1 by default), fine-tuned from a K400 checkpoint.

The config ships with the package as squeezetime_jax/configs/hmdb51.py; this file lets
`--config configs/hmdb51.py[:variant]` name it by path.
"""

from squeezetime_jax.configs.hmdb51 import get_config  # noqa: F401
