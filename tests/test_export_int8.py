"""int8 export on real clips: calibration from a prepared dataset or a video list, and
the held-out check's agreement and accuracy against float32."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")
pytest.importorskip("torchao")

from squeezetime_jax.data import single_video  # noqa: E402
from squeezetime_jax.data.pipeline import EvalProtocol  # noqa: E402
from squeezetime_jax.export import clips as clip_source  # noqa: E402
from squeezetime_jax.export import mobile as export  # noqa: E402
from squeezetime_jax.export.clips import _data_config  # noqa: E402
from squeezetime_jax.inference.model import load  # noqa: E402
from squeezetime_jax.interop.torch_model import (  # noqa: E402
    SqueezeTimeTorch,
    randomize_batchnorm_,
)
from tests.fixtures.demo_dataset import write_demo_dataset  # noqa: E402

FRAMES, SIZE = 4, 32
CLIPS = dict(num_frames=FRAMES, size=SIZE, frame_interval=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    prepared, videos, _ = write_demo_dataset(directory)
    return str(directory), prepared, [v for v in videos if v.num_frames]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    twin = SqueezeTimeTorch(
        depth=10, widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_classes=3, num_frames=FRAMES
    )
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save(randomize_batchnorm_(twin, 0).eval().state_dict(), path)
    return str(path)


def test_clips_come_from_the_prepared_dataset_and_from_a_list(dataset):
    directory, prepared, good = dataset
    train = clip_source.read_clips(prepared, split="train", **CLIPS)
    # Every decodable training video (the bad ones were dropped at preparation), once.
    assert len(train) == len(good) and train.labelled
    assert train.clips.shape == (len(good), FRAMES, SIZE, SIZE, 3)
    assert train.clips.dtype == np.uint8
    by_path = {v.path: v.label for v in good}
    for vid, label in zip(train.video_ids, train.labels):
        assert by_path[vid] == label
    # The same pixels as the evaluation path decodes from the file itself.
    first = os.path.join(directory, "videos", train.video_ids[0])
    protocol = EvalProtocol(1, 1, SIZE, SIZE, "train")
    direct = single_video.video_views(
        single_video.read_video_bytes(first), _data_config(FRAMES, 4, SIZE, SIZE), protocol
    )["video"]
    np.testing.assert_array_equal(train.clips[0], direct[0])
    # A list with bad entries: they are skipped; a count takes a seeded subset.
    listed = clip_source.read_clips(
        os.path.join(directory, "train_list.txt"),
        root=os.path.join(directory, "videos"),
        **CLIPS,
    )
    assert sorted(listed.labels.tolist()) == sorted(v.label for v in good)
    two = clip_source.read_clips(prepared, split="train", count=2, **CLIPS)
    assert len(two) == 2 and set(two.video_ids) <= set(train.video_ids)
    with pytest.raises(ValueError, match="no split 'test'"):
        clip_source.read_clips(prepared, split="test", **CLIPS)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        clip_source.read_clips(os.path.join(directory, "nowhere"), **CLIPS)


def test_int8_calibrated_on_real_clips_reports_computed_agreement(
    dataset, checkpoint, tmp_path
):
    _, prepared, good = dataset
    lines = []
    checks = export.export_checkpoint(
        checkpoint,
        tmp_path,
        ["executorch"],
        frames=FRAMES,
        size=SIZE,
        int8=True,
        calibration_data=prepared,
        calibration_clips=4,
        check_data=prepared,
        check_split="validation",
        log=lines.append,
    )
    assert any(f"int8 calibration: 4 clips of {prepared}" in line for line in lines)
    held = [c for c in checks if isinstance(c, export.HeldOutCheck)]
    assert len(held) == 1 and held[0].clips == 3
    # The same numbers, computed directly: the int8 file and the JAX model on the clips.
    clips = clip_source.read_clips(prepared, split="validation", **CLIPS)
    run = export.load_pte(str(tmp_path / "squeezetime_xnnpack_int8.pte"))
    int8 = np.concatenate(
        [run(export.to_program_input(c.astype(np.float32))) for c in clips.clips]
    )
    model = load(checkpoint)
    float32 = np.asarray(model(export.normalize(clips.clips.astype(np.float32))))
    agreement = np.mean(int8.argmax(1) == float32.argmax(1))
    assert held[0].agreement == pytest.approx(agreement)
    assert held[0].top1 == pytest.approx(np.mean(int8.argmax(1) == clips.labels))
    assert held[0].float32_top1 == pytest.approx(np.mean(float32.argmax(1) == clips.labels))
    info = json.loads((tmp_path / "squeezetime_export_info.json").read_text())
    recorded = info["int8_vs_float32_held_out"][0]
    assert recorded["agreement"] == pytest.approx(agreement) and recorded["clips"] == 3
    # An accuracy gate below the measured drop fails the export with the numbers.
    drop = held[0].accuracy_drop
    assert export.held_out_agreement(int8, float32, clips.labels)["top1"] == held[0].top1
    gated = export.HeldOutCheck("x", "x", "x", 3, 0.5, 0.0, 1.0, max_accuracy_drop=0.5)
    assert not gated.passed and drop is not None
