"""Which formulation of the model's gradient-heavy layers a program uses.

Two formulations of the same function (values and gradients; the parity tests pin
it), chosen per compiled program:

* "cpu_tuned": the custom-VJP forms measured fastest on XLA CPU: convolutions of
  `models.convolution` (1x1 layers as matmuls, space-to-depth and shifted-product
  kernel gradients), the nine-view max pool, BatchNorm with its gradient written out.
* "xla": XLA's own ops, differentiated by JAX: `lax.conv_general_dilated`, a
  reduce_window max pool and BatchNorm without a custom VJP. On TPU the CPU forms
  cost memory traffic and temporaries (BENCHMARKS.md, "TPU programs").

"auto" picks by the platform the program is compiled for, which is that of the
devices of its mesh (a TPU topology compiled from a CPU host gets "xla").
"""

from __future__ import annotations

import jax

KERNELS = ("xla", "cpu_tuned")
AUTO = "auto"


def default_kernels(platform: str) -> str:
    """The formulation for programs compiled for `platform` ('cpu', 'tpu', 'gpu', ...)."""
    return "cpu_tuned" if platform == "cpu" else "xla"


def resolve_kernels(kernels: str | None, platform: str | None = None) -> str:
    """'xla' or 'cpu_tuned' from a setting that may be 'auto'/None.

    `platform` defaults to JAX's default backend.
    """
    if kernels in (None, AUTO):
        return default_kernels(platform or jax.default_backend())
    if kernels not in KERNELS:
        raise ValueError(
            f"model.kernels must be one of {(AUTO,) + KERNELS}, got {kernels!r}"
        )
    return kernels
