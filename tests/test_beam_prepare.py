"""Preparation as a Beam pipeline (DirectRunner): the local path's output, resumable."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

pytest.importorskip("apache_beam")

from squeezetime_jax.data import beam_prepare, dataset_info, prepare  # noqa: E402
from tests.fixtures import synthetic_videos as sv  # noqa: E402
from tests.fixtures.demo_dataset import (  # noqa: E402
    CLASSES,
    DATASET,
    write_demo_dataset,  # noqa: E402
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The demo suite (good and bad real videos) prepared by the local pool and by Beam
    with two videos per shard (so one train shard holds only bad videos)."""
    tmp = tmp_path_factory.mktemp("beam")
    local_out, videos, local_summary = write_demo_dataset(tmp)
    beam_out = str(tmp / "beam")
    summary = beam_prepare.prepare_dataset_beam(
        [str(tmp / "train_list.txt"), str(tmp / "val_list.txt")],
        str(tmp / "videos"),
        beam_out,
        classes=str(tmp / "classes.txt"),
        videos_per_shard=2,
    )
    return tmp, local_out, local_summary, beam_out, summary, videos


def _records(out, split):
    source = tfds.data_source(DATASET, split=split, data_dir=out)
    return [source[i] for i in range(len(source))]


def _builder_dir(out):
    return os.fspath(tfds.builder(DATASET, data_dir=out).data_dir)


def test_same_examples_as_the_local_pool(prepared):
    _, local_out, _, beam_out, _, videos = prepared
    for split in ("train", "validation"):
        local, beam = _records(local_out, split), _records(beam_out, split)
        assert [r["video_id"] for r in beam] == [r["video_id"] for r in local]
        for a, b in zip(local, beam):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    good = [v.path for v in videos if v.num_frames is not None]
    assert [r["video_id"].decode() for r in _records(beam_out, "train")] == good
    # Shards of two videos: the train split's third shard held only bad videos.
    info = tfds.builder(DATASET, data_dir=beam_out).info
    assert info.splits["train"].shard_lengths == [2, 2, 1]
    assert info.splits["validation"].shard_lengths == [2, 1]


def test_same_summary_index_and_info(prepared):
    _, local_out, local_summary, beam_out, summary, _ = prepared
    with open(os.path.join(beam_out, prepare.SUMMARY_FILE)) as f:
        assert json.load(f) == summary
    assert summary["data_dir"] == beam_out
    assert {**summary, "data_dir": None} == {**local_summary, "data_dir": None}
    reasons = {k["path"]: k["reason"] for k in summary["skipped"]}
    assert set(reasons) == {"c2/truncated.mp4", "c0/empty.mp4", "c1/missing.mp4"}
    assert reasons["c1/missing.mp4"] == "missing file"
    for split in ("train", "validation"):
        name = prepare.index_file(split)
        with open(os.path.join(_builder_dir(local_out), name)) as f:
            local_index = json.load(f)
        with open(os.path.join(_builder_dir(beam_out), name)) as f:
            assert json.load(f) == local_index
    info = dataset_info(beam_out, DATASET)
    assert info.class_names == list(CLASSES)
    assert info.num_examples == dataset_info(local_out, DATASET).num_examples
    # Only the plan is left of the work directory; every shard was moved or deleted.
    work = os.path.join(beam_out, beam_prepare.WORK_DIR)
    assert os.listdir(work) == [beam_prepare.PLAN_FILE]


