"""SqueezeTime in JAX: the network, its input pipeline, training and conversion.

`squeezetime_jax.load(path)` gives a callable model from a released .pth, a
converted checkpoint directory, a train.py workdir, or a released checkpoint by
name: `squeezetime_jax.load("k400")` downloads it once into a local cache.
"""

__version__ = "0.1.0"


def load(path):
    """A ready-to-call SqueezeTime: `load(path)(clip)` -> logits (see inference.model.load)."""
    from squeezetime_jax.inference.model import (
        load as _load,
    )  # keeps `import squeezetime_jax` light

    return _load(path)
