"""The model's convolution: `lax.conv_general_dilated` with gradients XLA CPU runs fast.

Every function here computes exactly the convolution (and gradients) that
`jax.lax.conv_general_dilated` computes, with the same arguments and parameters;
only the formulation of some gradients differs, chosen from measurements on XLA CPU
(benchmarks/gradient_ops_benchmark.py, BENCHMARKS.md "Model performance"):

* 1x1 stride-1 convolutions are matrix products of the (N*H*W, C) activation.
* Strided convolutions (the stem's 5x5/2) with small batches take their kernel
  gradient through a space-to-depth rearrangement: a stride-1 convolution over s*s
  times the channels. XLA CPU writes the kernel gradient as a convolution whose
  innermost contracted axis is the batch, and its speed jumps with the batch
  (the stem at 224x224 on two threads: XLA's takes 81 ms for one clip and 132 ms
  for four, space to depth 19 and 91 ms although its kernel has 44% more taps; from
  8 clips on XLA's is faster: `gradient_ops_benchmark.py --sections stem_batches`).
* Convolutions with narrow outputs (at most `NARROW_CHANNELS` output channels: the
  IOI branch's first two) take their kernel gradient as one matrix product of
  shifted copies of the input and of the output gradient, contracting batch and
  space. XLA CPU's kernel-gradient convolution is up to 3x slower there at small
  batches (for 16 -> C layers it is the faster one).

Forward passes and input gradients stay XLA's own convolutions.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# What nn.Conv passes for 2D channels-last inputs and HWIO kernels.
NHWC_HWIO = lax.conv_dimension_numbers((1,) * 4, (1,) * 4, ("NHWC", "HWIO", "NHWC"))
# Kernel gradients of layers with at most this many output channels are matrix
# products (the IOI branch works in 16 channels).
NARROW_CHANNELS = 16
# Strided kernel gradients go through space to depth below this batch (measured
# crossover for the stem, see above).
SPACE_TO_DEPTH_BELOW_BATCH = 8


def conv_pointwise_as_matmul(
    lhs: Array,
    rhs: Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> Array:
    """lax.conv_general_dilated, with 1x1 stride-1 convolutions done as a matmul.

    A 1x1 convolution is a matrix product over the channel axis. Written as one,
    XLA CPU computes its forward pass and both gradients with plain matmuls instead
    of convolution kernels plus layout transposes for the gradients (1.3-1.9x
    faster per layer, benchmarks/gradient_ops_benchmark.py); on TPU both forms
    lower to the same MXU matmul. The result is the same function with the same
    parameters.
    """
    if not (
        _is_plain_2d(
            lhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count
        )
        and rhs.shape[:2] == (1, 1)
        and all(s == 1 for s in window_strides)
        and all(p == (0, 0) for p in _explicit_pads(lhs, rhs, window_strides, padding))
    ):
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
        )
    # As a 2D (N*H*W, C) product: the gradient's weight product then contracts one
    # axis of both operands, which XLA runs as is. With the 4D operand it contracts
    # (N, H, W) and XLA first transposes an activation-sized array for it.
    n, h, w, c = lhs.shape
    out = lax.dot_general(
        lhs.reshape(n * h * w, c), rhs[0, 0], (((1,), (0,)), ((), ())), precision=precision
    )
    return out.reshape(n, h, w, -1)


def conv_general_dilated(
    lhs: Array,
    rhs: Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> Array:
    """The model's convolution (a drop-in for nn.Conv's `conv_general_dilated`).

    1x1 layers run as matmuls (`conv_pointwise_as_matmul`); other plain NHWC/HWIO
    convolutions get the kernel gradient of `conv_kernel_gradient`; anything else
    (groups, dilation, other layouts) is lax's.
    """
    plain = _is_plain_2d(
        lhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count
    )
    if not plain or rhs.shape[:2] == (1, 1):
        return conv_pointwise_as_matmul(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
        )
    pads = _explicit_pads(lhs, rhs, window_strides, padding)
    return _conv(lhs, rhs, tuple(window_strides), pads, precision)


def _is_plain_2d(
    lhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count
) -> bool:
    return (
        lhs.ndim == 4
        and dimension_numbers == NHWC_HWIO
        and feature_group_count == 1
        and all(d == 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
    )


def _explicit_pads(lhs, rhs, window_strides, padding) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(
            lhs.shape[1:3], rhs.shape[:2], window_strides, padding
        )
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _lax_conv(lhs, rhs, strides, pads, precision):
    return lax.conv_general_dilated(
        lhs, rhs, strides, pads, dimension_numbers=NHWC_HWIO, precision=precision
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(lhs, rhs, strides, pads, precision):
    return _lax_conv(lhs, rhs, strides, pads, precision)


def _conv_forward(lhs, rhs, strides, pads, precision):
    return _lax_conv(lhs, rhs, strides, pads, precision), (lhs, rhs)


def _conv_backward(strides, pads, precision, residuals, grad):
    lhs, rhs = residuals
    # XLA's own input gradient (dropped by XLA when the input needs none, as the clip).
    (lhs_grad,) = jax.linear_transpose(
        lambda x: _lax_conv(x, rhs, strides, pads, precision),
        jax.ShapeDtypeStruct(lhs.shape, lhs.dtype),
    )(grad)
    rhs_grad = conv_kernel_gradient(lhs, grad, rhs.shape, strides, pads, precision)
    return lhs_grad, rhs_grad.astype(rhs.dtype)


_conv.defvjp(_conv_forward, _conv_backward)


def conv_kernel_gradient(
    lhs: Array, grad: Array, kernel_shape, strides, pads, precision: Any = None
) -> Array:
    """d(sum(grad * conv(lhs, kernel))) / d(kernel), kernel HWIO of `kernel_shape`."""
    strided = tuple(strides) != (1, 1)
    if strided and lhs.shape[0] < SPACE_TO_DEPTH_BELOW_BATCH:
        return space_to_depth_kernel_gradient(
            lhs, grad, kernel_shape, strides, pads, precision
        )
    kh, kw, _, o = kernel_shape
    if strided or o > NARROW_CHANNELS:
        kernel = jax.ShapeDtypeStruct(tuple(kernel_shape), lhs.dtype)
        return jax.linear_transpose(
            lambda k: _lax_conv(lhs, k, strides, pads, precision), kernel
        )(grad)[0]
    return _shifted_product_kernel_gradient(lhs, grad, kh, kw, pads, precision)


def space_to_depth_kernel_gradient(lhs, grad, kernel_shape, strides, pads, precision):
    """Space-to-depth: a stride-s conv of x is a stride-1 conv of x's s x s blocks.

    Tap (a, b) of the kernel is tap (a // s, b // s) of the block conv, at the block's
    position (a % s, b % s). The block kernel's taps past the original kernel are
    not in the strided conv: their gradients are computed and dropped.
    """
    kh, kw, c, o = kernel_shape
    sh, sw = strides
    n, h, w, _ = lhs.shape
    out_h, out_w = grad.shape[1:3]
    taps_h, taps_w = -(-kh // sh), -(-kw // sw)
    blocks_h, blocks_w = out_h + taps_h - 1, out_w + taps_w - 1
    # Pad (or crop: rows no output reads) to whole blocks.
    x = lax.pad(
        lhs,
        jnp.zeros((), lhs.dtype),
        (
            (0, 0, 0),
            (pads[0][0], sh * blocks_h - h - pads[0][0], 0),
            (pads[1][0], sw * blocks_w - w - pads[1][0], 0),
            (0, 0, 0),
        ),
    )
    x = x.reshape(n, blocks_h, sh, blocks_w, sw, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, blocks_h, blocks_w, sh * sw * c)
    block_grad = conv_kernel_gradient(
        x, grad, (taps_h, taps_w, sh * sw * c, o), (1, 1), ((0, 0), (0, 0)), precision
    )
    kernel = block_grad.reshape(taps_h, taps_w, sh, sw, c, o).transpose(0, 2, 1, 3, 4, 5)
    return kernel.reshape(taps_h * sh, taps_w * sw, c, o)[:kh, :kw]


def _shifted_product_kernel_gradient(lhs, grad, kh, kw, pads, precision):
    """Kernel gradient of a stride-1 conv as one (K, P) x (P, M) matrix product.

    With x the padded input, kernel_grad[a, b] = sum over (n, i, j) of
    x[n, i + a, j + b]^T grad[n, i, j]. The shifts are put into copies of the
    operands, laid side by side on the channel axis, and one product contracts
    batch and space. Three ways to place them, each copying a different number of
    channels per position; the fewest wins:
      "grad":  x as is, grad shifted by all kh*kw taps (kh*kw*O channels);
      "input": x shifted by all taps (kh*kw*C), grad as is;
      "split": x shifted by the kh row taps (kh*C) and grad by the kw column taps
               (kw*O), contracting over rows of the output and columns of x.
    """
    c = lhs.shape[-1]
    _, out_h, out_w, o = grad.shape
    (top, bottom), (left_pad, right_pad) = pads
    zero = jnp.zeros((), grad.dtype)
    widths = {"grad": kh * kw * o, "input": kh * kw * c, "split": kh * c + kw * o}
    layout = min(widths, key=widths.get)
    if layout == "grad":
        # grad moved to input position (i + a, j + b), over the unpadded input only
        # (negative padding crops); zero where no output reads x.
        left = lhs
        right = jnp.concatenate(
            [
                lax.pad(
                    grad,
                    zero,
                    (
                        (0, 0, 0),
                        (a - top, kh - 1 - a - bottom, 0),
                        (b - left_pad, kw - 1 - b - right_pad, 0),
                        (0, 0, 0),
                    ),
                )
                for a in range(kh)
                for b in range(kw)
            ],
            axis=-1,
        )
    else:
        x = lax.pad(
            lhs,
            jnp.zeros((), lhs.dtype),
            ((0, 0, 0), (top, bottom, 0), (left_pad, right_pad, 0), (0, 0, 0)),
        )
        if layout == "input":
            left = jnp.concatenate(
                [x[:, a : a + out_h, b : b + out_w] for a in range(kh) for b in range(kw)],
                axis=-1,
            )
            right = grad
        else:
            left = jnp.concatenate([x[:, a : a + out_h] for a in range(kh)], axis=-1)
            right = jnp.concatenate(
                [
                    lax.pad(
                        grad, zero, ((0, 0, 0), (0, 0, 0), (b, kw - 1 - b, 0), (0, 0, 0))
                    )
                    for b in range(kw)
                ],
                axis=-1,
            )
    product = lax.dot_general(
        left.reshape(-1, left.shape[-1]),
        right.reshape(-1, right.shape[-1]),
        (((0,), (0,)), ((), ())),
        precision=precision,
    )
    if layout == "grad":  # (c, (a, b, o))
        return product.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)
    if layout == "input":  # ((a, b, c), o)
        return product.reshape(kh, kw, c, o)
    return product.reshape(kh, c, kw, o).transpose(0, 2, 1, 3)  # ((a, c), (b, o))
