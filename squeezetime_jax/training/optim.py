"""The released optimizer and learning-rate schedules, in optax.

SGD with momentum 0.9 (no Nesterov), L2 weight decay coupled as torch.optim.SGD
applies it (added to the gradient before the momentum buffer), gradient clipping
at a global norm, and an optional smaller learning rate for the backbone.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

# The release states its learning rate per 64 clips and scales it linearly.
REFERENCE_BATCH = 64


def peak_learning_rate(config: ml_collections.ConfigDict, global_batch_size: int) -> float:
    return config.optimizer.base_lr * global_batch_size / REFERENCE_BATCH


def make_schedule(
    config: ml_collections.ConfigDict,
    global_batch_size: int,
    total_steps: int,
    steps_per_epoch: int,
) -> optax.Schedule:
    """Per-iteration schedule: 'warmup_cosine' (K400/K600) or 'step' (HMDB51)."""
    from squeezetime_jax.config_utils import resolve_steps

    sched = config.schedule
    peak = peak_learning_rate(config, global_batch_size)
    if sched.name == "warmup_cosine":
        warmup = resolve_steps(sched, "warmup", steps_per_epoch, default=0)
        if warmup >= total_steps:
            raise ValueError(
                f"warm-up ({warmup} steps) must be shorter than training "
                f"({total_steps} steps)"
            )
        # The floor is absolute (the release's unscaled base_lr / 100).
        cosine = optax.cosine_decay_schedule(
            peak, total_steps - warmup, alpha=sched.end_lr / peak
        )
        if warmup == 0:
            return cosine
        warm = optax.linear_schedule(peak * sched.warmup_start_factor, peak, warmup)
        return optax.join_schedules([warm, cosine], [warmup])
    if sched.name == "step":
        boundaries = [int(round(epoch * steps_per_epoch)) for epoch in sched.decay_epochs]
        return optax.piecewise_constant_schedule(
            peak, {boundary: sched.decay_factor for boundary in boundaries}
        )
    if sched.name == "constant":
        return optax.constant_schedule(peak)
    raise ValueError(
        f"schedule.name must be 'warmup_cosine', 'step' or 'constant', got {sched.name!r}"
    )


def _param_group(path) -> str:
    return "backbone" if path[0].key == "backbone" else "head"


def make_optimizer(
    config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """clip -> coupled weight decay -> momentum -> learning rate (-> backbone scale)."""
    opt = config.optimizer
    tx = optax.chain(
        optax.clip_by_global_norm(opt.grad_clip_norm)
        if opt.grad_clip_norm
        else optax.identity(),
        # torch.optim.SGD: d_p = grad + wd * p, on every parameter as the release does.
        optax.add_decayed_weights(opt.weight_decay)
        if opt.weight_decay
        else optax.identity(),
        optax.trace(decay=opt.momentum, nesterov=opt.nesterov),
        optax.scale_by_learning_rate(schedule),
    )
    if opt.backbone_lr_multiplier != 1.0:
        # A per-group lr in torch scales the whole momentum step, which is linear.
        scale = optax.multi_transform(
            {"backbone": optax.scale(opt.backbone_lr_multiplier), "head": optax.identity()},
            lambda params: jax.tree_util.tree_map_with_path(
                lambda path, _: _param_group(path), params
            ),
        )
        tx = optax.chain(tx, scale)
    return tx


def optimizer_config(**overrides: Any) -> ml_collections.ConfigDict:
    """The K400 release's optimizer settings."""
    config = ml_collections.ConfigDict(
        dict(
            base_lr=0.015,  # per 64 clips of global batch
            momentum=0.9,
            nesterov=False,
            weight_decay=7e-5,  # coupled L2, as torch.optim.SGD
            grad_clip_norm=40.0,
            backbone_lr_multiplier=1.0,
        )
    )
    config.update(overrides)
    return config
