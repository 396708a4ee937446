"""Infers the model config of a checkpoint from its PyTorch state_dict shapes.

So that a released .pth converts without naming a config: depth from the block counts
and block type, widen factor from the stage widths, pos_dims from the positional
embeddings, num_frames from the stem's input channels, num_classes from the head.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.models.squeezetime import (
    BASE_WIDTHS as STAGE_BASE_WIDTHS,
)
from squeezetime_jax.models.squeezetime import (
    BOTTLENECK_MIN_DEPTH,
    STAGE_SIZES,
    stage_widths,
)

# Blocks per stage and bottleneck-or-not, by depth (SPEC "Backbone").
DEPTHS = {
    depth: (sizes, depth >= BOTTLENECK_MIN_DEPTH) for depth, sizes in STAGE_SIZES.items()
}
NET = "backbone.net."
_BLOCK = re.compile(r"^backbone\.net\.layer([1-4])\.(\d+)\.")


def _widen_factor(widths: Sequence[int], source: str) -> float:
    # widths[3] / 512 always reproduces every int(w * f) (nested floors); prefer the
    # shortest decimal that does, so a config written as 0.3 reads back as 0.3.
    exact = widths[3] / STAGE_BASE_WIDTHS[3]
    for candidate in [round(exact, k) for k in range(1, 7)] + [exact]:
        if candidate > 0 and list(stage_widths(candidate)) == list(widths):
            return candidate
    raise CheckpointError(
        f"{source}: stage widths {list(widths)} are not int(w * f) for "
        f"w in {STAGE_BASE_WIDTHS} and any widen factor f"
    )


def infer_model_config(
    shapes: Mapping[str, Sequence[int]],
    source: str = "checkpoint",
    dropout_rate: float = 0.5,
) -> dict:
    """Model config fields from {torch key: shape} of a released-layout state_dict."""

    def shape(key):
        if key not in shapes:
            raise CheckpointError(
                f"{source}: cannot infer the model config, key {key!r} is "
                "missing (is this a SqueezeTime checkpoint?)"
            )
        return tuple(shapes[key])

    stem = shape(NET + "conv1.weight")
    if len(stem) != 4 or stem[1] % 3:
        raise CheckpointError(
            f"{source}: {NET}conv1.weight has shape {stem}; expected (C, 3*T, 5, 5)"
        )
    blocks = [set() for _ in range(4)]
    for key in shapes:
        match = _BLOCK.match(key)
        if match:
            blocks[int(match.group(1)) - 1].add(int(match.group(2)))
    counts = tuple(len(b) for b in blocks)
    for stage, indices in enumerate(blocks):
        if indices != set(range(len(indices))):
            raise CheckpointError(
                f"{source}: layer{stage + 1} has blocks {sorted(indices)}; "
                "expected consecutive indices from 0"
            )
    bottleneck = NET + "layer1.0.conv3.weight" in shapes
    depth = [d for d, spec in DEPTHS.items() if spec == (counts, bottleneck)]
    if not depth:
        kind = "bottleneck" if bottleneck else "basic"
        raise CheckpointError(
            f"{source}: {kind} blocks per stage {counts} match no SqueezeTime "
            f"depth ({', '.join(map(str, DEPTHS))})"
        )
    conv = "conv1.weight" if bottleneck else "conv1.temporal_conv.weight"
    widths = [shape(f"{NET}layer{s}.0.{conv}")[0] for s in range(1, 5)]
    widen_factor = _widen_factor(widths, source)
    if stem[0] != stage_widths(widen_factor)[0]:
        raise CheckpointError(
            f"{source}: stem width {stem[0]} does not match stage widths {widths}"
        )
    # conv2 of every block carries the stage's pos_dim (conv1 of a basic block is fixed).
    pos_dims = tuple(
        shape(f"{NET}layer{s}.0.conv2.spatial_conv.pos_embed")[-1] for s in range(1, 5)
    )
    head = shapes.get("cls_head.fc_cls.weight")
    return {
        "depth": depth[0],
        "widen_factor": widen_factor,
        "pos_dims": pos_dims,
        "num_classes": int(head[0]) if head is not None else None,
        "num_frames": stem[1] // 3,
        "dropout_rate": dropout_rate,
    }
