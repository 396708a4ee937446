"""SqueezeTime in JAX: the network, its input pipeline, training and conversion."""

__version__ = "0.1.0"
