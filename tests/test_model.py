"""Shapes, parameter counts and layer-level behaviour of the Flax SqueezeTime."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from squeezetime_jax.models import (
    STAGE_SIZES,
    BasicBlock,
    BottleneckBlock,
    SqueezeTime,
    build_model,
    model_config,
    squeeze_time,
)
from squeezetime_jax.models.squeezetime import (
    max_pool_3x3_stride2,
    max_pool_for,
    resize_align_corners,
)
from squeezetime_jax.models.stats import count_params, model_summary

TINY = dict(widen_factor=0.125, pos_dims=(4, 2, 1, 1), num_frames=2, num_classes=5)


def tiny_clip(batch=2, frames=2, size=32, seed=0):
    return jax.random.normal(jax.random.key(seed), (batch, frames, size, size, 3))


@pytest.mark.parametrize("depth", sorted(STAGE_SIZES))
def test_every_depth_has_the_right_shapes(depth):
    model = SqueezeTime(depth=depth, **TINY)
    clip = jax.ShapeDtypeStruct((2, 2, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), clip)
    logits, features = jax.eval_shape(
        lambda v, x: model.apply(v, x, return_features=True), variables, clip
    )
    expansion = 1 if depth < 50 else 4
    assert logits.shape == (2, 5)
    assert features["stem"].shape == (2, 16, 16, 8)
    for stage, (size, width) in enumerate(zip((16, 8, 4, 2), (8, 16, 32, 64)), start=1):
        assert features[f"layer{stage}"].shape == (2, size, size, width * expansion)
    blocks = [k for k in variables["params"]["backbone"] if k.startswith("layer")]
    assert len(blocks) == sum(STAGE_SIZES[depth])


@pytest.mark.parametrize("depth,block", [(10, BasicBlock), (50, BottleneckBlock)])
def test_both_block_types_run_and_train(depth, block):
    model = SqueezeTime(depth=depth, **TINY)
    clip = tiny_clip()
    variables = model.init(jax.random.key(0), clip)
    assert variables["params"]["backbone"]["layer1_0"].keys() >= (
        {"conv1", "conv2"} | ({"conv3"} if block is BottleneckBlock else set())
    )
    logits = model.apply(variables, clip)
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
    train_logits, updates = model.apply(
        variables,
        clip,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.key(1)},
    )
    assert train_logits.shape == (2, 5)
    # Training mode moves the running statistics; inference mode does not use batch stats.
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_released_parameter_counts():
    summary = model_summary(
        build_model(model_config()), (1, 16, 224, 224, 3), with_flops=False
    )
    assert summary["params"] == 29_706_688
    assert summary["backbone_params"] == 28_887_088
    assert summary["head_params"] == 819_600
    # The paper's 5.5 GFLOPs: 5.4829 G multiply-adds over full windows.
    assert summary["macs"] == pytest.approx(5.4829e9, rel=1e-3)
    depth18 = build_model(model_config(depth=18))
    variables = jax.eval_shape(
        lambda: depth18.init(jax.random.key(0), jnp.zeros((1, 16, 224, 224, 3)))
    )
    assert count_params(variables["params"]) == 16_339_696


def test_squeeze_puts_colour_major_and_time_minor():
    frames, colours = 4, 3
    t = np.arange(frames)[None, :, None, None, None]
    c = np.arange(colours)[None, None, None, None, :]
    clip = np.broadcast_to(100 * c + t, (1, frames, 2, 2, colours)).astype(np.float32)
    squeezed = np.asarray(squeeze_time(jnp.asarray(clip)))
    channel = np.arange(colours * frames)
    # Released order: index c*T + t. The order t*C + c would give 100*(k % C) + k // C.
    np.testing.assert_array_equal(
        squeezed[0, 0, 0], 100 * (channel // frames) + channel % frames
    )


def test_align_corners_resize_matches_definition():
    image = jax.random.normal(jax.random.key(0), (1, 3, 4, 2))
    resized = np.asarray(resize_align_corners(image, 5, 7))
    # Corners map onto corners exactly with align_corners=True.
    np.testing.assert_allclose(
        resized[0, [0, 0, -1, -1], [0, -1, 0, -1]],
        np.asarray(image)[0, [0, 0, -1, -1], [0, -1, 0, -1]],
        rtol=1e-6,
    )
    # Row 2 of 5 sits exactly on source row 1 (scale (3-1)/(5-1)); column 3 of 7 on 1.5.
    expected = 0.5 * (np.asarray(image)[0, 1, 1] + np.asarray(image)[0, 1, 2])
    np.testing.assert_allclose(resized[0, 2, 3], expected, rtol=1e-5)
    assert resize_align_corners(image, 3, 4) is image


@pytest.mark.parametrize(
    "shape", [(2, 16, 16, 3), (1, 7, 9, 2), (1, 1, 1, 1), (1, 2, 3, 1)]
)
def test_stem_max_pool_matches_reduce_window_values_and_gradients(shape):
    reference = lambda z: nn.max_pool(z, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    # Rounded values make ties common: the gradient must go to the first maximum.
    for x in (
        jax.random.normal(jax.random.key(0), shape),
        jnp.round(jax.random.normal(jax.random.key(2), shape)),
    ):
        np.testing.assert_array_equal(max_pool_3x3_stride2(x), reference(x))
        cotangent = jax.random.normal(jax.random.key(1), reference(x).shape)
        ref = jax.vjp(reference, x)[1](cotangent)[0]
        for kernels in ("cpu_tuned", "xla"):
            pool = max_pool_for(kernels)
            np.testing.assert_array_equal(pool(x), reference(x))
            ours = jax.vjp(pool, x)[1](cotangent)[0]
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = SqueezeTime(depth=10, dtype=jnp.bfloat16, **TINY)
    clip = tiny_clip()
    variables = model.init(jax.random.key(0), clip)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits, updates = model.apply(
        variables,
        clip,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.key(1)},
    )
    assert logits.dtype == jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    reference = SqueezeTime(depth=10, **TINY).apply(variables, clip)
    np.testing.assert_allclose(model.apply(variables, clip), reference, atol=0.1, rtol=0.1)


def test_init_follows_the_released_scheme():
    model = SqueezeTime(depth=10, widen_factor=0.5, pos_dims=(8, 4, 2, 1), num_frames=4)
    params = model.init(jax.random.key(0), tiny_clip(frames=4, size=64))["params"]
    stem = params["backbone"]["conv1"]["kernel"]  # 5x5x12x32: fan_out = 25*32
    assert np.std(stem) == pytest.approx(np.sqrt(2 / (25 * 32)), rel=0.1)
    assert np.std(params["fc_cls"]["kernel"]) == pytest.approx(0.01, rel=0.1)
    assert not np.any(params["fc_cls"]["bias"])
    short_bias = params["backbone"]["layer1_0"]["conv1"]["spatial_conv"]["short_conv"][
        "bias"
    ]
    assert np.max(np.abs(short_bias)) <= 1 / np.sqrt(32 * 9)  # uniform(+-1/sqrt(fan_in))
    bn = params["backbone"]["bn1"]
    assert np.all(bn["scale"] == 1) and not np.any(bn["bias"])


def test_conv_and_norm_are_injectable():
    conv = functools.partial(nn.Conv, use_bias=False, dtype=jnp.float32)
    norm = functools.partial(nn.GroupNorm, num_groups=4)
    block = BottleneckBlock(width=8, stride=2, pos_dim=4, conv=conv, norm=norm)
    x = jnp.ones((1, 8, 8, 16))
    variables = block.init(jax.random.key(0), x)
    assert "batch_stats" not in variables
    assert block.apply(variables, x).shape == (1, 4, 4, 32)


def test_wrong_inputs_are_named():
    model = SqueezeTime(depth=10, **TINY)
    with pytest.raises(ValueError, match="takes 2 frames"):
        model.init(jax.random.key(0), jnp.zeros((1, 3, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        model.init(jax.random.key(0), jnp.zeros((1, 2, 32, 32)))
    with pytest.raises(ValueError, match="depth"):
        build_model(model_config(depth=42))
    with pytest.raises(KeyError, match="unknown model setting"):
        model_config(dept=50)


def test_xla_and_cpu_tuned_kernels_are_the_same_function():
    """model.kernels swaps formulations only: a bottleneck block (1x1 matmuls, CTL
    gate, IOI's narrow convolutions, downsample, shortcut, every BatchNorm) gives the
    same outputs, input and parameter gradients and statistics with either. In
    float64, where rounding differences cannot hide a wrong formula."""
    from squeezetime_jax.models.squeezetime import make_conv, make_norm

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (4, 8, 8, 16), jnp.float64) * 2 + 1
        blocks = [
            BottleneckBlock(
                width=8,
                stride=2,  # with the downsample and the shortcut
                pos_dim=4,
                conv=make_conv(jnp.float64, kernels=k),
                norm=make_norm(True, jnp.float64, kernels=k),
            )
            for k in ("cpu_tuned", "xla")
        ]
        variables = blocks[0].init(jax.random.key(1), x)
        cotangent = jax.random.normal(
            jax.random.key(2),
            blocks[0].apply(variables, x, mutable=["batch_stats"])[0].shape,
            jnp.float64,
        )

        def run(block):
            def loss(params, x):
                y, updates = block.apply(
                    {"params": params, "batch_stats": variables["batch_stats"]},
                    x,
                    mutable=["batch_stats"],
                )
                return jnp.sum(y * cotangent), (y, updates)

            return jax.grad(loss, argnums=(0, 1), has_aux=True)(variables["params"], x)

        got, want = jax.jit(lambda: run(blocks[0]))(), jax.jit(lambda: run(blocks[1]))()
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
        assert np.abs(got[0][1]).max() > 1e-3  # the input gradient is not vanishing


def test_model_kernels_reach_every_layer():
    """The model passes its kernels to convolutions, BatchNorm and the stem's pool:
    with "xla" no custom VJP is left in the train-mode program."""
    clip = jax.ShapeDtypeStruct((2, 2, 32, 32, 3), jnp.float32)
    counts = {}
    for kernels in ("cpu_tuned", "xla"):
        model = SqueezeTime(depth=10, kernels=kernels, **TINY)
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), clip)
        jaxpr = str(
            jax.make_jaxpr(
                lambda v, x: model.apply(
                    v,
                    x,
                    train=True,
                    mutable=["batch_stats"],
                    rngs={"dropout": jax.random.key(1)},
                )
            )(variables, clip)
        )
        counts[kernels] = jaxpr.count("custom_vjp_call")
    assert counts["xla"] == 0
    # depth 10: the stem conv, pool and BN; 4 blocks of 2 CTLs with 8 BNs and 4 convs.
    assert counts["cpu_tuned"] > 50


def test_kernels_follow_the_platform_unless_set():
    assert build_model(model_config(), platform="tpu").kernels == "xla"
    assert build_model(model_config(), platform="gpu").kernels == "xla"
    assert build_model(model_config(), platform="cpu").kernels == "cpu_tuned"
    assert build_model(model_config()).kernels == "cpu_tuned"  # this host's CPU backend
    assert build_model(model_config(kernels="cpu_tuned"), platform="tpu").kernels == (
        "cpu_tuned"
    )
    assert build_model(model_config(kernels="xla"), platform="cpu").kernels == "xla"
    with pytest.raises(ValueError, match="model.kernels.*'fast'"):
        build_model(model_config(kernels="fast"))
