"""SqueezeTime on Kinetics-700: the K400 recipe with 700 classes.

The config ships with the package as squeezetime_jax/configs/k700.py; this file lets
`--config configs/k700.py[:variant]` name it by path.
"""

from squeezetime_jax.configs.k700 import get_config  # noqa: F401
