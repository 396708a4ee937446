"""Kinetics CSV annotations + downloaded clips -> list files that prepare reads."""

import csv
import shutil

import pytest
import tensorflow_datasets as tfds

from squeezetime_jax.configs import k700
from squeezetime_jax.data import kinetics_lists, prepare
from tests.fixtures import synthetic_videos as sv

HEADER = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
TRAIN = [
    ["playing guitar", "aaaaaaaaaaa", "14", "24", "train", "0"],
    ["abseiling", "bbb-b_bbbbb", "0", "10", "train", "0"],
    ["playing guitar", "ccccccccccc", "125", "135", "train", "1"],
    ["zumba", "ddddddddddd", "3", "13", "train", "0"],  # never downloaded
]
VAL = [
    ["abseiling", "eeeeeeeeeee", "30", "40", "validate", "0"],
    ["zumba", "fffffffffff", "7", "17", "validate", "0"],
]


def _write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _clip(youtube_id, start, end):
    return kinetics_lists.clip_stem(youtube_id, int(start), int(end)) + ".mp4"


@pytest.fixture
def annotations(tmp_path):
    return (
        _write_csv(tmp_path / "train.csv", TRAIN),
        _write_csv(tmp_path / "validate.csv", VAL),
    )


def _download(root, rows, per_class):
    """Real tiny clips in the layout of a downloader: per-class folders (named by the
    label, spaces kept) or flat per-split folders."""
    template = root / "template.mp4"
    if not template.exists():
        root.mkdir(parents=True, exist_ok=True)
        sv.write_video(template, sv.VideoSpec(num_frames=5, bframes=False))
    for label, yid, start, end, split, _ in rows:
        folder = root / (label if per_class else split)
        folder.mkdir(exist_ok=True)
        shutil.copy(template, folder / _clip(yid, start, end))
    template.unlink()


@pytest.mark.parametrize("per_class", [True, False])
def test_lists_from_csv_and_clips(tmp_path, annotations, per_class):
    videos = tmp_path / "k"
    _download(videos, TRAIN[:3] + VAL[:1], per_class)
    out = tmp_path / "lists"
    counts = kinetics_lists.make_lists(list(annotations), str(videos), str(out))
    assert counts == {
        "classes": 3,
        "splits": {
            "train": {"listed": 3, "missing": 1},
            "val": {"listed": 1, "missing": 1},
        },
    }
    names = (out / "classes.txt").read_text().splitlines()
    assert names == ["abseiling", "playing guitar", "zumba"]
    folder = (lambda r: r[0]) if per_class else (lambda r: r[4])
    expected = [f"{folder(r)}/{_clip(*r[1:4])} {names.index(r[0])}" for r in TRAIN[:3]]
    assert (out / "train.txt").read_text().splitlines() == expected
    assert (out / "val.txt").read_text().splitlines() == [
        f"{folder(VAL[0])}/{_clip(*VAL[0][1:4])} 0"
    ]
    with open(out / "missing.csv", newline="") as f:
        missing = list(csv.DictReader(f))
    assert [(m["youtube_id"], m["split"]) for m in missing] == [
        ("ddddddddddd", "train"),
        ("fffffffffff", "validate"),
    ]
    # The lists feed prepare as they are: splits from their names, labels and names kept.
    data = tmp_path / "prepared"
    summary = prepare.prepare_dataset(
        [str(out / "train.txt"), str(out / "val.txt")],
        str(videos),
        str(data),
        classes=str(out / "classes.txt"),
        progress=False,
    )
    assert summary["written"] == 4 and not summary["skipped"]
    assert summary["splits"]["train"]["per_class"] == {"playing guitar": 2, "abseiling": 1}
    source = tfds.data_source("squeezetime_video/custom", split="train", data_dir=str(data))
    assert [int(source[i]["label"]) for i in range(3)] == [1, 0, 1]


def test_cli_reports_missing_and_keeps_a_given_class_order(tmp_path, annotations, capsys):
    videos = tmp_path / "k"
    _download(videos, TRAIN[:3], per_class=True)
    classes = tmp_path / "k700_classes.txt"
    classes.write_text("zumba\nplaying guitar\nabseiling\nyoga\n")
    out = tmp_path / "lists"
    args = ["--csv", annotations[0], "--videos", str(videos), "--out", str(out)]
    assert kinetics_lists.main(args + ["--classes", str(classes)]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 of 4 clips on disk, 1 missing" in printed and "missing.csv" in printed
    assert (out / "classes.txt").read_text().split("\n")[:4] == [
        "zumba",
        "playing guitar",
        "abseiling",
        "yoga",
    ]
    assert [ln.split()[-1] for ln in (out / "train.txt").read_text().splitlines()] == [
        "1",
        "2",
        "1",
    ]
    classes.write_text("zumba\nabseiling\n")
    assert kinetics_lists.main(args + ["--classes", str(classes)]) == 2
    err = capsys.readouterr().err
    assert "1 label(s) of the CSVs are not in" in err and "playing guitar" in err


def test_bad_inputs_name_file_and_line(tmp_path):
    videos = tmp_path / "k"
    _download(videos, TRAIN[:1], per_class=True)
    test_csv = _write_csv(
        tmp_path / "test.csv", [["x", "1", "2", "test"]], HEADER[1:5]
    )  # test CSVs have no label column
    with pytest.raises(ValueError, match=r"test.csv: missing column\(s\) \['label'\]"):
        kinetics_lists.make_lists([test_csv], str(videos), str(tmp_path / "o"))
    bad = _write_csv(
        tmp_path / "bad.csv", [TRAIN[0], ["zumba", "x", "1.5", "9", "train", ""]]
    )
    with pytest.raises(ValueError, match=r"bad.csv:3: column time_start .* '1.5'"):
        kinetics_lists.make_lists([bad], str(videos), str(tmp_path / "o"))
    # The same clip twice under the video root is ambiguous.
    twice = videos / "elsewhere"
    twice.mkdir()
    shutil.copy(videos / TRAIN[0][0] / _clip(*TRAIN[0][1:4]), twice)
    good = _write_csv(tmp_path / "good.csv", TRAIN[:1])
    with pytest.raises(ValueError, match="aaaaaaaaaaa_000014_000024 is in .* twice"):
        kinetics_lists.make_lists([good], str(videos), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        kinetics_lists.make_lists([good], str(tmp_path / "nowhere"), str(tmp_path / "o"))


def test_k700_config():
    config = k700.get_config()
    assert config.model.num_classes == 700
    assert config.data.dataset == "squeezetime_video/kinetics700"
    assert config.optimizer.weight_decay == 3e-5
    assert k700.get_config("depth=18").model.depth == 18
