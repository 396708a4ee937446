"""python -m squeezetime_jax.features on real encoded videos, against the PyTorch twin."""

import numpy as np
import pytest
import torch

from squeezetime_jax import features
from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.data import MEAN_RGB, STD_RGB, default_data_config, eval_protocol
from squeezetime_jax.data.single_video import video_views
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
from tests.fixtures import synthetic_videos as sv

NAMES = ["walk", "run", "jump", "sit", "wave"]
# The test protocol stored with the checkpoint: 2 clips x 1 centre crop of 48.
PROTOCOL = {"num_clips": 2, "num_crops": 1, "short_side": 48, "crop_size": 48}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batchnorm_(
        SqueezeTimeTorch(
            depth=10, widen_factor=0.125, pos_dims=(4, 2, 1, 1), num_frames=2, num_classes=5
        )
    ).eval()
    stored = metadata_lib.Metadata(
        class_names=NAMES, frame_interval=4, protocols={"test": PROTOCOL}
    )
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pth")
    torch.save(
        {"state_dict": model.state_dict(), "meta": metadata_lib.to_pth_meta(stored)}, path
    )
    return path, model


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    a = sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=30))
    b = sv.write_video(root / "b.mp4", sv.VideoSpec(num_frames=20, height=72, width=96))
    broken = sv.write_truncated(a, root / "broken.mp4", keep_fraction=0.3)
    return str(a), str(b), str(broken)


def _twin_outputs(model, path):
    """Pooled features, logits and the layer2 map of each view, by the PyTorch twin."""
    data = default_data_config()
    data.num_frames = 2
    protocol = eval_protocol(data, {"base": "test", **PROTOCOL})
    views = video_views(open(path, "rb").read(), data, protocol)["video"]
    x = (views.astype(np.float32) - np.array(MEAN_RGB, np.float32)) / np.array(
        STD_RGB, np.float32
    )
    captured = {}
    hook = model.backbone.net.layer2.register_forward_hook(
        lambda module, inputs, output: captured.update(layer2=output)
    )
    with torch.no_grad():
        last = model.backbone(torch.from_numpy(x).permute(0, 4, 1, 2, 3))
        logits = model.cls_head(last)
    hook.remove()
    return {
        "pooled": last.mean(dim=(2, 3)).numpy(),
        "logits": logits.numpy(),
        "layer2": captured["layer2"].permute(0, 2, 3, 1).numpy(),  # NHWC
    }


def _close(got, want):
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-6)


def test_pooled_and_stage_features_per_clip_and_video(checkpoint, videos, tmp_path, capsys):
    path, model = checkpoint
    a, b, broken = videos
    out = tmp_path / "features.npz"
    code = features.main(
        ["--checkpoint", path, "--stages=layer2", "--out", str(out), a, broken, b]
    )
    captured = capsys.readouterr()
    assert code == 1  # one unreadable video, reported and left out
    assert f"{broken}: error:" in captured.err
    with np.load(out) as saved:
        assert list(saved["videos"]) == [a, b]
        assert list(saved["class_names"]) == NAMES
        # The clip settings came from the checkpoint: no view flags were given.
        assert (int(saved["num_clips"]), int(saved["crop_size"])) == (2, 48)
        assert list(saved["clip_index"]) == [0, 1] and list(saved["crop_index"]) == [0, 0]
        width = model.cls_head.fc_cls.in_features
        assert saved["clip_features"].shape == (2, 2, width)
        for i, video in enumerate((a, b)):
            want = _twin_outputs(model, video)
            _close(saved["clip_features"][i], want["pooled"])
            _close(saved["logits"][i], want["logits"])
            _close(saved["layer2"][i], want["layer2"].mean(axis=(1, 2)))
        np.testing.assert_allclose(
            saved["features"], saved["clip_features"].mean(axis=1), rtol=1e-6
        )


def test_spatial_maps_and_view_overrides(checkpoint, videos, tmp_path):
    path, model = checkpoint
    a, _, _ = videos
    out = tmp_path / "maps.npz"
    code = features.main(
        ["--checkpoint", path, "--stages=layer2", "--spatial", "--out", str(out), a]
    )
    assert code == 0
    with np.load(out) as saved:
        _close(saved["layer2"][0], _twin_outputs(model, a)["layer2"])
        assert saved["layer2"].shape[2:4] == (6, 6)  # 48 / 8
    out = tmp_path / "one.npz"
    code = features.main(["--checkpoint", path, "--views=3x3", "--out", str(out), a])
    assert code == 0
    with np.load(out) as saved:
        assert saved["clip_features"].shape[:2] == (1, 9)
        assert "layer2" not in saved


def test_bad_stage_is_rejected(checkpoint, videos, capsys):
    code = features.main(
        ["--checkpoint", checkpoint[0], "--stages=layer9", "--out", "x.npz", videos[0]]
    )
    assert code == 2
    assert "unknown ['layer9']" in capsys.readouterr().err
