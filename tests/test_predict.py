"""python -m squeezetime_jax.predict on generated mp4/avi/webm files and an unreadable one."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from squeezetime_jax import predict
from squeezetime_jax.data import MEAN_RGB, STD_RGB, default_data_config, eval_protocol
from squeezetime_jax.data.single_video import video_views
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
from squeezetime_jax.resources import kinetics400_class_names
from tests.fixtures import synthetic_videos as sv
from tests.training_utils import REPO, device_env

SMALL = ["--short_side=48", "--crop_size=48"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A released-layout .pth of a tiny 400-class model (a K400 head), and the PyTorch
    twin that wrote it, which computes the expected probabilities independently."""
    torch.manual_seed(0)
    model = randomize_batchnorm_(
        SqueezeTimeTorch(depth=10, widen_factor=0.125, pos_dims=(4, 2, 1, 1), num_frames=2)
    )
    with torch.no_grad():  # spread the logits so the classes are well separated
        model.cls_head.fc_cls.weight.mul_(30)
    path = str(tmp_path_factory.mktemp("ckpt") / "k400_tiny.pth")
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model.eval()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = [
        sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=30)),
        sv.write_video(
            root / "b.avi",
            sv.VideoSpec(codec="mpeg4", container="avi", num_frames=20, bframes=False),
        ),
        sv.write_video(
            root / "c.webm",
            sv.VideoSpec(
                codec="libvpx-vp9", container="webm", num_frames=20, bframes=False
            ),
        ),
    ]
    broken = sv.write_truncated(good[0], root / "broken.mp4", keep_fraction=0.3)
    return [str(p) for p in good], str(broken)


def _expected(model, path, clips, crops):
    """Mean softmax over the views by the PyTorch twin, outside the predictor."""
    data = default_data_config()
    data.num_frames = 2
    protocol = eval_protocol(
        data,
        {
            "base": "test",
            "num_clips": clips,
            "num_crops": crops,
            "short_side": 48,
            "crop_size": 48,
        },
    )
    views = video_views(open(path, "rb").read(), data, protocol)["video"]
    assert views.shape == (clips * crops, 2, 48, 48, 3)
    x = (views.astype(np.float32) - np.array(MEAN_RGB, np.float32)) / np.array(
        STD_RGB, np.float32
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).double().numpy()
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return (probs / probs.sum(-1, keepdims=True)).mean(0)


def _check_top(top, expected):
    """Reported probabilities are the expected ones, in descending order, and the best."""
    got = np.array([t["probability"] for t in top])
    np.testing.assert_allclose(
        got, expected[[t["index"] for t in top]], rtol=1e-3, atol=1e-6
    )
    assert np.all(np.diff(got) <= 0)
    assert got[-1] >= np.sort(expected)[::-1][len(top)] - 1e-5
    assert got[0] == pytest.approx(expected.max(), rel=1e-3)


def test_k400_class_names_ship_with_the_package():
    names = kinetics400_class_names()
    assert len(names) == 400 and len(set(names)) == 400
    assert names == sorted(names)
    assert names[:3] == ["abseiling", "air drumming", "answering questions"]
    assert names[-1] == "zumba"
    # Indices as in the released label map (checked against another K400 index table).
    assert names.index("moving furniture") == 200
    assert names.index("passing American football (not in game)") == 209
    assert names.index("playing accordion") == 217


def test_json_top5_with_k400_names_and_an_unreadable_file(checkpoint, videos, capsys):
    path, model = checkpoint
    good, broken = videos
    missing = os.path.join(os.path.dirname(broken), "missing.mp4")
    code = predict.main(
        [
            "--checkpoint",
            path,
            "--json",
            "--views=2x3",
            *SMALL,
            good[0],
            broken,
            good[1],
            missing,
            good[2],
        ]
    )
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1
    assert [line["video"] for line in lines] == [good[0], broken, good[1], missing, good[2]]
    assert "cannot open container" in lines[1]["error"]
    assert "no such file" in lines[3]["error"]
    assert "2 of 5 videos could not be read" in captured.err
    names = kinetics400_class_names()
    for line, video in ((lines[0], good[0]), (lines[2], good[1]), (lines[4], good[2])):
        top = line["top"]
        assert line["views"] == 6 and len(top) == 5
        _check_top(top, _expected(model, video, 2, 3))
        assert [t["class"] for t in top] == [names[t["index"]] for t in top]


def test_text_output_with_class_file_and_one_view(checkpoint, videos, tmp_path, capsys):
    path, model = checkpoint
    good, _ = videos
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"action {i}" for i in range(400)) + "\n")
    code = predict.main(
        ["--checkpoint", path, f"--classes={classes}", "--views=1x1", *SMALL, good[2]]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == good[2] and len(out) == 6
    expected = _expected(model, good[2], 1, 1)
    best = int(np.argmax(expected))
    assert out[1].split(None, 1)[1] == f"action {best}"
    assert float(out[1].split()[0].rstrip("%")) == pytest.approx(
        100 * expected[best], abs=0.006
    )

    classes.write_text("walk\nrun\n")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", path, f"--classes={classes}", good[2]])
    assert exit_info.value.code == 2
    assert "2 class names, but the model predicts 400" in capsys.readouterr().err


def test_bad_views_flag_is_rejected(checkpoint, videos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", checkpoint[0], "--views=3x2", videos[0][0]])
    assert exit_info.value.code == 2
    assert "crops 1 or 3" in capsys.readouterr().err


def test_module_cli_exit_status_and_error_line(checkpoint, videos):
    path, _ = checkpoint
    good, broken = videos
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "squeezetime_jax.predict",
            f"--checkpoint={path}",
            "--views=1x1",
            *SMALL,
            broken,
            good[1],
        ],
        env=device_env(1),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 1, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"{broken}: error: unreadable video: cannot open container")
    assert lines[1] == good[1] and len(lines) == 7


def test_views_and_names_stored_with_the_checkpoint_need_no_flags(
    checkpoint, videos, tmp_path, capsys
):
    """A .pth carrying its class names and test protocol: predict uses them, and its
    flags override them."""
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    _, model = checkpoint
    names = [f"action {i}" for i in range(400)]
    stored = metadata_lib.Metadata(
        class_names=names,
        frame_interval=4,
        protocols={
            "test": {"num_clips": 2, "num_crops": 3, "short_side": 48, "crop_size": 48}
        },
    )
    path = str(tmp_path / "labelled.pth")
    torch.save(
        {"state_dict": model.state_dict(), "meta": metadata_lib.to_pth_meta(stored)}, path
    )
    good, _ = videos
    assert predict.main(["--checkpoint", path, "--json", good[0]]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["views"] == 6
    _check_top(line["top"], _expected(model, good[0], 2, 3))
    assert [t["class"] for t in line["top"]] == [names[t["index"]] for t in line["top"]]

    assert predict.main(["--checkpoint", path, "--json", "--views=1x1", good[0]]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["views"] == 1
    _check_top(line["top"], _expected(model, good[0], 1, 1))
