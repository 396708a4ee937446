"""The built-in demo: a small SqueezeTime learning temporal order on generated videos.

The config ships with the package as squeezetime_jax/configs/demo.py; this file lets
`--config configs/demo.py[:variant]` name it by path.
"""

from squeezetime_jax.configs.demo import get_config  # noqa: F401
