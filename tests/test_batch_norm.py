"""The model's BatchNorm against flax.linen.BatchNorm: values, gradients, statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from squeezetime_jax.models.batch_norm import BatchNorm, batch_norm_train

SETTINGS = dict(momentum=0.9, epsilon=1e-5)


def _input(shape=(4, 5, 6, 8), dtype=jnp.float32):
    # Offset and scaled, so mean and variance both matter.
    return (jax.random.normal(jax.random.key(0), shape) * 3 + 2).astype(dtype)


def _loss_and_grads(module, x, params, stats):
    cotangent = jax.random.normal(jax.random.key(1), x.shape)

    def loss(x, params):
        y, updates = module.apply(
            {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
        )
        # ReLU and a random projection: the gradient depends on every output.
        return jnp.sum(jax.nn.relu(y.astype(jnp.float32)) * cotangent), (y, updates)

    (value, (y, updates)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        x, params
    )
    return value, y, updates["batch_stats"], grads


def _trained_params(module, x):
    variables = module.init(jax.random.key(2), x)
    # Non-trivial scale and bias, and running statistics away from (0, 1).
    params = jax.tree.map(
        lambda a: a + jax.random.normal(jax.random.key(3), a.shape), variables["params"]
    )
    stats = jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])
    return params, stats


@pytest.mark.parametrize("custom_gradient", [True, False])  # model.kernels cpu_tuned/xla
@pytest.mark.parametrize("shape", [(4, 5, 6, 8), (2, 3, 16)])
def test_training_matches_flax_values_gradients_and_statistics(shape, custom_gradient):
    x = _input(shape)
    ours, reference = (
        BatchNorm(use_running_average=False, custom_gradient=custom_gradient, **SETTINGS),
        nn.BatchNorm(use_running_average=False, **SETTINGS),
    )
    params, stats = _trained_params(reference, x)
    got, want = (_loss_and_grads(m, x, params, stats) for m in (ours, reference))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_same_variables_and_inference_as_flax():
    x = _input()
    ours, reference = (
        BatchNorm(use_running_average=True, **SETTINGS),
        nn.BatchNorm(use_running_average=True, **SETTINGS),
    )
    ours_vars, reference_vars = (
        ours.init(jax.random.key(0), x),
        reference.init(jax.random.key(0), x),
    )
    assert jax.tree.map(jnp.shape, ours_vars) == jax.tree.map(jnp.shape, reference_vars)
    for a, b in zip(jax.tree.leaves(ours_vars), jax.tree.leaves(reference_vars)):
        np.testing.assert_array_equal(a, b)
    params, stats = _trained_params(reference, x)
    variables = {"params": params, "batch_stats": stats}
    np.testing.assert_allclose(
        ours.apply(variables, x), reference.apply(variables, x), rtol=1e-6, atol=1e-6
    )


def test_initializing_leaves_running_statistics_alone():
    x = _input()
    stats = BatchNorm(use_running_average=False, **SETTINGS).init(jax.random.key(0), x)[
        "batch_stats"
    ]
    np.testing.assert_array_equal(stats["mean"], np.zeros(8))
    np.testing.assert_array_equal(stats["var"], np.ones(8))


def test_bfloat16_compute_keeps_float32_statistics():
    x = _input(dtype=jnp.bfloat16)
    ours = BatchNorm(use_running_average=False, dtype=jnp.bfloat16, **SETTINGS)
    reference = nn.BatchNorm(use_running_average=False, dtype=jnp.bfloat16, **SETTINGS)
    params, stats = _trained_params(reference, x)
    got, want = (_loss_and_grads(m, x, params, stats) for m in (ours, reference))
    assert got[1].dtype == jnp.bfloat16
    assert got[2]["mean"].dtype == jnp.float32
    assert got[3][0].dtype == jnp.bfloat16 and got[3][1]["scale"].dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=0.05, atol=0.1)


def test_axis_name_averages_statistics_and_gradients_over_the_mapped_axis():
    """Two halves of a batch under vmap(axis_name) behave like the whole batch."""
    x = _input((8, 3, 4, 6))
    module = BatchNorm(use_running_average=False, axis_name="shards", **SETTINGS)
    whole = BatchNorm(use_running_average=False, **SETTINGS)
    params, stats = _trained_params(whole, x)
    cotangent = jax.random.normal(jax.random.key(1), x.shape)

    def loss(m, x, params, cotangent):
        y, updates = m.apply(
            {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
        )
        return jnp.sum(y * cotangent), updates["batch_stats"]

    want = jax.grad(
        lambda x, p: loss(whole, x, p, cotangent), argnums=(0, 1), has_aux=True
    )(x, params)
    halves, cotangent_halves = x.reshape(2, 4, 3, 4, 6), cotangent.reshape(2, 4, 3, 4, 6)
    per_shard = jax.vmap(
        lambda h, c: jax.grad(lambda h, p: loss(module, h, p, c)[0], argnums=(0, 1))(
            h, params
        ),
        axis_name="shards",
    )
    grad_x, grad_params = per_shard(halves, cotangent_halves)
    np.testing.assert_allclose(grad_x.reshape(x.shape), want[0][0], rtol=1e-5, atol=1e-5)
    # Each shard's parameter gradient is its own part; their sum is the whole batch's.
    for a, b in zip(
        jax.tree.leaves(jax.tree.map(lambda g: g.sum(0), grad_params)),
        jax.tree.leaves(want[0][1]),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    stats_per_shard = jax.vmap(
        lambda h, c: loss(module, h, params, c)[1], axis_name="shards"
    )(halves, cotangent_halves)
    for a, b in zip(jax.tree.leaves(stats_per_shard), jax.tree.leaves(want[1])):
        np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6)


def _reference_batch_norm(x, scale, bias, epsilon):
    mean = x.mean((0, 1, 2))
    var = jnp.maximum(0.0, (x * x).mean((0, 1, 2)) - mean * mean)
    return (x - mean) * (scale * jax.lax.rsqrt(var + epsilon)) + bias, mean, var


def test_gradient_through_the_returned_statistics_is_exact():
    """The batch mean and variance are outputs too; their cotangents reach x."""
    x = _input()
    scale, bias = jnp.linspace(0.5, 2.0, 8), jnp.linspace(-1.0, 1.0, 8)
    cotangents = tuple(
        jax.random.normal(jax.random.key(k), s)
        for k, s in ((4, x.shape), (5, (8,)), (6, (8,)))
    )
    ours = jax.vjp(lambda *a: batch_norm_train(*a, 1e-5, None), x, scale, bias)[1](
        cotangents
    )
    want = jax.vjp(lambda *a: _reference_batch_norm(*a, 1e-5), x, scale, bias)[1](
        cotangents
    )
    for a, b in zip(ours, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_both_gradient_formulations_are_the_same_function_in_bfloat16():
    """custom_gradient=False (model.kernels="xla") differentiates the same forward pass."""
    x = _input(dtype=jnp.bfloat16)
    modules = [
        BatchNorm(
            use_running_average=False, dtype=jnp.bfloat16, custom_gradient=c, **SETTINGS
        )
        for c in (True, False)
    ]
    params, stats = _trained_params(modules[0], x)
    got, want = (_loss_and_grads(m, x, params, stats) for m in modules)
    assert got[3][0].dtype == want[3][0].dtype == jnp.bfloat16
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=0.02, atol=0.05)
    jaxprs = [
        str(
            jax.make_jaxpr(
                lambda x: m.apply(
                    {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
                )
            )(x)
        )
        for m in modules
    ]
    assert "custom_vjp_call" in jaxprs[0] and "custom_vjp_call" not in jaxprs[1]


def _grouped_reference(x, params, group, epsilon=1e-5):
    """Each `group` clips normalized alone (numpy float64), first group's statistics."""
    x = np.asarray(x, np.float64)
    groups = x.reshape((-1, group) + x.shape[1:])
    axes = tuple(range(groups.ndim - 1))[1:]
    mean = groups.mean(axes, keepdims=True)
    var = groups.var(axes, keepdims=True)
    y = (groups - mean) / np.sqrt(var + epsilon) * np.asarray(params["scale"]) + np.asarray(
        params["bias"]
    )
    n = groups[0].size // x.shape[-1]
    return y.reshape(x.shape), mean[0].ravel(), var[0].ravel() * n / (n - 1)


