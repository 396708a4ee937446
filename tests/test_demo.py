"""The demo: its scenes carry the label only in frame order, and the whole job runs."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import av
import numpy as np
import pytest

from squeezetime_jax.demo import generate, run, scenes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def horizontal_motion_energy(frames):
    """Sum over frame pairs of dI/dt * dI/dx (grayscale); negative for content moving
    right, since then I(x, t+1) = I(x - v, t) and dI/dt = -v dI/dx."""
    g = frames.astype(np.float64).mean(axis=-1)
    dt, mean = g[1:] - g[:-1], (g[1:] + g[:-1]) / 2
    dx = (np.roll(mean, -1, axis=2) - np.roll(mean, 1, axis=2)) / 2
    return (dt * dx).sum()


def motion_label(frames):
    return scenes.label_of(-horizontal_motion_energy(frames))


@pytest.fixture(scope="module")
def rendered():
    labels = np.arange(200) % len(scenes.CLASSES)
    videos = [
        scenes.scene_frames(scenes.make_scene(1000 + i, int(label), 64, 48, 16))
        for i, label in enumerate(labels)
    ]
    return np.stack(videos), labels


def test_temporal_order_carries_the_label(rendered):
    """A hand-made motion-energy classifier reads the class from the ordered frames."""
    videos, labels = rendered
    predicted = np.array([motion_label(v) for v in videos])
    assert np.mean(predicted == labels) >= 0.95


def test_shuffled_frames_carry_no_label(rendered):
    videos, labels = rendered
    rng = np.random.default_rng(0)
    predicted = np.array([motion_label(v[rng.permutation(v.shape[0])]) for v in videos])
    # Chance is 0.5; with 200 videos 0.62 is about 3.4 standard deviations above it.
    assert abs(np.mean(predicted == labels) - 0.5) < 0.12


def test_single_frames_carry_no_label(rendered):
    """A nearest-centroid classifier on single frames (8x8 colour thumbnails) is at
    chance, and the two classes' mean frames differ no more than two halves of one class."""
    videos, labels = rendered
    rng = np.random.default_rng(0)
    frames = videos[np.arange(len(videos)), rng.integers(0, videos.shape[1], len(videos))]
    thumbs = (
        frames.reshape(len(frames), 8, 6, 8, 8, 3)
        .mean(axis=(2, 4))
        .reshape(len(frames), -1)
    )
    train = np.arange(len(labels)) < 120
    centroids = np.stack([thumbs[train & (labels == c)].mean(0) for c in range(2)])
    distances = ((thumbs[~train, None] - centroids[None]) ** 2).sum(-1)
    assert abs(np.mean(distances.argmin(1) == labels[~train]) - 0.5) < 0.15
    left, right = videos[labels == 0], videos[labels == 1]
    class_gap = np.abs(left.mean(axis=(0, 1)) - right.mean(axis=(0, 1))).mean()
    split_gap = np.abs(left[::2].mean(axis=(0, 1)) - left[1::2].mean(axis=(0, 1))).mean()
    assert class_gap < 1.5 * split_gap


def test_reversed_scene_is_the_other_class():
    for seed in range(4):
        for label in range(len(scenes.CLASSES)):
            quiet = dataclasses.replace(
                scenes.make_scene(seed, label, 48, 40, 12), noise_sigma=0.0
            )
            backwards = scenes.reversed_scene(quiet)
            frames = scenes.scene_frames(quiet)
            np.testing.assert_array_equal(scenes.scene_frames(backwards), frames[::-1])
            assert motion_label(frames) == label
            assert motion_label(frames[::-1]) == 1 - label


def test_scene_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="label must be in"):
        scenes.make_scene(0, 2, 32, 32, 8)
    with pytest.raises(ValueError, match="unknown split"):
        generate.plan_split("holdout", 3, 0)


