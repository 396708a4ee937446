"""Shared setup for the data tests: a prepared dataset of real synthetic videos."""

import os

from squeezetime_jax.data import default_data_config, prepare
from squeezetime_jax.data import synthetic_videos as sv

DATASET = "squeezetime_video/custom"
CLASSES = ("walk", "run", "jump")


def prepare_suite(tmp_dir):
  """Writes the suite, a train list (all files) and a val list; prepares them."""
  root = os.path.join(tmp_dir, "videos")
  videos = sv.write_suite(root)
  train_list = sv.write_list(os.path.join(tmp_dir, "train_list.txt"), videos)
  val_list = sv.write_list(os.path.join(tmp_dir, "val_list.txt"), videos[:3])
  classes = os.path.join(tmp_dir, "classes.txt")
  with open(classes, "w") as f:
    f.write("\n".join(CLASSES) + "\n")
  out = os.path.join(tmp_dir, "prepared")
  summary = prepare.prepare_dataset(
      [train_list, val_list], root, out, classes=classes, progress=False
  )
  return out, videos, summary


def small_config(out_dir):
  """The recipe config on the prepared suite, at sizes that keep tests fast."""
  cfg = default_data_config()
  cfg.dataset = DATASET
  cfg.data_dir = out_dir
  cfg.num_workers = 0
  cfg.train.short_side = 48
  cfg.train.crop_size = 32
  cfg.val.short_side = 48
  cfg.val.crop_size = 48
  cfg.test.short_side = 48
  cfg.test.crop_size = 48
  return cfg
