"""Inference-only rewrites of the PyTorch twin for export: BatchNorm folding, raw input.

`fold_batchnorm_` folds every BatchNorm of `SqueezeTimeTorch` into the layer that
feeds it and replaces it with an identity, so an exported graph has no BatchNorm left
(fewer ops and memory passes on a phone, and nothing for a runtime to get wrong).
`fold_input_normalization_` makes the model take raw 0..255 pixels by folding the
per-channel (x - mean) / std into the stem convolution. Both work in float64 and
write float32, and both change only inference: never train the result.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from squeezetime_jax.interop.torch_model import (
    CTL,
    BasicBlock,
    Bottleneck,
    SqueezeTimeTorch,
)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) such that bn(y) == a * y + b per channel, in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - scale * bn.running_mean.double()


def _scale_conv_(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor | None) -> None:
    """conv <- scale * conv + shift, per output channel (adds a bias when needed)."""
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.double() * scale if conv.bias is not None else torch.zeros_like(scale)
    if shift is not None:
        bias = bias + shift
    conv.weight = nn.Parameter(weight.float(), requires_grad=False)
    conv.bias = nn.Parameter(bias.float(), requires_grad=False)


def _fold_conv_bn_(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale, shift = _bn_affine(bn)
    _scale_conv_(conv, scale, shift)


def _fold_bn_into_ctl_(ctl: CTL, bn: nn.BatchNorm2d) -> None:
    # CTL(x) = temporal_conv(g * x) + short_conv(x) * m, with m the IOI sigmoid map, so
    # a * CTL(x) + b = (a * temporal_conv + b)(g * x) + (a * short_conv)(x) * m: the
    # scale goes into both convs, the shift into the temporal one (which gains a bias).
    scale, shift = _bn_affine(bn)
    _scale_conv_(ctl.temporal_conv, scale, shift)
    _scale_conv_(ctl.spatial_conv.short_conv, scale, None)


def _fold_ctl_internals_(ctl: CTL) -> None:
    # param_conv: pool, conv, BN, ReLU, conv, sigmoid; glo_conv: conv, BN, ReLU,
    # (+ pos_embed), conv, BN, ReLU, conv, sigmoid. Indices stay, so slicing still works.
    _fold_conv_bn_(ctl.param_conv[1], ctl.param_conv[2])
    ctl.param_conv[2] = nn.Identity()
    glo = ctl.spatial_conv.glo_conv
    for conv_index, bn_index in ((0, 1), (3, 4)):
        _fold_conv_bn_(glo[conv_index], glo[bn_index])
        glo[bn_index] = nn.Identity()


def _fold_sequential_pair_(seq: nn.Sequential) -> None:
    """downsample / shortcut_conv: Sequential(conv, BN)."""
    _fold_conv_bn_(seq[0], seq[1])
    seq[1] = nn.Identity()


@torch.no_grad()
def fold_batchnorm_(model: SqueezeTimeTorch) -> SqueezeTimeTorch:
    """Folds every BatchNorm of the twin into the preceding layer, in place; `.eval()`s it.

    The result computes the same function in inference mode (to float32 rounding).
    """
    model.eval()
    net = model.backbone.net
    _fold_conv_bn_(net.conv1, net.bn1)
    net.bn1 = nn.Identity()
    for module in list(net.modules()):
        if isinstance(module, CTL):
            _fold_ctl_internals_(module)
    for module in list(net.modules()):
        if isinstance(module, (BasicBlock, Bottleneck)):
            if isinstance(module, Bottleneck):
                _fold_conv_bn_(module.conv1, module.bn1)
                _fold_bn_into_ctl_(module.conv2, module.bn2)
                _fold_conv_bn_(module.conv3, module.bn3)
                module.bn1, module.bn2, module.bn3 = (
                    nn.Identity(),
                    nn.Identity(),
                    nn.Identity(),
                )
            else:
                _fold_bn_into_ctl_(module.conv1, module.bn1)
                _fold_bn_into_ctl_(module.conv2, module.bn2)
                module.bn1, module.bn2 = nn.Identity(), nn.Identity()
            if module.stride != 1:
                _fold_sequential_pair_(module.downsample)
            if module.shortcut_conv is not None:
                _fold_sequential_pair_(module.shortcut_conv)
    left = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise RuntimeError(f"BatchNorm layers left unfolded: {', '.join(left)}")
    return model


class RawInputStem(nn.Module):
    """The stem convolution with (x - mean) / std folded in, for 0..255 inputs.

    conv(W, pad0((x - m) / s)) = conv(W / s, pad0(x)) - conv(W, pad0(m / s)): the
    second term is a constant map, not a per-channel bias, because the zero padding
    of the normalized input is the value `mean`, not 0, in raw pixels; folding it into a
    plain bias would be wrong on a 2-pixel border. The map is computed for one input
    size, so the model takes only that size (as every exported program here does).
    """

    def __init__(self, conv: nn.Conv2d, offset: torch.Tensor, weight: torch.Tensor):
        super().__init__()
        self.stride, self.padding = conv.stride, conv.padding
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.padding) + self.offset


@torch.no_grad()
def fold_input_normalization_(
    model: SqueezeTimeTorch,
    mean: Sequence[float],
    std: Sequence[float],
    size: tuple[int, int],
) -> SqueezeTimeTorch:
    """Makes `model` take raw pixels (0..255, N,3,T,H,W) at spatial `size`, in place."""
    net = model.backbone.net
    conv = net.conv1
    frames = model.num_frames
    # Stem input channel c*T + t holds colour c (the squeeze is colour-major).
    m = torch.tensor(mean, dtype=torch.float64).repeat_interleave(frames)
    s = torch.tensor(std, dtype=torch.float64).repeat_interleave(frames)
    weight = conv.weight.double()
    bias = (
        conv.bias.double()
        if conv.bias is not None
        else torch.zeros(weight.shape[0], dtype=torch.float64)
    )
    constant = (m / s).view(1, -1, 1, 1).expand(1, weight.shape[1], *size)
    offset = bias.view(1, -1, 1, 1) - F.conv2d(
        constant, weight, None, conv.stride, conv.padding
    )
    net.conv1 = RawInputStem(conv, offset.float(), (weight / s.view(1, -1, 1, 1)).float())
    return model


@torch.no_grad()
def bake_positional_embeddings_(
    model: SqueezeTimeTorch, example: torch.Tensor
) -> SqueezeTimeTorch:
    """Resizes every IOI positional embedding to the feature size `example` produces.

    The twin resizes a learned embedding whenever its size differs from the feature
    map (always in a basic block's conv1, and at any input size but the configured
    one). For a fixed-size export that resize is a constant: doing it once here keeps
    a bilinear interpolation of a parameter out of the exported graph.
    """
    sizes, handles = {}, []

    def recorder(key):
        def hook(module, args):  # returns None: a pre-hook's return value replaces args
            sizes[key] = tuple(args[0].shape[-2:])

        return hook

    for name, module in model.named_modules():
        if isinstance(module, CTL):
            handles.append(module.spatial_conv.register_forward_pre_hook(recorder(name)))
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    for name, module in model.named_modules():
        if not isinstance(module, CTL):
            continue
        ioi = module.spatial_conv
        if tuple(ioi.pos_embed.shape[-2:]) != sizes[name]:
            pos = F.interpolate(
                ioi.pos_embed.double(),
                size=sizes[name],
                mode="bilinear",
                align_corners=True,
            )
            ioi.pos_embed = nn.Parameter(pos.float(), requires_grad=False)
    return model


class _PooledHead(nn.Module):
    """The I2D head at inference: a (N, C, 1, 1) pool, then the classifier.

    Same function as the twin's `x.mean(dim=(2, 3))` head, but the 4-D keep-dims mean is
    what XNNPACK implements, so the whole network lowers to one XNNPACK subgraph
    instead of leaving the last pool to ExecuTorch's portable kernels.
    """

    def __init__(self, fc_cls: nn.Linear):
        super().__init__()
        self.fc_cls = fc_cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1))


def pool_head_for_export_(model: SqueezeTimeTorch) -> SqueezeTimeTorch:
    """Replaces the head by `_PooledHead` (inference only: dropout is dropped), in place."""
    model.cls_head = _PooledHead(model.cls_head.fc_cls)
    return model
