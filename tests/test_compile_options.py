"""XLA CPU compiler options: accepted by the pinned jaxlib, and they move convolutions."""

import jax
import jax.numpy as jnp
import numpy as np

from squeezetime_jax.runtime.compile_options import compiler_options


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def test_only_the_cpu_backend_gets_options():
    assert compiler_options("cpu")
    assert compiler_options("tpu") is None and compiler_options("gpu") is None


def test_cpu_options_compile_and_take_convolutions_off_ynnpack():
    x = jax.random.normal(jax.random.key(0), (1, 20, 20, 24))
    w = jax.random.normal(jax.random.key(1), (5, 5, 24, 32))
    default = jax.jit(_conv).lower(x, w).compile()
    tuned = jax.jit(_conv, compiler_options=compiler_options("cpu")).lower(x, w).compile()
    # XLA CPU gives this convolution to YNNPACK by default; the options keep it on Eigen.
    assert "__ynn_fusion" in default.as_text() and "__ynn_fusion" not in tuned.as_text()
    np.testing.assert_allclose(tuned(x, w), default(x, w), rtol=1e-5, atol=1e-4)
    matmul = jax.jit(jnp.dot, compiler_options=compiler_options("cpu"))
    big = jnp.ones((256, 256))
    assert (
        "__ynn_fusion" in matmul.lower(big, big).compile().as_text()
    )  # products stay on YNNPACK
