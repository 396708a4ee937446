"""Model facts: parameter counts, multiply-adds and XLA's FLOP count."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jax_core


def count_params(tree: Any) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax_core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax_core.Jaxpr):
                yield item


def _count_macs(jaxpr) -> int:
    macs = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            # Full windows, as fvcore counts: every output element costs
            # kernel_h * kernel_w * in_channels / groups multiply-adds.
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
            taps = int(np.prod([rhs[d] for d in spec[1:]]))
            macs += int(np.prod(out)) * taps
        elif eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            contracted = int(np.prod([lhs[d] for d in lhs_contract]))
            macs += int(np.prod(eqn.outvars[0].aval.shape)) * contracted
        for sub in _subjaxprs(eqn):
            macs += _count_macs(sub)
    return macs


def count_macs(model: nn.Module, variables: Any, clip_shape: tuple[int, ...]) -> int:
    """Multiply-adds of convolutions and dense/einsum layers for one forward pass."""
    clip = jax.ShapeDtypeStruct(clip_shape, jnp.float32)
    closed = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, clip)
    return _count_macs(closed.jaxpr)


def xla_flops(model: nn.Module, variables: Any, clip_shape: tuple[int, ...]) -> float:
    """FLOPs of the jitted inference forward pass from XLA's cost analysis."""
    clip = jax.ShapeDtypeStruct(clip_shape, jnp.float32)
    compiled = (
        jax.jit(lambda v, x: model.apply(v, x, train=False))
        .lower(variables, clip)
        .compile()
    )
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older JAX returned one dict per device
        analysis = analysis[0]
    return float(analysis["flops"])


def model_summary(
    model: nn.Module, clip_shape: tuple[int, ...], with_flops: bool = True
) -> dict:
    """Parameter counts, multiply-adds and (optionally) XLA FLOPs at `clip_shape`."""
    clip = jax.ShapeDtypeStruct(clip_shape, jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), clip)
    params = variables["params"]
    summary = {
        "params": count_params(params),
        "backbone_params": count_params(params["backbone"]),
        "head_params": count_params(params["fc_cls"]),
        "batch_stats": count_params(variables.get("batch_stats", {})),
        "input_shape": list(clip_shape),
        "macs": count_macs(model, variables, clip_shape),
    }
    if with_flops:
        summary["flops"] = xla_flops(model, variables, clip_shape)
    return summary