@pytest.mark.parametrize("group", [2, 4, 8])
def test_groups_have_their_own_statistics_and_running_variance_is_unbiased(group):
    x = _input((8, 3, 4, 6))
    module = BatchNorm(
        use_running_average=False, group_size=group, unbiased_running_var=True, **SETTINGS
    )
    params, stats = _trained_params(module, x)
    y, updates = module.apply(
        {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
    )
    want_y, mean, var = _grouped_reference(x, params, group)
    np.testing.assert_allclose(y, want_y, rtol=2e-5, atol=2e-5)
    new = updates["batch_stats"]
    np.testing.assert_allclose(new["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new["var"], 0.9 * stats["var"] + 0.1 * var, rtol=1e-5)
    # A group that covers the batch is the whole batch; the PyTorch running variance.
    whole = BatchNorm(use_running_average=False, unbiased_running_var=True, **SETTINGS)
    _, ref = whole.apply(
        {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
    )
    _, big = BatchNorm(
        use_running_average=False, group_size=64, unbiased_running_var=True, **SETTINGS
    ).apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
    n = x.size // x.shape[-1]
    batch_var = np.asarray(x, np.float64).reshape(-1, x.shape[-1]).var(0) * n / (n - 1)
    np.testing.assert_allclose(
        ref["batch_stats"]["var"], 0.9 * stats["var"] + 0.1 * batch_var, rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(big)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="group_size 3 must divide"):
        BatchNorm(use_running_average=False, group_size=3, **SETTINGS).apply(
            {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
        )


def _all_reduce_group_sizes(hlo_text):
    """Devices per replica group of every all-reduce in compiled HLO text."""
    import re

    sizes = []
    for line in hlo_text.splitlines():
        if " all-reduce(" not in line and " all-reduce-start(" not in line:
            continue
        listed = re.search(r"replica_groups=\{\{([^}]*)\}", line)
        iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", line)
        mesh = re.search(r"replica_groups=mesh\[([^\]]*)\] \{([^}]*)\}", line)
        if listed:
            sizes.append(len(listed.group(1).split(",")))
        elif iota:
            sizes.append(int(iota.group(2)))
        elif mesh:
            axes = dict(re.findall(r"'(\w+)'=(\d+)", mesh.group(1)))
            size = 1
            for name in re.findall(r"'(\w+)'", mesh.group(2)):
                size *= int(axes[name])
            sizes.append(size)
        else:
            raise AssertionError(f"unparsed all-reduce: {line}")
    return sizes


@pytest.mark.parametrize("per_device", [2, 4, 8])
def test_groups_under_a_sharded_batch_reduce_only_within_their_devices(per_device):
    """8 devices, groups of 4 clips: a group spans 2 devices, one, or half of one."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = np.array(jax.devices()[:8])
    assert len(devices) == 8, "tests/conftest.py sets 8 host devices"
    mesh = Mesh(devices, ("data",))
    group = 4
    x = _input((8 * per_device, 3, 4, 6))
    module = BatchNorm(
        use_running_average=False, group_size=group, unbiased_running_var=True, **SETTINGS
    )
    params, stats = _trained_params(module, x)
    cotangent = jax.random.normal(jax.random.key(5), x.shape)

    def loss(x, params):
        y, _ = module.apply(
            {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
        )
        return jnp.sum(y * cotangent), y

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    (_, y), (gx, gparams) = step(sharded, params)
    (_, y_ref), (gx_ref, gparams_ref) = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    )(x, params)
    np.testing.assert_allclose(y, _grouped_reference(x, params, group)[0], atol=2e-5)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-5)
    # The statistics need the devices of their group only (the parameter gradients
    # of a training step are then summed over the batch, as for any parameter).
    spans = max(1, group // per_device)
    stats_only = jax.jit(
        lambda x: module.apply(
            {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
        )[0]
    )
    sizes = _all_reduce_group_sizes(stats_only.lower(sharded).compile().as_text())
    assert all(size == spans for size in sizes) and (sizes or spans == 1), sizes
