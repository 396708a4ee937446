"""XLA compiler options for the model's jitted programs, per backend.

XLA's CPU backend runs each convolution either through YNNPACK or through its own
Eigen kernels, and by default gives YNNPACK every convolution it supports. For
this network Eigen is the faster choice with several threads: at batch 8 on two
threads the stem's 5x5/2 forward and weight gradient take 96 + 150 ms with Eigen
against 117 + 275 ms with YNNPACK, a 56x56x64 3x3 layer 36 against 58 ms forward
and both gradients; side by side, the batch-8 train step is 7% faster (batch 4
unchanged) and inference 8-9% (BENCHMARKS.md, "Model performance"). Matrix
products and reductions stay on YNNPACK. Other backends compile with XLA's defaults.
"""

from __future__ import annotations

from typing import Any

import jax

# XLA's default list minus LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION. The option
# is XLA's and may change name with it: jax is pinned in pyproject.toml.
CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def compiler_options(backend: str | None = None) -> dict[str, Any] | None:
    """Options for `jax.jit(..., compiler_options=...)` on `backend` (default: JAX's)."""
    if (backend or jax.default_backend()) == "cpu":
        return dict(CPU_OPTIONS)
    return None