def test_generated_files_are_real_varied_h264(tmp_path):
    info = generate.generate_dataset(
        str(tmp_path), {"train": 24, "test": 4}, seed=3, workers=1, progress=False
    )
    lines = open(info["lists"]["train"]).read().split("\n")
    entries = [line.rsplit(" ", 1) for line in lines if line]
    assert (
        len(entries) == 24
        and sorted(int(label) for _, label in entries) == [0] * 12 + [1] * 12
    )
    assert open(info["classes"]).read().split() == list(scenes.CLASSES)
    plan = generate.plan_split("train", 24, 3)
    sizes, rates, lengths = set(), set(), []
    for job, (rel, label) in zip(plan, entries):
        assert rel == job.relpath and int(label) == job.label
        with av.open(os.path.join(info["root"], rel)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            rates.add(int(round(float(stream.average_rate))))
        assert len(frames) == job.num_frames and frames[0].shape == (
            job.height,
            job.width,
            3,
        )
        sizes.add((job.width, job.height))
        lengths.append(job.num_frames)
    assert len(sizes) >= 3 and len(rates) >= 3
    assert min(lengths) < 32 <= max(lengths)  # some shorter than one 8 x 4 clip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_quick_demo_runs_end_to_end(tmp_path):
    """generate -> prepare -> train.py -> eval.py (+ shuffled) -> .pth -> report -> predict."""
    workdir = tmp_path / "demo"
    # One CPU device, as a user runs it (the suite may force several for sharding tests).
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "squeezetime_jax.demo",
            "--quick",
            "--workdir",
            str(workdir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in (
        "[1/8] Generating videos",
        "[3/8] Training",
        "[5/8] Evaluating with shuffled",
        "[7/8] Exporting for mobile",
        "[8/8] Writing the report",
    ):
        assert stage in result.stdout
    summary = json.loads((workdir / "report" / "summary.json").read_text())
    files = summary["files"]
    for key in ("training_curves", "confusion_matrix"):
        with open(files[key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    test_metrics = json.loads(open(files["metrics_test"]).read())
    shuffled_metrics = json.loads(open(files["metrics_shuffled"]).read())
    assert (
        test_metrics["protocol"]["num_clips"] == 10
        and test_metrics["protocol"]["num_crops"] == 3
    )
    assert test_metrics["num_videos_evaluated"] == 8
    assert shuffled_metrics["frame_order"] == "shuffled"
    assert shuffled_metrics["num_views"] == test_metrics["num_views"] == 8 * 30
    assert summary["test_10x3"]["top1"] == test_metrics["top1"]
    assert summary["predict_command"] in result.stdout
    with (
        np.load(workdir / "eval" / "test_10x3" / "predictions.npz") as ordered,
        np.load(workdir / "eval" / "test_10x3_shuffled" / "predictions.npz") as shuffled,
    ):
        # Same videos, same views; only the frame order differs, so the logits do too.
        np.testing.assert_array_equal(ordered["labels"], shuffled["labels"])
        assert not np.allclose(ordered["view_logits"], shuffled["view_logits"])
    # The printed predict command classifies the example video with the converted .pth.
    python, rest = summary["predict_command"].split(" -m ", 1)
    predicted = subprocess.run(
        [sys.executable, "-m"] + rest.split(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert summary["example_video"]["path"] in predicted.stdout
    assert any(name in predicted.stdout for name in scenes.CLASSES)


def test_demo_resumes_only_its_own_training(tmp_path):
    paths = run.DemoPaths(str(tmp_path / "demo"))
    assert not run.check_training_dir(paths, quick=True)
    os.makedirs(paths.train)
    with open(os.path.join(paths.train, "checkpoint"), "w") as f:
        f.write("from an older run")
    with pytest.raises(run.StageError, match=re.escape(paths.train) + ".*not recorded"):
        run.check_training_dir(paths, quick=True)
    with open(os.path.join(paths.train, run.RUN_RECORD), "w") as f:
        json.dump(run._training_settings(True, {"seed": 3}), f)
    assert run.check_training_dir(paths, quick=True, overrides={"seed": 3})
    with pytest.raises(run.StageError, match="configs/demo.py:quick=true"):
        run.check_training_dir(paths, quick=False, overrides={"seed": 3})
    with pytest.raises(run.StageError, match="Remove"):
        run.check_training_dir(paths, quick=True)


def test_training_videos_come_with_their_time_reversed_twin():
    plan = generate.plan_split("train", 4, seed=5)
    assert [job.label for job in plan] == [0, 1, 0, 1]
    for first, twin in (plan[0:2], plan[2:4]):
        assert twin.reversed and not first.reversed and twin.seed == first.seed
        np.testing.assert_array_equal(
            generate.job_frames(twin), generate.job_frames(first)[::-1]
        )
    assert not any(job.reversed for job in generate.plan_split("test", 4, seed=5))


def test_training_progress_follows_the_metrics_file(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    progress = run.TrainingProgress(str(metrics), total_steps=10)
    progress("trainer output before any metrics")  # no file yet: nothing happens
    assert progress.bar.n == 0
    with open(metrics, "w") as f:
        f.write('{"step": 2, "loss": 1.5, "accuracy": 0.25}\n{"step": 4, "lo')
    progress("a line")
    assert progress.bar.n == 2  # the half-written record waits for its newline
    with open(metrics, "a") as f:
        f.write('ss": 1.0, "accuracy": 0.5}\n{"step": 4, "val/top1": 0.75}\n')
    progress.close()
    assert progress.bar.n == 4
    shown = capsys.readouterr()
    assert "step 4 validation: top1 0.7500" in shown.out + shown.err
