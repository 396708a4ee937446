"""SqueezeTime on Kinetics-400: the released model and training recipe.

The config ships with the package as squeezetime_jax/configs/k400.py; this file lets
`--config configs/k400.py[:variant]` name it by path.
"""

from squeezetime_jax.configs.k400 import get_config  # noqa: F401
