"""SqueezeTime (Zhai et al., arXiv 2405.08344) as Flax Linen modules.

The network squeezes the time axis of a clip into the channel axis and runs a 2D
ResNet whose 3x3 convolutions are Channel-Time Learning (CTL) modules. Every
module here computes exactly what the authors' released PyTorch model computes,
so their checkpoints load through `squeezetime_jax.interop` and give the same
logits. Module names mirror the released PyTorch names (a torch Sequential index
`.k` is written `_k`), which keeps the checkpoint converter a plain table.

Layout is channels-last throughout: clips are (N, T, H, W, 3).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from squeezetime_jax.models.batch_norm import BatchNorm
from squeezetime_jax.models.convolution import conv_general_dilated
from squeezetime_jax.models.kernels import resolve_kernels
from squeezetime_jax.models.packing import (
    PHASES,
    pack,
    packed_conv_factory,
    tile_channels,
    unpack,
)

ModuleDef = Any
Array = jax.Array

# Blocks per stage for each supported depth, as in the released generate_model().
STAGE_SIZES = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
# Depths from this one on use the bottleneck block (expansion 4), below it the basic one.
BOTTLENECK_MIN_DEPTH = 50
STAGE_STRIDES = (1, 2, 2, 2)
BASE_WIDTHS = (64, 128, 256, 512)
# The IOI branch always works in 16 channels, whatever the block width.
IOI_CHANNELS = 16
# The released basic block builds its first CTL with pos_dim 7 whatever the stage.
BASIC_BLOCK_CONV1_POS_DIM = 7
# The classifier's module name, as the release's cls_head.fc_cls.
HEAD = "fc_cls"


# --- Initializers matching the released PyTorch init -------------------------

# kaiming_normal_(mode='fan_out', nonlinearity='relu'): std = sqrt(2 / fan_out),
# fan_out = out_channels * kh * kw (PyTorch ignores groups here, as does JAX).
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_conv_bias_init(fan_in: int) -> Callable[..., Array]:
    """PyTorch's default Conv2d bias init: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def pos_embed_init(key, shape, dtype=jnp.float32):
    """kaiming-normal fan_out of the torch (1, 16, P, P) tensor: std sqrt(2 / (P * P))."""
    _, height, width, _ = shape
    return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / (height * width))


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch's symmetric padding k on both spatial axes, written out explicitly."""
    return ((k, k), (k, k))


# --- Pieces ------------------------------------------------------------------


def _at_least_float32(x: Array) -> Array:
    """bfloat16 -> float32 for reductions; float64 (parity tests) stays float64."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def squeeze_time(clip: Array) -> Array:
    """(N, T, H, W, C) -> (N, H, W, C*T) with channel index c*T + t.

    The released model reshapes N,C,T,H,W to N,(C*T),H,W, so colour is the major
    and time the minor index. Any other order still trains but cannot load the
    released weights.
    """
    n, t, h, w, c = clip.shape
    return jnp.transpose(clip, (0, 2, 3, 4, 1)).reshape(n, h, w, c * t)


def _pool_windows(x: Array):
    """The nine (N, H', W', C) strided views of a 3x3, stride-2 window over x padded by -inf."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    out_h, out_w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    for dy in range(3):
        for dx in range(3):
            yield jax.lax.slice(
                padded,
                (0, dy, dx, 0),
                (n, dy + 2 * out_h - 1, dx + 2 * out_w - 1, c),
                (1, 2, 2, 1),
            )


@jax.custom_vjp
def max_pool_3x3_stride2(x: Array) -> Array:
    """The stem's max-pool: 3x3 windows, stride 2, padding 1 with -inf (as PyTorch pads).

    Same values and gradient as a reduce_window max-pool (the gradient goes to the
    first maximum of each window in row-major order, as in PyTorch), computed from
    nine strided views: the forward keeps the winning tap as int8, and the backward
    places each tap's share with a strided pad. XLA's select-and-scatter for the
    reduce_window gradient is several times slower on CPU.
    """
    return _max_pool_forward(x)[0]


