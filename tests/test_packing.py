"""Channel packing (models.packing): packed convolutions, BatchNorm and the packed
model compute the unpacked model's function with its parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from squeezetime_jax.models import SqueezeTime, build_model, model_config
from squeezetime_jax.models.batch_norm import BatchNorm
from squeezetime_jax.models.packing import PackedConv, pack, unpack

TINY = dict(widen_factor=0.125, pos_dims=(4, 2, 1, 1), num_frames=2, num_classes=5)


@pytest.mark.parametrize(
    "kernel,stride,padding,in_phases",
    [
        ((1, 1), 1, "SAME", 2),
        ((3, 3), 1, ((1, 1), (1, 1)), 2),
        ((7, 7), 1, ((3, 3), (3, 3)), 2),
        ((3, 3), 2, ((1, 1), (1, 1)), 2),
        ((5, 5), 2, ((2, 2), (2, 2)), 1),  # the stem's conv1 from an unpacked input
        ((3, 5), 1, ((0, 2), (1, 3)), 2),  # asymmetric padding
    ],
)
def test_packed_conv_is_the_conv(kernel, stride, padding, in_phases):
    x = jax.random.normal(jax.random.key(0), (2, 8, 16, 6))
    conv = nn.Conv(5, kernel, strides=stride, padding=padding, use_bias=True)
    packed = PackedConv(5, kernel, strides=stride, padding=padding, in_phases=in_phases)
    variables = conv.init(jax.random.key(1), x)
    x_in = pack(x) if in_phases == 2 else x
    assert jax.tree.map(np.shape, packed.init(jax.random.key(1), x_in)) == jax.tree.map(
        np.shape, variables
    )
    # A nonzero bias and the lax precision pin the values to float32 rounding.
    variables = jax.tree.map(lambda v: v + 0.1, variables)
    want = conv.apply(variables, x)
    got = unpack(packed.apply(variables, x_in))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_packed_batch_norm_is_the_batch_norm():
    x = jax.random.normal(jax.random.key(0), (4, 6, 8, 3)) * 3 + 1
    norm = BatchNorm(use_running_average=False, momentum=0.9, custom_gradient=False)
    packed = BatchNorm(
        use_running_average=False, momentum=0.9, custom_gradient=False, phases=2
    )
    variables = norm.init(jax.random.key(0), x)
    want, want_stats = norm.apply(variables, x, mutable=["batch_stats"])
    got, got_stats = packed.apply(variables, pack(x), mutable=["batch_stats"])
    np.testing.assert_allclose(unpack(got), want, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    inference = packed.clone(use_running_average=True).apply(
        got_stats | {"params": variables["params"]}, pack(x)
    )
    np.testing.assert_allclose(
        unpack(inference),
        norm.clone(use_running_average=True).apply(
            want_stats | {"params": variables["params"]}, x
        ),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("depth", [10, 50])
def test_packed_model_is_the_same_function(depth):
    """Logits, parameter and input gradients, and the updated BatchNorm statistics of
    the packed model are the unpacked model's, with the same parameter tree. In
    float64 (the parameters, and so their gradients, stay float32), where rounding
    cannot hide a wrong packed kernel or a statistic over one phase only."""
    with jax.enable_x64(True):
        clip = jax.random.normal(jax.random.key(0), (4, 2, 32, 32, 3), jnp.float64)
        models = [
            SqueezeTime(
                depth=depth,
                dtype=jnp.float64,
                kernels="xla",
                dropout_rate=0.0,
                pack_narrow_channels=packed,
                **TINY,
            )
            for packed in (False, True)
        ]
        variables = models[0].init(jax.random.key(1), clip)
        shapes = jax.tree.map(np.shape, variables)
        assert jax.tree.map(np.shape, models[1].init(jax.random.key(1), clip)) == shapes
        cotangent = jax.random.normal(jax.random.key(2), (4, 5), jnp.float64)

        def run(model):
            def loss(params, clip):
                logits, updates = model.apply(
                    {"params": params, "batch_stats": variables["batch_stats"]},
                    clip,
                    train=True,
                    mutable=["batch_stats"],
                )
                return jnp.sum(logits * cotangent), (logits, updates)

            return jax.grad(loss, argnums=(0, 1), has_aux=True)(variables["params"], clip)

        want, got = jax.jit(lambda: run(models[0]))(), jax.jit(lambda: run(models[1]))()
        (want_grads, (want_logits, want_stats)) = want
        (got_grads, (got_logits, got_stats)) = got
        np.testing.assert_allclose(got_logits, want_logits, rtol=1e-10, atol=1e-10)
        for a, b in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
        # Gradients relative to the largest: float32 parameter gradients, and the
        # biases that feed a BatchNorm, whose exact gradient is zero.
        scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(want_grads))
        paths = jax.tree_util.tree_flatten_with_path(want_grads)[0]
        for (path, b), a in zip(paths, jax.tree.leaves(got_grads)):
            np.testing.assert_allclose(
                a, b, rtol=1e-6, atol=1e-7 * scale, err_msg=jax.tree_util.keystr(path)
            )
        assert np.abs(want_grads[1]).max() > 1e-3  # the clip's gradient is not vanishing


def test_packed_model_runs_at_the_released_layout_in_bfloat16():
    model = SqueezeTime(depth=50, dtype=jnp.bfloat16, kernels="xla", **TINY)
    packed = model.clone(pack_narrow_channels=True)
    clip = jax.random.normal(jax.random.key(0), (2, 2, 32, 32, 3))
    variables = model.init(jax.random.key(1), clip)
    want = model.apply(variables, clip)
    got = packed.apply(variables, clip)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)


def test_packing_needs_the_xla_kernels():
    model = build_model(
        model_config(pack_narrow_channels=True, kernels="cpu_tuned", **TINY)
    )
    clip = jnp.zeros((2, 2, 32, 32, 3))
    with pytest.raises(ValueError, match="pack_narrow_channels needs model.kernels"):
        model.init(jax.random.key(0), clip)
    assert build_model(model_config(pack_narrow_channels=True)).pack_narrow_channels


@pytest.mark.parametrize("depth", [10, 18, 34, 50, 101])
def test_packed_model_has_the_same_shapes_and_features(depth):
    clip = jax.ShapeDtypeStruct((2, 2, 64, 64, 3), jnp.float32)
    shapes = []
    for packed in (False, True):
        model = SqueezeTime(depth=depth, kernels="xla", pack_narrow_channels=packed, **TINY)
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), clip)
        outputs = jax.eval_shape(
            lambda v, x: model.apply(v, x, return_features=True), variables, clip
        )
        shapes.append(jax.tree.map(np.shape, (variables, outputs)))
    assert shapes[0] == shapes[1]
