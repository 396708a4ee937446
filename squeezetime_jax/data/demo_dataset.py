"""A tiny prepared dataset of real synthetic videos, for tests, demos and smoke runs."""

from __future__ import annotations

import os

from squeezetime_jax.data import prepare
from squeezetime_jax.data import synthetic_videos as sv
from squeezetime_jax.data.config import default_data_config

DATASET = "squeezetime_video/custom"
CLASSES = ("walk", "run", "jump")


def write_demo_dataset(directory: str | os.PathLike):
    """Writes the synthetic suite, a train list (all files, bad ones included) and a val
    list (three good files), and prepares them under DIRECTORY/prepared.

    Returns:
      (prepared data_dir, list of SuiteVideo in train-list order, prepare summary).
    """
    directory = os.fspath(directory)
    root = os.path.join(directory, "videos")
    videos = sv.write_suite(root)
    train_list = sv.write_list(os.path.join(directory, "train_list.txt"), videos)
    val_list = sv.write_list(os.path.join(directory, "val_list.txt"), videos[:3])
    classes = os.path.join(directory, "classes.txt")
    with open(classes, "w", encoding="utf-8") as f:
        f.write("\n".join(CLASSES) + "\n")
    out = os.path.join(directory, "prepared")
    summary = prepare.prepare_dataset(
        [train_list, val_list], root, out, classes=classes, progress=False
    )
    return out, videos, summary


def small_data_config(data_dir: str):
    """The recipe on the demo dataset, at frame sizes that keep runs fast (64x48 videos)."""
    cfg = default_data_config()
    cfg.dataset = DATASET
    cfg.data_dir = data_dir
    cfg.num_workers = 0
    cfg.train.short_side = 48
    cfg.train.crop_size = 32
    for protocol in (cfg.val, cfg.test):
        protocol.short_side = 48
        protocol.crop_size = 48
    return cfg