def _max_pool_forward(x: Array):
    best = winner = None
    for tap, window in enumerate(_pool_windows(x)):
        if best is None:
            best, winner = window, jnp.zeros(window.shape, jnp.int8)
        else:
            winner = jnp.where(window > best, jnp.int8(tap), winner)
            best = jnp.maximum(best, window)
    return best, (winner, x.shape)


def _max_pool_backward(residuals, grad: Array):
    winner, (_, h, w, _) = residuals
    out_h, out_w = grad.shape[1:3]
    zero = jnp.zeros((), grad.dtype)
    total = None
    for tap in range(9):
        dy, dx = divmod(tap, 3)
        share = jnp.where(winner == tap, grad, zero)
        # Interior padding 1 puts output (i, j) back at padded input (dy + 2i, dx + 2j).
        placed = jax.lax.pad(
            share,
            zero,
            (
                (0, 0, 0),
                (dy, h + 2 - dy - (2 * out_h - 1), 1),
                (dx, w + 2 - dx - (2 * out_w - 1), 1),
                (0, 0, 0),
            ),
        )
        total = placed if total is None else total + placed
    return (total[:, 1 : h + 1, 1 : w + 1, :],)


max_pool_3x3_stride2.defvjp(_max_pool_forward, _max_pool_backward)


def max_pool_3x3_stride2_xla(x: Array) -> Array:
    """`max_pool_3x3_stride2` as XLA's reduce_window (gradient: select-and-scatter)."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def max_pool_for(kernels: str) -> Callable[[Array], Array]:
    """The stem's max pool in the formulation `kernels` ('xla' or 'cpu_tuned')."""
    return max_pool_3x3_stride2 if kernels == "cpu_tuned" else max_pool_3x3_stride2_xla