def test_rerun_resumes_finished_shards(prepared):
    tmp, _, _, _, summary, videos = prepared
    root = tmp / "resume_videos"
    shutil.copytree(tmp / "videos", root)
    lists = [str(tmp / "train_list.txt"), str(tmp / "val_list.txt")]
    out = str(tmp / "resume")
    # An interrupted run: the plan is written and only the first shard of each split
    # (both hold the suite's first two videos) finished.
    entries, class_names = prepare.read_inputs(lists, "custom", str(tmp / "classes.txt"))
    plan = beam_prepare.make_plan(
        entries,
        root=str(root),
        config="custom",
        class_names=class_names,
        reencode=None,
        videos_per_shard=2,
    )
    work = beam_prepare._start_or_resume(out, plan, overwrite=False)
    for split in ("train", "validation"):
        beam_prepare.write_shard(plan, work, beam_prepare.Shard(split, 0))
    # Were those shards prepared again, its videos would now be skipped as missing.
    for v in videos[:2]:
        os.remove(root / v.path)
    resumed = beam_prepare.prepare_dataset_beam(
        lists, str(root), out, classes=str(tmp / "classes.txt"), videos_per_shard=2
    )
    assert {**resumed, "data_dir": None} == {**summary, "data_dir": None}
    # A finished directory is not prepared again either.
    shutil.rmtree(root)
    again = beam_prepare.prepare_dataset_beam(
        lists, str(root), out, classes=str(tmp / "classes.txt"), videos_per_shard=2
    )
    assert again == resumed


def test_other_inputs_refused_then_overwrite(prepared, tmp_path):
    tmp, _, _, beam_out, _, _ = prepared
    lists = [str(tmp / "val_list.txt")]
    out = str(tmp_path / "out")
    shutil.copytree(beam_out, out)
    same = dict(classes=str(tmp / "classes.txt"), videos_per_shard=2)
    with pytest.raises(
        ValueError, match=r"started with other inputs \(differing: splits\)"
    ):
        beam_prepare.prepare_dataset_beam(lists, str(tmp / "videos"), out, **same)
    summary = beam_prepare.prepare_dataset_beam(
        lists, str(tmp / "videos"), out, overwrite=True, **same
    )
    assert summary["written"] == 3 and summary["splits"].keys() == {"validation"}
    assert "train" not in tfds.builder(DATASET, data_dir=out).info.splits
    assert not any("train" in name for name in os.listdir(_builder_dir(out)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        beam_prepare.prepare_dataset_beam(
            lists, str(tmp / "videos"), str(tmp_path / "other")
        )


def test_cli_runner_flag_and_pipeline_options(tmp_path, capsys):
    root = tmp_path / "v"
    root.mkdir()
    sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=5, bframes=False))
    sv.write_zero_bytes(root / "b.mp4")
    lst = tmp_path / "my_val.txt"
    lst.write_text("a.mp4 1\nb.mp4 0\n")
    args = ["--list", str(lst), "--root", str(root), "--out", str(tmp_path / "out")]
    assert prepare.main(args + ["--direct_num_workers=1"]) == 2  # Beam's, needs --runner
    assert "--direct_num_workers=1" in capsys.readouterr().err
    beam_args = ["--runner=DirectRunner", "--direct_num_workers=1", "--videos_per_shard=1"]
    assert prepare.main(args + beam_args) == 0
    printed = capsys.readouterr().out
    assert "written 1, skipped 1" in printed and "b.mp4: empty file" in printed
    assert dataset_info(str(tmp_path / "out"), DATASET).num_examples == {"validation": 1}
    # The same command again finds the work done.
    assert prepare.main(args + beam_args) == 0
    assert "written 1, skipped 1" in capsys.readouterr().out


def test_reencode_matches_local_path(tmp_path):
    root = tmp_path / "v"
    root.mkdir()
    sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=12))
    lst = tmp_path / "train.txt"
    lst.write_text("a.mp4 0\n")
    spec = "short_side=32,gop=4"
    local = prepare.prepare_dataset(
        [str(lst)], str(root), str(tmp_path / "local"), reencode=spec, progress=False
    )
    beam = beam_prepare.prepare_dataset_beam(
        [str(lst)], str(root), str(tmp_path / "beam"), reencode=spec
    )
    assert beam["reencode"] == local["reencode"] == {**beam["reencode"], "gop": 4}
    # x264 output differs by a few bytes from run to run, so the pictures are compared.
    assert beam["video_bytes"]["source"] == local["video_bytes"]["source"]
    (a,) = _records(str(tmp_path / "local"), "train")
    (b,) = _records(str(tmp_path / "beam"), "train")
    for key in ("num_frames", "height", "width", "label", "video_id", "codec"):
        assert a[key] == b[key], key
    assert (b["num_frames"], b["height"]) == (12, 32) and len(b["packets"]) == 12
