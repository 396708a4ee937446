"""W-pair channel packing: narrow activations stored two pixels to a row.

A (N, H, W, C) activation is held as (N, H, W / 2, 2C), the row-major reshape: column
j of the packed array holds pixels 2j and 2j + 1 of each row, lane (phase * C + c).
On TPU, arrays are tiled (8, 128) over their two minor dimensions, so 64 channels
fill half of each 128-lane tile and packed they fill all of it.

Every convolution runs on packed arrays with an equivalent packed kernel (`PackedConv`,
the same parameters as nn.Conv): output phase p and kernel column dx read unpacked
input column s * (2j + p) + dx - pad, which is packed column (2s / P) j + o, phase q,
for an input packed P pixels to a column (P = 1: unpacked, 2: packed). The packed
kernel puts K[:, dx, ci, co] at [:, o - o_min, q * Cin + ci, p * Cout + co]; a 1x1
convolution becomes block-diagonal. BatchNorm statistics sum over both phases
(BatchNorm.phases); per-channel vectors are tiled over them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

PHASES = 2


def pack(x: Array, phases: int = PHASES) -> Array:
    """(N, H, W, C) -> (N, H, W / phases, phases * C)."""
    n, h, w, c = x.shape
    if w % phases:
        raise ValueError(f"packing needs a width divisible by {phases}, got {w}")
    return x.reshape(n, h, w // phases, phases * c)


def unpack(x: Array, phases: int = PHASES) -> Array:
    """(N, H, W / phases, phases * C) -> (N, H, W, C)."""
    n, h, w, c = x.shape
    return x.reshape(n, h, w * phases, c // phases)


def tile_channels(v: Array, phases: int = PHASES) -> Array:
    """A per-channel array (..., C) repeated for each phase: (..., phases * C)."""
    return jnp.tile(v, (1,) * (v.ndim - 1) + (phases,)) if phases > 1 else v


def fold_channels(v: Array, phases: int = PHASES) -> Array:
    """Sums the phases of a packed per-channel array: (..., phases * C) -> (..., C)."""
    if phases == 1:
        return v
    return v.reshape(v.shape[:-1] + (phases, v.shape[-1] // phases)).sum(-2)


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def packed_width_plan(
    width: int, k: int, stride: int, pad: tuple[int, int], in_phases: int, phases: int
) -> tuple[list[tuple[int, int, int, int]], int, tuple[int, int], int]:
    """The packed conv along W: ([(dx, p, o - o_min, q)], packed kernel width,
    packed padding, packed stride) for an unpacked conv of width k, `stride`, `pad`
    on `width` unpacked input columns held `in_phases` to a packed column, whose
    output is held `phases` to a column."""
    left, right = pad
    out = (width + left + right - k) // stride + 1
    if width % in_phases or out % phases or (phases * stride) % in_phases:
        raise ValueError(
            f"cannot pack a width-{k} conv, stride {stride}, on {width} columns "
            f"({in_phases} -> {phases} phases): sizes must divide"
        )
    taps = []
    for p in range(phases):
        for dx in range(k):
            u = stride * p + dx - left
            taps.append((dx, p, u // in_phases, u % in_phases))
    o_min = min(t[2] for t in taps)
    o_max = max(t[2] for t in taps)
    packed_stride = phases * stride // in_phases
    packed_k = o_max - o_min + 1
    packed_left = -o_min
    packed_right = packed_stride * (out // phases - 1) + o_max + 1 - width // in_phases
    taps = [(dx, p, o - o_min, q) for dx, p, o, q in taps]
    return taps, packed_k, (packed_left, packed_right), packed_stride


def pack_kernel(
    kernel: Array,
    taps: Sequence[tuple[int, int, int, int]],
    packed_k: int,
    in_phases: int,
    phases: int,
) -> Array:
    """(kh, kw, Cin, Cout) -> (kh, packed_k, in_phases * Cin, phases * Cout)."""
    kh, _, cin, cout = kernel.shape
    packed = jnp.zeros((kh, packed_k, in_phases * cin, phases * cout), kernel.dtype)
    for dx, p, o, q in taps:
        packed = packed.at[:, o, q * cin : (q + 1) * cin, p * cout : (p + 1) * cout].add(
            kernel[:, dx]
        )
    return packed


class PackedConv(nn.Module):
    """nn.Conv (NHWC, 2D, no dilation or groups) on W-packed arrays.

    The same parameters as nn.Conv ('kernel' (kh, kw, Cin, Cout), 'bias' (Cout,)),
    so the parameter tree is that of the unpacked model. `in_phases`: how the input is
    held (None: as `phases`); the output is held `phases` pixels to a column.
    `phases` 1 and `in_phases` 1 is a plain nn.Conv.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., Array] = nn.initializers.zeros_init()
    conv_general_dilated: Callable[..., Array] = jax.lax.conv_general_dilated
    phases: int = PHASES
    in_phases: int | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        in_phases = self.phases if self.in_phases is None else self.in_phases
        kh, kw = self.kernel_size
        sh, sw = (self.strides,) * 2 if isinstance(self.strides, int) else self.strides
        cin = x.shape[-1] // in_phases
        kernel = self.param(
            "kernel", self.kernel_init, (kh, kw, cin, self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        height, width = x.shape[1], x.shape[2] * in_phases
        if isinstance(self.padding, str):
            if self.padding != "SAME":
                raise ValueError(f"PackedConv: padding {self.padding!r} not supported")
            pad_h, pad_w = _same_padding(height, kh, sh), _same_padding(width, kw, sw)
        else:
            pad_h, pad_w = (tuple(p) for p in self.padding)
        taps, packed_k, packed_pad, packed_stride = packed_width_plan(
            width, kw, sw, pad_w, in_phases, self.phases
        )
        y = self.conv_general_dilated(
            x,
            pack_kernel(kernel, taps, packed_k, in_phases, self.phases),
            (sh, packed_stride),
            (pad_h, packed_pad),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        if bias is not None:
            y = y + tile_channels(bias, self.phases)
        return y


def packed_conv_factory(conv: Any) -> Any:
    """The packed counterpart of the model's nn.Conv partial (same keywords)."""
    keywords = dict(conv.keywords)
    return lambda *args, **kwargs: PackedConv(*args, **{**keywords, **kwargs})


__all__ = [
    "PHASES",
    "PackedConv",
    "fold_channels",
    "pack",
    "pack_kernel",
    "packed_conv_factory",
    "packed_width_plan",
    "tile_channels",
    "unpack",
]