def _align_corners_matrix(out_size: int, in_size: int) -> np.ndarray:
    """Rows of bilinear weights for a 1D resize with align_corners=True."""
    weights = np.zeros((out_size, in_size), np.float64)
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    for i in range(out_size):
        src = i * scale
        lo = min(int(np.floor(src)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        weights[i, lo] += 1.0 - frac
        weights[i, hi] += frac
    return weights


def resize_align_corners(image: Array, height: int, width: int) -> Array:
    """Bilinear resize of (N, h, w, C) to (N, height, width, C), align_corners=True.

    The released IOI branch resizes its positional embedding with
    F.interpolate(mode='bilinear', align_corners=True) whenever the feature map is
    not pos_dim x pos_dim; jax.image.resize has no align_corners mode, and the
    separable weights are tiny and static, so two small matmuls do it exactly.
    """
    _, in_h, in_w, _ = image.shape
    if (in_h, in_w) == (height, width):
        return image
    rows = jnp.asarray(_align_corners_matrix(height, in_h), image.dtype)
    cols = jnp.asarray(_align_corners_matrix(width, in_w), image.dtype)
    return jnp.einsum(
        "hp,npqc,wq->nhwc", rows, image, cols, precision=jax.lax.Precision.HIGHEST
    )


def temporal_focus_gate(
    x: Array, conv: ModuleDef, norm: ModuleDef, phases: int = 1
) -> Array:
    """The released `param_conv` gate: pool -> 1x1 -> BN -> ReLU -> 1x1 -> sigmoid.

    Called inside CTL so that its layers sit directly under it, as the released
    `param_conv.{1,2,4}` do (index 0 is the parameterless pooling). `phases` > 1: x
    is channel-packed (models.packing); the gate is one pixel's channels, unpacked.
    """
    # Pool in (at least) float32: the gate's BN sees one pooled value per clip and channel.
    g = jnp.mean(_at_least_float32(x), axis=(1, 2), keepdims=True)
    if phases > 1:
        g = g.reshape(g.shape[:-1] + (phases, -1)).mean(-2)
        conv = functools.partial(conv, phases=1)
        norm = functools.partial(norm, phases=1)
    channels = g.shape[-1]
    g = g.astype(x.dtype)
    g = conv(channels, (1, 1), name="param_conv_1")(g)
    g = nn.relu(norm(name="param_conv_2")(g))
    g = conv(channels, (1, 1), name="param_conv_4")(g)
    return nn.sigmoid(g)


class InterTemporalObjectInteraction(nn.Module):
    """The IOI branch (released name `spatial_conv`).

    short_conv(x) modulated by a sigmoid map computed from the gated input through
    a 16-channel path with a learned positional embedding. `phases` > 1: x and gate
    are channel-packed (models.packing), and so are conv and norm.
    """

    features: int
    pos_dim: int
    conv: ModuleDef
    norm: ModuleDef
    phases: int = 1

    @nn.compact
    def __call__(self, x: Array, gate: Array) -> Array:
        in_features = x.shape[-1] // self.phases
        conv = functools.partial(self.conv, use_bias=True)
        short = conv(
            self.features,
            (3, 3),
            padding=_pad(1),
            bias_init=torch_conv_bias_init(in_features * 9),
            name="short_conv",
        )(x)
        # The short path sees the ungated input; the attention path the gated one.
        y = x * gate
        y = conv(
            IOI_CHANNELS,
            (3, 3),
            padding=_pad(1),
            bias_init=torch_conv_bias_init(in_features * 9),
            name="glo_conv_0",
        )(y)
        y = nn.relu(self.norm(name="glo_conv_1")(y))
        pos_embed = self.param(
            "pos_embed",
            pos_embed_init,
            (1, self.pos_dim, self.pos_dim, IOI_CHANNELS),
            jnp.float32,
        )
        # Resized only when the map is not pos_dim x pos_dim (other resolutions,
        # and always for the basic block's conv1 with its fixed pos_dim 7).
        pos = resize_align_corners(pos_embed, y.shape[1], y.shape[2] * self.phases)
        if self.phases > 1:
            pos = pack(pos, self.phases)
        y = y + pos.astype(y.dtype)
        y = conv(
            IOI_CHANNELS,
            (7, 7),
            padding=_pad(3),
            bias_init=torch_conv_bias_init(IOI_CHANNELS * 49),
            name="glo_conv_3",
        )(y)
        y = nn.relu(self.norm(name="glo_conv_4")(y))
        y = conv(
            self.features,
            (3, 3),
            padding=_pad(1),
            bias_init=torch_conv_bias_init(IOI_CHANNELS * 9),
            name="glo_conv_6",
        )(y)
        return short * nn.sigmoid(y)


class CTL(nn.Module):
    """Channel-Time Learning module: temporal branch + IOI branch, both gated.

    `phases` > 1: x is channel-packed (models.packing), and so are conv and norm.
    """

    features: int
    pos_dim: int
    conv: ModuleDef
    norm: ModuleDef
    phases: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        gate = tile_channels(
            temporal_focus_gate(x, self.conv, self.norm, self.phases), self.phases
        )
        temporal = self.conv(self.features, (1, 1), name="temporal_conv")(x * gate)
        ioi = InterTemporalObjectInteraction(
            self.features,
            self.pos_dim,
            self.conv,
            self.norm,
            self.phases,
            name="spatial_conv",
        )(x, gate)
        return temporal + ioi


class DepthwiseDownsample(nn.Module):
    """The released `downsample.0`: depthwise conv 2x2, stride 2, no padding, with bias.

    The windows do not overlap, so the conv is a reshape into 2x2 blocks, a multiply
    and a sum: the same function, but plain elementwise work that XLA fuses with its
    neighbours (forward and backward). A `feature_group_count` conv instead runs as a
    separate, slow grouped-conv kernel on XLA CPU, and its weight gradient as another.
    Parameters are those of the equivalent nn.Conv (kernel (2, 2, 1, C), bias (C,)),
    so checkpoints convert unchanged. Odd sizes round down, as the conv does. Runs in
    the input's dtype, summing the four taps in at least float32.

    `in_phases` 2: x is channel-packed (models.packing); its two phases are the
    windows' column pairs, and the output is unpacked.
    """

    in_phases: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.in_phases not in (1, PHASES):
            raise ValueError(f"DepthwiseDownsample: in_phases {self.in_phases}")
        n, h, w, c = x.shape
        w, c = w * self.in_phases, c // self.in_phases
        kernel = self.param("kernel", conv_kernel_init, (2, 2, 1, c), jnp.float32)
        bias = self.param("bias", torch_conv_bias_init(4), (c,), jnp.float32)
        if self.in_phases == 1:
            x = x[:, :, : w // 2 * 2]
        # Packed, the row-major reshape is the same: column pairs are the phases.
        blocks = x[:, : h // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
        sum_dtype = jnp.promote_types(x.dtype, jnp.float32)
        taps = kernel.reshape(1, 1, 2, 1, 2, c).astype(x.dtype)
        y = (blocks * taps).astype(sum_dtype).sum(axis=(2, 4)) + bias.astype(sum_dtype)
        return y.astype(x.dtype)


class _Block(nn.Module):
    """Shared fields and submodule factories of the basic and bottleneck blocks.

    Linen names submodules `downsample_0`/`downsample_1` and
    `shortcut_conv_0`/`shortcut_conv_1` through the flat names used below, so the
    parameter tree matches the released `downsample.0`, `shortcut_conv.1`, ...

    `phases` > 1: the block works on channel-packed arrays (models.packing; conv and
    norm are the packed ones). `in_phases`: how its input is packed (None: as
    `phases`); a strided block's downsample unpacks it.
    """

    width: int
    stride: int
    pos_dim: int
    conv: ModuleDef
    norm: ModuleDef
    phases: int = 1
    in_phases: int | None = None

    def downsample(self, x: Array) -> Array:
        in_phases = self.phases if self.in_phases is None else self.in_phases
        if self.phases != 1:
            raise ValueError("a strided block's output is not packed")
        x = DepthwiseDownsample(in_phases, name="downsample_0")(x)
        return self.norm(name="downsample_1")(x)

    def shortcut(self, x: Array, features: int) -> Array:
        x = self.conv(features, (1, 1), name="shortcut_conv_0")(x)
        return self.norm(name="shortcut_conv_1")(x)

    def prologue(self, x: Array, out_features: int) -> tuple[Array, Array]:
        """Returns (block input, residual) after the optional downsample."""
        if self.stride != 1:
            # Both the residual and the main path start from the downsampled x.
            x = self.downsample(x)
        elif (self.in_phases or self.phases) != self.phases:
            raise ValueError("only a strided block changes the packing")
        same = x.shape[-1] == out_features * self.phases
        residual = x if same else self.shortcut(x, out_features)
        return x, residual


class BasicBlock(_Block):
    """Two CTLs (expansion 1); used by depths 10, 18 and 34."""

    expansion = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x, residual = self.prologue(x, self.width)
        y = CTL(
            self.width,
            BASIC_BLOCK_CONV1_POS_DIM,
            self.conv,
            self.norm,
            self.phases,
            name="conv1",
        )(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = CTL(self.width, self.pos_dim, self.conv, self.norm, self.phases, name="conv2")(
            y
        )
        y = self.norm(name="bn2")(y)
        return nn.relu(y + residual)


class BottleneckBlock(_Block):
    """1x1 -> CTL -> 1x1 (expansion 4); used by depths 50 and deeper."""

    expansion = 4

    @nn.compact
    def __call__(self, x: Array) -> Array:
        out_features = self.width * self.expansion
        x, residual = self.prologue(x, out_features)
        y = self.conv(self.width, (1, 1), name="conv1")(x)
        y = nn.relu(self.norm(name="bn1")(y))
        y = CTL(self.width, self.pos_dim, self.conv, self.norm, self.phases, name="conv2")(
            y
        )
        y = nn.relu(self.norm(name="bn2")(y))
        y = self.conv(out_features, (1, 1), name="conv3")(y)
        y = self.norm(name="bn3")(y)
        return nn.relu(y + residual)


def block_class(depth: int) -> type[_Block]:
    return BasicBlock if depth < BOTTLENECK_MIN_DEPTH else BottleneckBlock


def stage_widths(widen_factor: float) -> tuple[int, ...]:
    # int() truncation as in the release; it matters for widen factors other than 1.
    return tuple(int(w * widen_factor) for w in BASE_WIDTHS)


def make_conv(
    dtype: Any = jnp.float32, precision: Any = None, kernels: str = "cpu_tuned"
) -> ModuleDef:
    """The default conv partial: no bias, released init, float32 params.

    `kernels` "cpu_tuned" takes the gradients of `models.convolution`, "xla" lax's.
    """
    return functools.partial(
        nn.Conv,
        use_bias=False,
        kernel_init=conv_kernel_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision,
        conv_general_dilated=(
            conv_general_dilated if kernels == "cpu_tuned" else jax.lax.conv_general_dilated
        ),
    )


def make_norm(
    train: bool,
    dtype: Any = jnp.float32,
    axis_name: str | None = None,
    kernels: str = "cpu_tuned",
    group_size: int | None = None,
) -> ModuleDef:
    """The default BatchNorm partial.

    PyTorch momentum 0.1 is Flax momentum 0.9; eps 1e-5. Statistics are kept in
    float32 whatever the compute dtype. The running variance takes the unbiased batch
    variance, as PyTorch's (a trained model's .pth then carries what PyTorch would
    have); inference does not depend on it. `group_size`: clips per statistics group
    (BatchNorm.group_size; the release: 64 per GPU).
    """
    return functools.partial(
        BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
        axis_name=axis_name,
        custom_gradient=kernels == "cpu_tuned",
        group_size=group_size,
        unbiased_running_var=True,
    )


class SqueezeTimeBackbone(nn.Module):
    """Stem (squeeze + 5x5 conv + max-pool) and four stages of CTL blocks.

    Returns the last feature map (N, H/32, W/32, C), or with `return_features`
    a dict of every stage's output ('stem', 'layer1'..'layer4') for detection
    and localization heads.

    `pack_narrow_channels`: the stem's output and stage 1 (64 channels wide in the
    bottlenecks at the released width) run channel-packed, two pixels of a row to
    a column (models.packing), the same function with the same parameters; stage 2's
    downsample unpacks. On TPU the packed arrays fill the 128-lane tiles that 64
    channels fill half of. Needs `conv` an nn.Conv partial and `norm` a BatchNorm
    partial without the custom gradient (model.kernels "xla").
    """

    depth: int = 50
    widen_factor: float = 1.0
    pos_dims: Sequence[int] = (56, 28, 14, 7)
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm
    pool: Callable[[Array], Array] = max_pool_3x3_stride2
    pack_narrow_channels: bool = False

    @nn.compact
    def __call__(self, clip: Array, return_features: bool = False):
        if self.depth not in STAGE_SIZES:
            raise ValueError(
                f"depth must be one of {sorted(STAGE_SIZES)}, got {self.depth}"
            )
        if len(self.pos_dims) != 4:
            raise ValueError(f"pos_dims needs one entry per stage (4), got {self.pos_dims}")
        widths = stage_widths(self.widen_factor)
        block = block_class(self.depth)
        features = {}
        x = squeeze_time(clip)
        x = self.conv(widths[0], (5, 5), strides=(2, 2), padding=_pad(2), name="conv1")(x)
        x = nn.relu(self.norm(name="bn1")(x))
        x = self.pool(x)
        features["stem"] = x
        held = 1  # pixels per column of x (models.packing)
        for stage, (blocks, width, stride, pos_dim) in enumerate(
            zip(STAGE_SIZES[self.depth], widths, STAGE_STRIDES, self.pos_dims), start=1
        ):
            phases = PHASES if self.pack_narrow_channels and stage == 1 else 1
            conv, norm = self.conv, self.norm
            if phases > 1:
                conv = packed_conv_factory(conv)
                norm = functools.partial(norm, phases=phases)
            for index in range(blocks):
                block_stride = stride if index == 0 else 1
                if block_stride == 1 and held != phases:
                    x = pack(x, phases) if phases > 1 else unpack(x, held)
                    held = phases
                x = block(
                    width=width,
                    stride=block_stride,
                    pos_dim=pos_dim,
                    conv=conv,
                    norm=norm,
                    phases=phases,
                    in_phases=held,
                    name=f"layer{stage}_{index}",
                )(x)
                held = phases
            features[f"layer{stage}"] = unpack(x, held) if held > 1 else x
        return features if return_features else x


class SqueezeTime(nn.Module):
    """The released classifier: backbone + the I2D head (pool, dropout, dense).

    Call with a normalized float clip (N, T, H, W, 3); returns float32 logits.
    `dtype` is the compute dtype (bfloat16 for TPU training); parameters and
    BatchNorm statistics stay float32. `kernels` ("xla", "cpu_tuned", or None: by
    JAX's default backend) picks the formulation of convolution, BatchNorm and max
    pool gradients (`models.kernels`); `build_model` sets it for a platform.
    """

    depth: int = 50
    widen_factor: float = 1.0
    pos_dims: Sequence[int] = (56, 28, 14, 7)
    num_classes: int = 400
    num_frames: int = 16
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    precision: Any = None
    bn_axis_name: str | None = None
    kernels: str | None = None
    # Clips per BatchNorm statistics group (None: the whole batch); see BatchNorm.
    bn_group_size: int | None = None
    # Stage 1 channel-packed (SqueezeTimeBackbone.pack_narrow_channels; kernels "xla").
    pack_narrow_channels: bool = False

    @nn.compact
    def __call__(self, clip: Array, train: bool = False, return_features: bool = False):
        if clip.ndim != 5 or clip.shape[-1] != 3:
            raise ValueError(f"expected a clip of shape (N, T, H, W, 3), got {clip.shape}")
        if clip.shape[1] != self.num_frames:
            raise ValueError(
                f"model takes {self.num_frames} frames (its first conv has "
                f"{3 * self.num_frames} input channels), got {clip.shape[1]}"
            )
        kernels = resolve_kernels(self.kernels)
        if self.pack_narrow_channels and kernels != "xla":
            raise ValueError(
                f"pack_narrow_channels needs model.kernels 'xla', got {kernels!r}"
            )
        backbone = SqueezeTimeBackbone(
            depth=self.depth,
            widen_factor=self.widen_factor,
            pos_dims=tuple(self.pos_dims),
            conv=make_conv(self.dtype, self.precision, kernels),
            norm=make_norm(
                train, self.dtype, self.bn_axis_name, kernels, self.bn_group_size
            ),
            pool=max_pool_for(kernels),
            pack_narrow_channels=self.pack_narrow_channels,
            name="backbone",
        )
        features = backbone(clip.astype(self.dtype), return_features=True)
        # The head runs in (at least) float32: it is tiny and the logits feed the loss.
        pooled = jnp.mean(_at_least_float32(features["layer4"]), axis=(1, 2))
        pooled = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
        logits = nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.normal(0.01),
            bias_init=nn.initializers.zeros,
            name=HEAD,
        )(pooled)
        if return_features:
            return logits, features
        return logits
