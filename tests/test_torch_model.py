"""The plain PyTorch twin: released key layout, parameter counts, shapes, init."""

import ast
import pathlib

import numpy as np
import pytest
import torch

from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_

OFFICIAL_KEYS = pathlib.Path(__file__).parent / "data" / "official_state_dict_keys.txt"
TINY = dict(widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_classes=5, num_frames=4)


def _official_entries():
    entries = []
    for line in OFFICIAL_KEYS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype = line.split("\t")
        entries.append((name, tuple(ast.literal_eval(shape)), dtype))
    return entries


def _meta_model(**kwargs):
    with torch.device("meta"):
        return SqueezeTimeTorch(**kwargs)


def test_k400_state_dict_is_the_released_one_in_order():
    official = _official_entries()
    assert len(official) == 757
    ours = [
        (k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in _meta_model().state_dict().items()
    ]
    assert ours == official


def test_parameter_counts():
    model = _meta_model()
    count = lambda module: sum(p.numel() for p in module.parameters())
    assert count(model) == 29_706_688
    assert count(model.backbone) == 28_887_088
    assert count(model.cls_head) == 819_600
    assert count(_meta_model(depth=18)) == 16_339_696


def test_released_checkpoint_layout_loads_strictly():
    source = SqueezeTimeTorch(depth=50, **TINY)
    target = SqueezeTimeTorch(depth=50, **TINY)
    result = target.load_state_dict(source.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with pytest.raises(RuntimeError, match="Missing key"):
        SqueezeTimeTorch(depth=10, **TINY).load_state_dict(source.state_dict(), strict=True)


@pytest.mark.parametrize("depth", [10, 18, 34, 50, 101, 152, 200])
def test_output_shapes_every_depth(depth):
    model = SqueezeTimeTorch(
        depth=depth, widen_factor=0.125, pos_dims=(8, 4, 2, 1), num_classes=3, num_frames=2
    ).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 2, 32, 32))
    assert logits.shape == (2, 3)
    expansion = 4 if depth >= 50 else 1
    assert model.cls_head.fc_cls.in_features == 64 * expansion


def test_widen_factor_truncates_and_basic_conv1_uses_pos_dim_7():
    model = _meta_model(
        depth=18, widen_factor=0.3, pos_dims=(9, 5, 3, 2), num_classes=4, num_frames=3
    )
    sd = model.state_dict()
    # int(64 * 0.3) = 19, int(512 * 0.3) = 153 (not 19 * 8 = 152).
    assert sd["backbone.net.conv1.weight"].shape == (19, 9, 5, 5)
    assert sd["backbone.net.layer4.0.conv2.temporal_conv.weight"].shape == (153, 153, 1, 1)
    assert sd["cls_head.fc_cls.weight"].shape == (4, 153)
    for stage, pos_dim in zip(range(1, 5), (9, 5, 3, 2)):
        prefix = f"backbone.net.layer{stage}.1."
        assert sd[prefix + "conv1.spatial_conv.pos_embed"].shape == (1, 16, 7, 7)
        assert sd[prefix + "conv2.spatial_conv.pos_embed"].shape == (
            1,
            16,
            pos_dim,
            pos_dim,
        )


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = SqueezeTimeTorch(depth=10, **TINY)
    nn_init_head = model.cls_head.fc_cls
    torch.nn.init.normal_(nn_init_head.weight)  # make the head's input visible
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_released_initialization():
    torch.manual_seed(0)
    model = SqueezeTimeTorch(
        depth=50, widen_factor=0.5, pos_dims=(56, 28, 14, 7), num_classes=400, num_frames=16
    )
    sd = model.state_dict()
    head = sd["cls_head.fc_cls.weight"]
    assert abs(head.std().item() - 0.01) < 0.001
    assert torch.count_nonzero(sd["cls_head.fc_cls.bias"]) == 0
    # kaiming normal, fan_out, ReLU gain: std sqrt(2 / (out * kh * kw)).
    stem = sd["backbone.net.conv1.weight"]
    assert abs(stem.std().item() / np.sqrt(2 / (32 * 25)) - 1) < 0.05
    pos = sd["backbone.net.layer1.0.conv2.spatial_conv.pos_embed"]
    assert abs(pos.std().item() / np.sqrt(2 / 56**2) - 1) < 0.05
    # Conv biases keep PyTorch's default uniform(+-1/sqrt(fan_in)).
    bias = sd["backbone.net.layer1.0.conv2.spatial_conv.short_conv.bias"]
    bound = 1 / np.sqrt(32 * 9)
    assert bias.abs().max() <= bound and bias.abs().max() > bound / 2
    assert torch.all(sd["backbone.net.bn1.weight"] == 1)
    assert torch.all(sd["backbone.net.bn1.bias"] == 0)


def test_randomize_batchnorm_is_well_conditioned():
    model = randomize_batchnorm_(SqueezeTimeTorch(depth=10, **TINY), seed=1)
    var = model.backbone.net.bn1.running_var
    assert var.min() >= 0.5 and var.max() <= 2.0
    assert not torch.all(model.backbone.net.bn1.weight == 1)
