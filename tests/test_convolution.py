"""The model's convolution is lax.conv_general_dilated, gradients included."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from squeezetime_jax.models.convolution import (
    conv_general_dilated,
    conv_kernel_gradient,
    conv_pointwise_as_matmul,
)


def _conv_and_grads(conv_fn, x, kernel, strides, padding, groups=1):
    def f(x, kernel):
        dims = jax.lax.conv_dimension_numbers(
            x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC")
        )
        return conv_fn(
            x, kernel, strides, padding, dimension_numbers=dims, feature_group_count=groups
        )

    y, vjp = jax.vjp(f, x, kernel)
    return (y, *vjp(jnp.cos(y)))


@pytest.mark.parametrize(
    "kernel_size,strides,padding,groups",
    [
        ((1, 1), (1, 1), "SAME", 1),
        ((1, 1), (1, 1), ((0, 0), (0, 0)), 1),
        ((1, 1), (2, 2), "SAME", 1),
        ((3, 3), (1, 1), ((1, 1), (1, 1)), 1),
        ((1, 1), (1, 1), "SAME", 2),
    ],
)
def test_pointwise_matmul_conv_is_the_same_function(kernel_size, strides, padding, groups):
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 8))
    kernel = jax.random.normal(jax.random.key(1), (*kernel_size, 8 // groups, 4))
    ours = _conv_and_grads(conv_pointwise_as_matmul, x, kernel, strides, padding, groups)
    ref = _conv_and_grads(jax.lax.conv_general_dilated, x, kernel, strides, padding, groups)
    for a, b in zip(ours, ref):  # output, input gradient, kernel gradient
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    pointwise = kernel_size == (1, 1) and strides == (1, 1) and groups == 1
    primitives = {
        e.primitive.name
        for e in jax.make_jaxpr(
            lambda x, k: _conv_and_grads(
                conv_pointwise_as_matmul, x, k, strides, padding, groups
            )[0]
        )(x, kernel).eqns
    }
    assert ("dot_general" in primitives) == pointwise
    assert ("conv_general_dilated" in primitives) == (not pointwise)


def test_pointwise_gradients_are_two_dimensional_products():
    # A kernel gradient contracting (N, H, W) of 4D operands makes XLA CPU transpose
    # an activation-sized array first; one axis of 2D operands it runs as is.
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 8))
    kernel = jax.random.normal(jax.random.key(1), (1, 1, 8, 4))
    jaxpr = jax.make_jaxpr(
        lambda x, k: _conv_and_grads(conv_pointwise_as_matmul, x, k, (1, 1), "SAME")
    )(x, kernel)
    dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    assert len(dots) == 3  # forward, input gradient, kernel gradient
    for eqn in dots:
        (lhs_contracting, rhs_contracting), _ = eqn.params["dimension_numbers"]
        assert [v.aval.ndim for v in eqn.invars] == [2, 2]
        assert len(lhs_contracting) == len(rhs_contracting) == 1


@pytest.mark.parametrize(
    "in_features,out_features,kernel_size,strides,padding",
    [
        (8, 4, (3, 3), (1, 1), ((1, 1), (1, 1))),  # narrow: grad shifted by every tap
        (2, 5, (3, 3), (1, 1), ((1, 1), (1, 1))),  # narrow: input shifted by every tap
        (16, 16, (7, 7), (1, 1), ((3, 3), (3, 3))),  # narrow: rows of x, columns of grad
        (6, 5, (3, 5), (1, 1), ((0, 2), (1, 3))),  # asymmetric kernel and padding
        (3, 2, (2, 2), (1, 1), "SAME"),
        (20, 18, (3, 3), (1, 1), "VALID"),  # wide: XLA's kernel gradient
        (4, 24, (3, 3), (1, 1), ((1, 1), (1, 1))),
        (6, 20, (5, 5), (2, 2), ((2, 2), (2, 2))),  # the stem's form: space to depth
        (5, 3, (3, 3), (2, 2), "SAME"),
        (4, 6, (4, 3), (3, 2), ((1, 0), (0, 2))),  # kernel taps past the last block row
        (4, 6, (1, 1), (1, 1), "SAME"),  # 1x1: matmul
        (4, 6, (1, 1), (2, 2), "VALID"),
    ],
)
def test_model_conv_is_lax_conv_with_gradients(
    in_features, out_features, kernel_size, strides, padding
):
    x = jax.random.normal(jax.random.key(0), (2, 9, 11, in_features))
    kernel = jax.random.normal(jax.random.key(1), (*kernel_size, in_features, out_features))
    ours = _conv_and_grads(conv_general_dilated, x, kernel, strides, padding)
    ref = _conv_and_grads(jax.lax.conv_general_dilated, x, kernel, strides, padding)
    for a, b in zip(ours, ref):  # output, input gradient, kernel gradient
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_model_conv_in_bfloat16_keeps_the_dtype():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16), jnp.bfloat16)
    for kernel_shape, strides in (((3, 3, 16, 16), (1, 1)), ((5, 5, 16, 24), (2, 2))):
        kernel = jax.random.normal(jax.random.key(1), kernel_shape, jnp.bfloat16)
        ours = _conv_and_grads(conv_general_dilated, x, kernel, strides, "SAME")
        ref = _conv_and_grads(jax.lax.conv_general_dilated, x, kernel, strides, "SAME")
        for a, b in zip(ours, ref):
            assert a.dtype == jnp.bfloat16
            np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=5e-2, atol=5e-2)


def _kernel_gradient_jaxpr(conv_fn, kernel_shape, strides, padding):
    x = jnp.ones((2, 12, 12, kernel_shape[2]))
    dims = jax.lax.conv_dimension_numbers(x.shape, kernel_shape, ("NHWC", "HWIO", "NHWC"))
    loss = lambda k: conv_fn(x, k, strides, padding, dimension_numbers=dims).sum()
    return jax.make_jaxpr(jax.grad(loss))(jnp.ones(kernel_shape))


def _convolutions(jaxpr):
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found.extend(_convolutions(sub))
    return found


def test_strided_kernel_gradient_has_no_window_dilation():
    # XLA writes the kernel gradient of a stride-2 conv as a conv with window
    # dilation 2, which its CPU kernels run slowly; ours is a stride-1 conv.
    padding = ((2, 2), (2, 2))
    ref = _convolutions(
        _kernel_gradient_jaxpr(
            jax.lax.conv_general_dilated, (5, 5, 48, 64), (2, 2), padding
        )
    )
    assert any(max(e.params["rhs_dilation"]) == 2 for e in ref)
    ours = _convolutions(
        _kernel_gradient_jaxpr(conv_general_dilated, (5, 5, 48, 64), (2, 2), padding)
    )
    assert ours and all(max(e.params["rhs_dilation"]) == 1 for e in ours)
    # Besides the input gradient (input dilation 2, dropped by XLA for a clip): the
    # forward pass (stride 2) and the kernel gradient over 2x2 blocks (stride 1).
    assert sorted(
        e.params["window_strides"] for e in ours if max(e.params["lhs_dilation"]) == 1
    ) == [(1, 1), (2, 2)]


@pytest.mark.parametrize("kernel_shape", [(3, 3, 64, 16), (7, 7, 16, 16), (3, 3, 8, 12)])
def test_narrow_kernel_gradient_is_one_matrix_product(kernel_shape):
    jaxpr = _kernel_gradient_jaxpr(
        conv_general_dilated, kernel_shape, (1, 1), ((kernel_shape[0] // 2,) * 2,) * 2
    )
    # The convolutions are the forward pass and the input gradient (which XLA drops
    # here: the input is a constant).
    shapes = sorted(e.outvars[0].aval.shape for e in _convolutions(jaxpr))
    assert shapes == sorted([(2, 12, 12, kernel_shape[3]), (2, 12, 12, kernel_shape[2])])
    assert sum(e.primitive.name == "dot_general" for e in jaxpr.eqns) == 1


def test_wide_output_keeps_xla_kernel_gradient():
    # 16 -> 64 (the IOI branch's last conv): XLA's kernel gradient is the faster one.
    jaxpr = _kernel_gradient_jaxpr(
        conv_general_dilated, (3, 3, 16, 64), (1, 1), ((1, 1),) * 2
    )
    assert len(_convolutions(jaxpr)) == 3
    assert not any(e.primitive.name == "dot_general" for e in jaxpr.eqns)


def test_kernel_gradient_matches_lax_for_every_layout_at_model_shapes():
    # The IOI branch's three convolutions at the 7x7 stage and the stem's, small batch.
    cases = [
        ((1, 7, 7, 512), (3, 3, 512, 16), (1, 1), ((1, 1), (1, 1))),
        ((1, 7, 7, 16), (7, 7, 16, 16), (1, 1), ((3, 3), (3, 3))),
        ((1, 7, 7, 16), (3, 3, 16, 512), (1, 1), ((1, 1), (1, 1))),
        ((1, 32, 32, 48), (5, 5, 48, 64), (2, 2), ((2, 2), (2, 2))),
    ]
    for x_shape, kernel_shape, strides, pads in cases:
        x = jax.random.normal(jax.random.key(0), x_shape)
        kernel = jnp.zeros(kernel_shape)
        conv = lambda k: jax.lax.conv_general_dilated(
            x, k, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        grad = jax.random.normal(jax.random.key(1), jax.eval_shape(conv, kernel).shape)
        (expected,) = jax.linear_transpose(conv, kernel)(grad)
        ours = conv_kernel_gradient(x, grad, kernel_shape, strides, pads)
        np.testing.assert_allclose(
            ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
        )


def test_large_batches_keep_xla_strided_kernel_gradient():
    # From 8 clips on, XLA's own kernel gradient of the stem is the faster one.
    padding = ((2, 2), (2, 2))
    x = jax.random.normal(jax.random.key(0), (8, 10, 10, 6))
    kernel = jax.random.normal(jax.random.key(1), (5, 5, 6, 20))
    ours = _conv_and_grads(conv_general_dilated, x, kernel, (2, 2), padding)
    ref = _conv_and_grads(jax.lax.conv_general_dilated, x, kernel, (2, 2), padding)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    dims = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    jaxpr = jax.make_jaxpr(
        jax.grad(
            lambda k: conv_general_dilated(
                x, k, (2, 2), padding, dimension_numbers=dims
            ).sum()
        )
    )(kernel)
    assert any(max(e.params["rhs_dilation"]) == 2 for e in _convolutions(jaxpr))


@pytest.mark.parametrize(
    "kernel_size,strides,padding,features",
    [
        ((1, 1), (1, 1), "VALID", 12),  # matmul
        ((5, 5), (2, 2), ((2, 2), (2, 2)), 12),  # the stem (space to depth at batch 2)
        ((3, 3), (1, 1), ((1, 1), (1, 1)), 16),  # narrow: shifted products
        ((7, 7), (1, 1), ((3, 3), (3, 3)), 16),  # the IOI 7x7
        ((3, 3), (1, 1), ((1, 1), (1, 1)), 24),  # wide: XLA's kernel gradient
    ],
)
def test_both_kernel_formulations_of_the_model_conv_are_the_same_function(
    kernel_size, strides, padding, features
):
    """make_conv(kernels="xla") is lax's convolution; "cpu_tuned" the same function."""
    from squeezetime_jax.models.squeezetime import make_conv

    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 8))
    results = []
    for kernels in ("cpu_tuned", "xla"):
        conv = make_conv(kernels=kernels)(features, kernel_size, strides, padding=padding)
        variables = conv.init(jax.random.key(1), x)
        y, vjp = jax.vjp(lambda v, x: conv.apply(v, x), variables, x)
        results.append((y, *vjp(jnp.cos(y))))
        primitives = str(jax.make_jaxpr(conv.apply)(variables, x))
        assert ("custom_vjp" in primitives or "dot_general" in primitives) == (
            kernels == "cpu_tuned"
        )
    for a, b in zip(*map(jax.tree.leaves, results)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
