"""SqueezeTime on Kinetics-600: the K400 recipe with weight decay 3e-5, 600 classes.

The config ships with the package as squeezetime_jax/configs/k600.py; this file lets
`--config configs/k600.py[:variant]` name it by path.
"""

from squeezetime_jax.configs.k600 import get_config  # noqa: F401
