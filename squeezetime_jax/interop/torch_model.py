"""A plain PyTorch SqueezeTime (torch.nn only), state_dict-compatible with the release.

The module tree mirrors the authors' mmaction2 model so that `state_dict()` keys are
exactly the released ones (`backbone.net.*`, `cls_head.fc_cls.*`) and released
checkpoints load with `strict=True`. Submodules are registered in the same order as in
the release, so the key order matches too. Used as the reference for conversion and
parity checks, for mobile export and for side-by-side benchmarks.

Input: (N, 3, T, H, W) float, normalized. Output: logits (N, num_classes).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from squeezetime_jax.interop.infer import DEPTHS, stage_widths

STAGE_STRIDES = (1, 2, 2, 2)
IOI_CHANNELS = 16
# The basic block's conv1 is built with the CTL default pos_dim, whatever the stage's.
BASIC_CONV1_POS_DIM = 7


class IOI(nn.Module):
    """Inter-temporal Object Interaction branch (`spatial_conv` in the release)."""

    def __init__(self, dim_in: int, dim_out: int, pos_dim: int):
        super().__init__()
        self.short_conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)
        # Indices 2, 5 and 7 are parameter-free (ReLU, ReLU, Sigmoid); they are kept in
        # the Sequential so that the parameterised entries carry the released indices.
        self.glo_conv = nn.Sequential(
            nn.Conv2d(dim_in, IOI_CHANNELS, 3, padding=1),
            nn.BatchNorm2d(IOI_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(IOI_CHANNELS, IOI_CHANNELS, 7, padding=3),
            nn.BatchNorm2d(IOI_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(IOI_CHANNELS, dim_out, 3, padding=1),
            nn.Sigmoid(),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, IOI_CHANNELS, pos_dim, pos_dim))
        nn.init.kaiming_normal_(self.pos_embed, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        short = self.short_conv(x)
        y = self.glo_conv[:3](x * gate)
        pos = self.pos_embed
        if pos.shape[-2:] != y.shape[-2:]:
            # The release resizes the learned embedding to any other feature-map size.
            pos = F.interpolate(pos, size=y.shape[-2:], mode="bilinear", align_corners=True)
        y = self.glo_conv[3:](y + pos)
        return short * y


class CTL(nn.Module):
    """Channel-Time Learning module: temporal-focus gate, temporal branch and IOI."""

    def __init__(self, in_channels: int, out_channels: int, pos_dim: int):
        super().__init__()
        # Indices 0, 3, 5 are parameter-free (pool, ReLU, Sigmoid), kept for the key names.
        self.param_conv = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(in_channels, in_channels, 1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, in_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.temporal_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.spatial_conv = IOI(in_channels, out_channels, pos_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.param_conv(x)
        return self.temporal_conv(gate * x) + self.spatial_conv(x, gate)


def _downsample(channels: int) -> nn.Sequential:
    # Depthwise 2x2 stride-2 conv with bias, then BN: the release's only striding op.
    return nn.Sequential(
        nn.Conv2d(channels, channels, 2, stride=2, groups=channels),
        nn.BatchNorm2d(channels),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, shortcut_conv=None, pos_dim=7):
        super().__init__()
        self.conv1 = CTL(in_planes, planes, BASIC_CONV1_POS_DIM)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = CTL(planes, planes, pos_dim)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut_conv = shortcut_conv
        self.stride = stride
        if stride != 1:
            self.downsample = _downsample(in_planes)

    def forward(self, x):
        if self.stride != 1:
            x = self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.shortcut_conv is None else self.shortcut_conv(x)
        return F.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1, shortcut_conv=None, pos_dim=7):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = CTL(planes, planes, pos_dim)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.shortcut_conv = shortcut_conv
        self.stride = stride
        if stride != 1:
            self.downsample = _downsample(in_planes)

    def forward(self, x):
        if self.stride != 1:
            x = self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.shortcut_conv is None else self.shortcut_conv(x)
        return F.relu(out + residual)


class ResNet(nn.Module):
    """The backbone network (`backbone.net` in the release)."""

    def __init__(
        self, depth: int, widen_factor: float, pos_dims: Sequence[int], num_frames: int
    ):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        if len(pos_dims) != 4:
            raise ValueError(f"pos_dims needs one entry per stage (4), got {pos_dims}")
        blocks, bottleneck = DEPTHS[depth]
        block = Bottleneck if bottleneck else BasicBlock
        # int() truncation as in the release: it matters for non-unit widen factors.
        widths = stage_widths(widen_factor)
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(
            3 * num_frames, widths[0], 5, stride=2, padding=2, bias=False
        )
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i in range(4):
            layer = self._make_layer(
                block, widths[i], blocks[i], STAGE_STRIDES[i], pos_dims[i]
            )
            self.add_module(f"layer{i + 1}", layer)
        self.out_channels = self.in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # Weights only: conv biases keep PyTorch's default uniform init, as released.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride, pos_dim):
        shortcut = None
        if self.in_planes != planes * block.expansion:
            shortcut = nn.Sequential(
                nn.Conv2d(self.in_planes, planes * block.expansion, 1, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.in_planes, planes, stride, shortcut, pos_dim)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, pos_dim=pos_dim) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        # The squeeze: N,C,T,H,W -> N,(C*T),H,W, channel c*T + t, as the release's view().
        x = x.reshape(n, c * t, h, w)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


class Backbone(nn.Module):
    """Holds the network under `net`, as mmaction2's wrapper does."""

    def __init__(self, **kwargs):
        super().__init__()
        self.net = ResNet(**kwargs)

    def forward(self, x):
        return self.net(x)


