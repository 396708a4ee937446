"""Writes the temporal-order demo dataset: real H.264 mp4 files, mmaction2 lists, classes.

    python -m squeezetime_jax.demo.generate --out DIR [--train 800 --val 100 --test 200]

DIR/videos/<split>/<class>/<split>_NNNNN.mp4, DIR/{train,val,test}_list.txt (lines
"<split>/<class>/<file> <label>", relative to DIR/videos) and DIR/classes.txt. Sizes
and frame rates vary per video, and about one video in eight is shorter than a
32-frame (8 frames x interval 4) clip, so the pipeline's looping is exercised.
Every video is a pure function of (seed, split, index).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from typing import Sequence

import numpy as np
import tqdm

from squeezetime_jax import cli
from squeezetime_jax.data import lists as video_lists
from squeezetime_jax.data.video_encode import encode_video
from squeezetime_jax.demo import scenes

SPLITS = ("train", "val", "test")
SIZES = (
    (96, 72),
    (80, 60),
    (64, 64),
    (112, 84),
    (72, 56),
)  # (width, height), even for 4:2:0
FRAME_RATES = (12, 15, 24, 25, 30)
SHORT_FRACTION = 0.125
_SPLIT_SALT = {"train": 0, "val": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class VideoJob:
    split: str
    index: int
    label: int
    width: int
    height: int
    fps: int
    num_frames: int
    seed: int
    reversed: bool = False  # the scene of `seed` played backwards (the other class)

    @property
    def relpath(self) -> str:
        return (
            f"{self.split}/{scenes.CLASSES[self.label]}/{self.split}_{self.index:05d}.mp4"
        )


def plan_split(split: str, count: int, seed: int) -> list[VideoJob]:
    """Balanced labels (alternating) and per-video sizes, rates, lengths and seeds.

    Training videos come in pairs: a scene, then the same scene played backwards with
    the other label. Every training frame set then appears once with each label, so
    nothing static (background, colours, shapes) identifies a video's class: the network
    cannot fit the labels by memorizing backgrounds and has to learn the motion.
    Validation and test videos are all independent scenes.
    """
    if split not in _SPLIT_SALT:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    rng = np.random.default_rng([seed, _SPLIT_SALT[split]])
    jobs = []
    for i in range(count):
        label = i % len(scenes.CLASSES)
        if split == "train" and i % 2:
            jobs.append(dataclasses.replace(jobs[-1], index=i, label=label, reversed=True))
            continue
        width, height = SIZES[rng.integers(len(SIZES))]
        short = rng.random() < SHORT_FRACTION
        num_frames = int(rng.integers(16, 32) if short else rng.integers(36, 61))
        jobs.append(
            VideoJob(
                split,
                i,
                label,
                int(width),
                int(height),
                int(FRAME_RATES[rng.integers(len(FRAME_RATES))]),
                num_frames,
                int(rng.integers(2**62)),
            )
        )
    return jobs


def encode_mp4(path: str, frames: np.ndarray, fps: int) -> None:
    """H.264 (yuv420p) mp4 of uint8 (T, H, W, 3) frames at `fps`."""
    encode_video(
        path,
        frames,
        fps=fps,
        options={"crf": "20", "preset": "veryfast"},
        threads=1,  # parallelism comes from worker processes
    )


def job_frames(job: VideoJob) -> np.ndarray:
    """The frames of a job's video, uint8 (T, H, W, 3)."""
    if not job.reversed:
        return scenes.scene_frames(
            scenes.make_scene(job.seed, job.label, job.width, job.height, job.num_frames)
        )
    # The twin: the other class's scene from the same seed, frames in reverse order.
    other = 1 - job.label
    scene = scenes.make_scene(job.seed, other, job.width, job.height, job.num_frames)
    return scenes.scene_frames(scene)[::-1]


def write_video(job: VideoJob, root: str) -> str:
    path = os.path.join(root, job.relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    encode_mp4(path, job_frames(job), job.fps)
    return job.relpath


def _write(args) -> str:
    return write_video(*args)


def generate_dataset(
    out_dir: str,
    counts: dict[str, int],
    *,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Writes the videos, one list per split and classes.txt under `out_dir`.

    Returns dict(root, lists {split: path}, classes path, counts).
    """
    unknown = set(counts) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
    root = os.path.join(out_dir, "videos")
    os.makedirs(root, exist_ok=True)
    plans = {split: plan_split(split, n, seed) for split, n in counts.items() if n > 0}
    jobs = [job for plan in plans.values() for job in plan]
    workers = workers or min(2, os.cpu_count() or 1)
    bar = tqdm.tqdm(total=len(jobs), desc="generate", unit="video", disable=not progress)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write, [(j, root) for j in jobs], chunksize=8):
                bar.update(1)
    else:
        for job in jobs:
            write_video(job, root)
            bar.update(1)
    bar.close()
    lists = {}
    for split, plan in plans.items():
        lists[split] = video_lists.write_list(
            os.path.join(out_dir, f"{split}_list.txt"),
            [(job.relpath, job.label) for job in plan],
        )
    classes = video_lists.write_class_names(
        os.path.join(out_dir, "classes.txt"), scenes.CLASSES
    )
    info = {
        "root": root,
        "lists": lists,
        "classes": classes,
        "counts": {s: len(p) for s, p in plans.items()},
        "seed": seed,
    }
    with open(os.path.join(out_dir, "generated.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return info


FLAGS = cli.Flags("python -m squeezetime_jax.demo.generate", __doc__)
OUT = FLAGS.string("out", None, "Output directory.", required=True)
TRAIN = FLAGS.integer("train", 800, "Training videos.")
VAL = FLAGS.integer("val", 100, "Validation videos.")
TEST = FLAGS.integer("test", 200, "Test videos.")
SEED = FLAGS.integer("seed", 0, "Seed of the scenes.")
WORKERS = FLAGS.integer("workers", None, "Encoding processes (default: up to 2).")


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    if positional := FLAGS.parse(argv):
        raise cli.UsageError(f"unexpected arguments: {positional}")
    info = generate_dataset(
        OUT.value,
        {"train": TRAIN.value, "val": VAL.value, "test": TEST.value},
        seed=SEED.value,
        workers=WORKERS.value,
    )
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
