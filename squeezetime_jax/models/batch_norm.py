"""BatchNorm over the channel axis with its training gradient written out.

`BatchNorm` is a drop-in for `flax.linen.BatchNorm(axis=-1)` as the model uses it:
the same parameters ('scale', 'bias'), statistics ('mean', 'var'), momentum
convention, epsilon, single-pass float32 statistics (E[x^2] - E[x]^2, clipped at 0)
and output dtype, so checkpoints and the PyTorch conversion are unchanged.

The difference is the training-mode backward pass. Differentiated automatically,
the normalization keeps `x - mean` as a residual and XLA materializes it in the
forward pass, then spends several passes over activation-sized arrays in the
backward. `batch_norm_train` keeps the input and two per-channel vectors instead,
and its gradient is the textbook one: the per-channel sums of g and g * x_hat, then
one elementwise pass for the input gradient
(benchmarks/gradient_ops_benchmark.py measures both forms).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from squeezetime_jax.models.packing import fold_channels, tile_channels

Array = jax.Array


def _stats_dtype(x: Array):
    """Statistics in at least float32; float64 (parity tests) stays float64."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _reduced_count(x: Array, axis_name: str | None) -> Array:
    count = x.size // x.shape[-1]
    return count * lax.psum(1, axis_name) if axis_name else count


def _sum_over_batch(values: tuple[Array, ...]) -> tuple[Array, ...]:
    axes = tuple(range(values[0].ndim - 1))
    return tuple(v.sum(axes) for v in values)


def _mean_over_batch(
    values: tuple[Array, ...], axis_name: str | None, phases: int = 1
) -> tuple[Array, ...]:
    """Per-channel means; `phases` > 1: channel-packed values (models.packing), whose
    phases are summed into one pixel's channels."""
    sums = [fold_channels(s, phases) for s in _sum_over_batch(values)]
    means = jnp.stack(sums) / (_reduced_count(values[0], None) * phases)
    if axis_name:
        means = lax.pmean(means, axis_name)  # one collective for all of them
    return tuple(means)


def _normalize(xf: Array, mean: Array, inv_std: Array, scale: Array, bias: Array) -> Array:
    return (xf - mean) * (scale * inv_std) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(
    x: Array, scale: Array, bias: Array, epsilon: float, axis_name: str | None
) -> tuple[Array, Array, Array]:
    """(normalized x, batch mean, batch variance) over all axes but the last.

    The output is in the statistics dtype (at least float32); `axis_name` averages
    the statistics over a mapped axis (shard_map/pmap), as nn.BatchNorm does.
    """
    return _forward(x, scale, bias, epsilon, axis_name)[0]


def _forward(x, scale, bias, epsilon, axis_name, phases=1):
    xf = x.astype(_stats_dtype(x))
    mean, mean_of_squares = _mean_over_batch((xf, xf * xf), axis_name, phases)
    var = jnp.maximum(0.0, mean_of_squares - mean * mean)
    inv_std = lax.rsqrt(var + epsilon)
    tiled = (tile_channels(v, phases) for v in (mean, inv_std, scale, bias))
    y = _normalize(xf, *tiled)
    return (y, mean, var), (x, mean, inv_std, scale)


def _backward(epsilon, axis_name, residuals, cotangents):
    del epsilon
    x, mean, inv_std, scale = residuals
    grad_y, grad_mean, grad_var = cotangents
    xf = x.astype(mean.dtype)
    centered = xf - mean
    x_hat = centered * inv_std
    grad_y = grad_y.astype(mean.dtype)
    local_sums = _sum_over_batch((grad_y, grad_y * x_hat))
    # The parameters' gradients are this shard's part (callers sum or average
    # them across shards, as for any parameter); the input's gradient sees the
    # statistics' dependence on every shard.
    grad_bias, grad_scale = (s.astype(scale.dtype) for s in local_sums)
    # The statistics are outputs too (for the running averages); their cotangents
    # are zero in training, but the gradient stays exact for any use.
    sums = (*local_sums, grad_mean, grad_var)
    if axis_name:
        sums = tuple(lax.psum(jnp.stack(sums), axis_name))
    count = _reduced_count(x, axis_name)
    sum_grad, sum_grad_x_hat, grad_mean, grad_var = sums
    grad_x = (scale * inv_std) * (grad_y - (sum_grad + x_hat * sum_grad_x_hat) / count)
    grad_x = grad_x + (grad_mean + 2.0 * grad_var * centered) / count
    return grad_x.astype(x.dtype), grad_scale, grad_bias


batch_norm_train.defvjp(_forward, _backward)