class I2DHead(nn.Module):
    """Global average pool, dropout (train only), dense classifier `fc_cls`."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.zeros_(self.fc_cls.bias)

    def forward(self, x):
        x = x.mean(dim=(2, 3))
        return self.fc_cls(self.dropout(x))


class SqueezeTimeTorch(nn.Module):
    """SqueezeTime with the released state_dict layout. Call `.eval()` for inference."""

    def __init__(
        self,
        depth: int = 50,
        widen_factor: float = 1.0,
        pos_dims: Sequence[int] = (56, 28, 14, 7),
        num_classes: int = 400,
        num_frames: int = 16,
        dropout_rate: float = 0.5,
    ):
        super().__init__()
        self.num_frames = num_frames
        self.backbone = Backbone(
            depth=depth,
            widen_factor=widen_factor,
            pos_dims=tuple(pos_dims),
            num_frames=num_frames,
        )
        self.cls_head = I2DHead(self.backbone.net.out_channels, num_classes, dropout_rate)

    @classmethod
    def from_config(cls, config) -> "SqueezeTimeTorch":
        """Builds from a model config (ConfigDict or mapping) with the Flax model's fields."""
        get = config.get
        return cls(
            depth=get("depth", 50),
            widen_factor=get("widen_factor", 1.0),
            pos_dims=tuple(get("pos_dims", (56, 28, 14, 7))),
            num_classes=get("num_classes", 400),
            num_frames=get("num_frames", 16),
            dropout_rate=get("dropout_rate", 0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


@torch.no_grad()
def randomize_batchnorm_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm random but well-conditioned statistics and affine terms.

    For parity checks: with the init values (mean 0, var 1, scale 1, bias 0) a BatchNorm
    is the identity and a port could get its layout wrong unnoticed. Statistics
    calibrated on a batch of noise are no better: the gate's BatchNorm then sees one
    pooled value per clip and gets a near-zero variance, which measures float32
    conditioning instead of the port. Running mean ~ N(0, 0.1^2), running var ~ U(0.5, 2),
    scale ~ U(0.5, 1.5), bias ~ N(0, 0.1^2) keep activations O(1).
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
            module.weight.copy_(0.5 + torch.rand(c, generator=gen))
            module.bias.copy_(0.1 * torch.randn(c, generator=gen))
    return model
