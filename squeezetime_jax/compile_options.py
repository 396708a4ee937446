"""XLA compiler options for the model's jitted programs, per backend.

XLA's CPU backend runs each convolution either through YNNPACK or through its own
Eigen kernels, and by default gives YNNPACK every convolution it supports. For
this network Eigen is the faster choice with several threads: at batch 8 on two
threads the stem's 5x5/2 forward and weight gradient take 96 + 155 ms with Eigen
against 113 + 271 ms with YNNPACK, a 56x56x64 3x3 layer 44 against 60 ms forward
and both gradients; the whole train step is about 4% faster and inference 5-8%
(BENCHMARKS.md, "Convolutions on Eigen"). Matrix products and reductions stay on
YNNPACK, where they are faster. Other backends compile with XLA's defaults.
"""

from __future__ import annotations

from typing import Any

import jax

# XLA's default list minus LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION. The option
# is XLA's and may change name with it: jax is pinned in pyproject.toml.
CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options(backend: str | None = None) -> dict[str, Any] | None:
    """Options for `jax.jit(..., compiler_options=...)` on `backend` (default: JAX's)."""
    if (backend or jax.default_backend()) == "cpu":
        return dict(CPU_OPTIONS)
    return None
