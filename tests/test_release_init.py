"""init_from a PyTorch file as the release's load_ckpts reads it, never silently."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from squeezetime_jax.interop import naming, torch_io  # noqa: E402
from squeezetime_jax.interop.conversion import expected_variables  # noqa: E402
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch  # noqa: E402
from squeezetime_jax.models import model_config  # noqa: E402
from squeezetime_jax.training.release_init import load_release_backbone  # noqa: E402

SMALL = dict(depth=10, widen_factor=0.25, num_frames=4, num_classes=7)


def _release_load_ckpts_copies(net, pretrain):
    """The names the release's load_ckpts copies: the network's own parameters
    (named_parameters) whose name is a key of the file and whose shape matches."""
    return {
        name
        for name, p in net.named_parameters()
        if name in pretrain and tuple(pretrain[name].shape) == tuple(p.shape)
    }


def _our_variables(**overrides):
    """The Flax model's variables (shapes from an abstract init; random values)."""
    config = model_config(**{**SMALL, **overrides})
    rng = np.random.default_rng(0)
    flat = {
        path: (
            np.zeros(shape, np.float32)
            if path[0] == "batch_stats"
            else rng.standard_normal(shape).astype(np.float32)
        )
        for path, shape in expected_variables(config).items()
    }
    return naming.unflatten(flat), config


@pytest.mark.parametrize("layout", ["bare_state_dict", "prefixed_model", "plain"])
def test_copies_exactly_what_load_ckpts_copies_and_reports_the_rest(tmp_path, layout):
    torch.manual_seed(0)
    # "ImageNet" source: other input channels (2 frames), other classes, other pos_dims
    # in stage 4, so some tensors differ in shape.
    source = SqueezeTimeTorch(
        depth=10,
        widen_factor=0.25,
        num_frames=2,
        num_classes=1000,
        pos_dims=(56, 28, 14, 9),
    )
    net_state = source.backbone.net.state_dict()
    if layout == "bare_state_dict":
        payload = {"state_dict": net_state, "meta": {"epoch": 3}}
    elif layout == "prefixed_model":
        payload = {"model": source.state_dict()}  # backbone.net.* and cls_head.*
    else:
        payload = dict(net_state)
    path = tmp_path / "pretrain.pth"
    torch.save(payload, path)

    target, config = _our_variables()
    twin = SqueezeTimeTorch.from_config(config).backbone.net
    bare = {k: v for k, v in net_state.items()}
    expected = _release_load_ckpts_copies(twin, bare)
    merged, report = load_release_backbone(str(path), target)

    assert set(report.copied) == expected
    assert "conv1.weight" not in expected  # 6 input channels vs 12
    assert any("pos_embed" in n for n in expected)
    skipped = {s["name"]: s["reason"] for s in report.skipped}
    assert skipped["conv1.weight"].startswith("shape (16, 6, 5, 5) in the file")
    # The basic block's conv1 is built with pos_dim 7 whatever the stage; conv2 of
    # stage 4 takes the stage's (9 in the file, 7 here).
    assert {n for n in skipped if "pos_embed" in n} == {
        "layer4.0.conv2.spatial_conv.pos_embed"
    }
    # Values moved with the layout change; statistics and head untouched.
    flat, before = naming.flatten(merged), naming.flatten(target)
    for fpath in flat:
        torch_name = naming.flax_path_to_torch_key(fpath)
        name = torch_name[len("backbone.net.") :]
        if name in expected:
            np.testing.assert_array_equal(
                naming.flax_array_to_torch(fpath, np.asarray(flat[fpath])),
                net_state[name].numpy(),
            )
        else:
            np.testing.assert_array_equal(flat[fpath], before[fpath])
    unused = {u["key"]: u["reason"] for u in report.unused}
    assert any("statistics" in r for r in unused.values())
    if layout == "prefixed_model":
        assert unused["cls_head.fc_cls.weight"].startswith("classifier head")
    assert "skipped conv1.weight: shape" in report.summary()


def test_statistics_copied_when_asked(tmp_path):
    source = SqueezeTimeTorch(depth=10, widen_factor=0.25, num_frames=4, num_classes=7)
    with torch.no_grad():
        source.backbone.net.bn1.running_mean.fill_(0.25)
    path = tmp_path / "k.pth"
    torch_io.write_checkpoint(path, {k: v.numpy() for k, v in source.state_dict().items()})
    target, _ = _our_variables()
    merged, report = load_release_backbone(str(path), target, copy_batch_stats=True)
    np.testing.assert_array_equal(merged["batch_stats"]["backbone"]["bn1"]["mean"], 0.25)
    assert "bn1.running_mean" in report.copied and not report.skipped
    merged, _ = load_release_backbone(str(path), target)
    np.testing.assert_array_equal(merged["batch_stats"]["backbone"]["bn1"]["mean"], 0.0)
