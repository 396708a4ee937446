"""Preparation: good videos written, bad ones skipped with reasons, readable via TFDS."""

import json
import os

import av
import pytest
import tensorflow_datasets as tfds

from squeezetime_jax.data import dataset_info, prepare
from tests.fixtures import synthetic_videos as sv
from tests.fixtures.demo_dataset import (
    CLASSES,
    DATASET,
)
from tests.fixtures.demo_dataset import (
    write_demo_dataset as prepare_suite,
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prep")
    out, videos, summary = prepare_suite(str(tmp))
    return tmp, out, videos, summary


def test_writes_exactly_the_good_videos(suite):
    _, out, videos, summary = suite
    good = [v for v in videos if v.num_frames is not None]
    source = tfds.data_source(DATASET, split="train", data_dir=out)
    records = [source[i] for i in range(len(source))]
    assert sorted(r["video_id"].decode() for r in records) == sorted(v.path for v in good)
    by_id = {r["video_id"].decode(): r for r in records}
    for v in good:
        r = by_id[v.path]
        assert r["label"] == v.label
        assert r["num_frames"] == v.num_frames
        with open(os.path.join(tmp_root(suite), v.path), "rb") as f:
            assert r["video"] == f.read()  # the original encoded file, byte for byte
    assert summary["splits"]["train"]["written"] == len(good)
    assert summary["splits"]["validation"]["written"] == 3
    assert summary["written"] == len(good) + 3


def tmp_root(suite):
    return os.path.join(str(suite[0]), "videos")


def test_bad_videos_listed_with_reasons(suite):
    _, out, videos, _ = suite
    with open(os.path.join(out, prepare.SUMMARY_FILE)) as f:
        summary = json.load(f)
    bad = {v.path: v.reason for v in videos if v.num_frames is None}
    skipped = {k["path"]: k for k in summary["skipped"]}
    assert set(skipped) == set(bad)
    for path, reason in bad.items():
        assert reason in skipped[path]["reason"]
        assert skipped[path]["split"] == "train"
    lines = {v.path: i + 1 for i, v in enumerate(videos)}
    assert all(k["line"] == lines[k["path"]] for k in summary["skipped"])


def test_per_class_counts_and_info(suite):
    _, out, videos, summary = suite
    good = [v for v in videos if v.num_frames is not None]
    expected = {name: sum(v.label == i for v in good) for i, name in enumerate(CLASSES)}
    assert summary["splits"]["train"]["per_class"] == {
        k: n for k, n in expected.items() if n
    }
    info = dataset_info(out, DATASET)
    assert info.class_names == list(CLASSES)
    assert info.num_classes == 3
    assert info.num_examples == {"train": len(good), "validation": 3}


def test_index_follows_record_order(suite):
    _, out, _, _ = suite
    source = tfds.data_source(DATASET, split="train", data_dir=out)
    builder_dir = tfds.builder(DATASET, data_dir=out).data_dir
    with open(os.path.join(builder_dir, prepare.index_file("train"))) as f:
        index = json.load(f)
    assert index["video_id"] == [source[i]["video_id"].decode() for i in range(len(source))]


def test_h264_file_really_has_bframes(suite):
    # Presentation order differs from decode order only when B-frames are present.
    with av.open(os.path.join(tmp_root(suite), "c0/bframes.mp4")) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.size]
    assert pts != sorted(pts)


def test_refuses_non_empty_output_without_overwrite(suite, capsys):
    tmp, out, _, _ = suite
    args = ["--list", str(tmp / "val_list.txt"), "--root", tmp_root(suite), "--out", out]
    assert prepare.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert os.path.exists(os.path.join(out, prepare.SUMMARY_FILE))


def test_cli_overwrite_prints_totals(tmp_path, capsys):
    root = tmp_path / "v"
    root.mkdir()
    sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=5, bframes=False))
    sv.write_zero_bytes(root / "b.mp4")
    lst = tmp_path / "my_val.txt"
    lst.write_text("a.mp4 1\nb.mp4 0\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("x")
    assert (
        prepare.main(
            [
                "--list",
                str(lst),
                "--root",
                str(root),
                "--out",
                str(out),
                "--overwrite",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "written 1, skipped 1" in printed and "b.mp4" in printed
    assert not (out / "stale").exists()
    # The split comes from the list's file name; class names default to label numbers.
    info = dataset_info(str(out), DATASET)
    assert info.num_examples == {"validation": 1}
    assert info.class_names == ["0", "1"]


def test_malformed_list_line_names_its_number(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("a.mp4 0\n\nno_label_here\n")
    with pytest.raises(ValueError, match=r"train.txt:3"):
        prepare.parse_list(str(lst), "train")
    lst.write_text("a.mp4 0\nb.mp4 x\n")
    with pytest.raises(ValueError, match=r"train.txt:2"):
        prepare.parse_list(str(lst), "train")


def test_kinetics400_config_names_its_classes_without_a_classes_file(tmp_path):
    from squeezetime_jax.resources import kinetics400_class_names

    root = tmp_path / "v"
    root.mkdir()
    sv.write_video(root / "a.mp4", sv.VideoSpec(num_frames=5, bframes=False))
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 7\n")
    out = tmp_path / "out"
    prepare.prepare_dataset(
        [str(lst)], str(root), str(out), config="kinetics400", progress=False
    )
    info = dataset_info(str(out), "squeezetime_video/kinetics400")
    names = kinetics400_class_names()
    assert info.class_names == names and len(names) == 400
    assert names[0] == "abseiling" and info.num_examples == {"validation": 1}