def batch_norm_train_autodiff(
    x: Array,
    scale: Array,
    bias: Array,
    epsilon: float,
    axis_name: str | None,
    phases: int = 1,
) -> tuple[Array, Array, Array]:
    """`batch_norm_train` without the custom VJP: the same function, differentiated
    by JAX (model.kernels="xla"). `phases` > 1: x is channel-packed (models.packing),
    its last axis `phases` pixels' channels, phase-major; statistics sum over the
    phases and the per-channel vectors are tiled over them."""
    return _forward(x, scale, bias, epsilon, axis_name, phases)[0]


class BatchNorm(nn.Module):
    """nn.BatchNorm over the last axis, training through `batch_norm_train`
    (or, with `custom_gradient=False`, the same function differentiated by JAX).

    Running statistics follow Flax: new = momentum * old + (1 - momentum) * batch,
    and are not updated while initializing. The batch variance enters them biased
    (Flax) or, with `unbiased_running_var`, times n / (n - 1) for n values per
    channel, as PyTorch keeps it.

    `group_size`: clips (leading-axis entries) per statistics group. A batch larger
    than that is normalized in consecutive groups of `group_size`, each with its own
    statistics, as on GPUs without SyncBN (the released recipe: 64 clips per GPU).
    Under jit with the batch sharded over devices, a group that lies within one
    device is reduced there, and one spread over several devices is reduced among
    those only. The running statistics take the first group's, as PyTorch's
    DistributedDataParallel keeps rank 0's buffers. None or a batch of at most
    `group_size` clips: one group.

    `phases` > 1: x is channel-packed (models.packing), its last axis `phases`
    pixels' channels; the parameters and statistics are those of one pixel's
    channels. Only without the custom gradient.
    """

    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    axis_name: str | None = None
    custom_gradient: bool = True
    group_size: int | None = None
    unbiased_running_var: bool = False
    phases: int = 1

    @nn.compact
    def __call__(self, x: Array, use_running_average: bool | None = None) -> Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        phases = self.phases
        if x.shape[-1] % phases:
            raise ValueError(
                f"BatchNorm: {x.shape[-1]} channels do not hold {phases} phases"
            )
        features = (x.shape[-1] // phases,)
        running_mean = self.variable(
            "batch_stats", "mean", jnp.zeros, features, jnp.float32
        )
        running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, features, self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
        if use_running_average:
            y = _normalize(
                x.astype(_stats_dtype(x)),
                tile_channels(running_mean.value, phases),
                tile_channels(lax.rsqrt(running_var.value + self.epsilon), phases),
                tile_channels(scale, phases),
                tile_channels(bias, phases),
            )
        else:
            initializing = self.is_initializing()
            if phases > 1:
                if self.custom_gradient:
                    raise ValueError("BatchNorm: phases > 1 needs custom_gradient=False")
                train_fn = functools.partial(batch_norm_train_autodiff, phases=phases)
            else:
                train_fn = (
                    batch_norm_train if self.custom_gradient else batch_norm_train_autodiff
                )
            axis_name = None if initializing else self.axis_name
            groups = _num_groups(x.shape[0], self.group_size)
            if groups == 1:
                y, mean, var = train_fn(x, scale, bias, self.epsilon, axis_name)
                count = _reduced_count(x, axis_name) * phases
            else:
                if axis_name:
                    raise ValueError(
                        "BatchNorm: group_size and axis_name do not combine; shard the "
                        "batch under jit instead (groups then follow the devices)"
                    )
                grouped = x.reshape((groups, -1) + x.shape[1:])
                y, mean, var = jax.vmap(
                    lambda g: train_fn(g, scale, bias, self.epsilon, None)
                )(grouped)
                y = y.reshape(x.shape)
                mean, var = mean[0], var[0]
                count = grouped[0].size // x.shape[-1] * phases
            if self.unbiased_running_var:
                var = var * (count / jnp.maximum(count - 1, 1))
            if not initializing:
                running_mean.value = (
                    self.momentum * running_mean.value + (1 - self.momentum) * mean
                )
                running_var.value = (
                    self.momentum * running_var.value + (1 - self.momentum) * var
                )
        return y.astype(self.dtype or jnp.result_type(x, scale, bias))


def _num_groups(batch: int, group_size: int | None) -> int:
    if group_size is None or batch <= group_size:
        return 1
    if group_size < 1 or batch % group_size:
        raise ValueError(
            f"BatchNorm group_size {group_size} must divide the batch of {batch} clips "
            "(model.bn_group_size and the global batch size)"
        )
    return batch // group_size
