"""Real clips for int8 calibration and for the export's accuracy check.

A source is either a prepared dataset (the --out directory of
`python -m squeezetime_jax.data.prepare`, one split of it) or a text file listing
videos, one per line as `PATH [LABEL]` (the lists prepare reads; relative paths are
taken from the list file's directory, or from --root). Each video gives its centre
clip(s), sampled and cropped as the evaluation pipeline does: `num_frames` frames
`frame_interval` apart, short side scaled to `short_side`, centre crop `size`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from squeezetime_jax import files
from squeezetime_jax.data import clips as clip_lib
from squeezetime_jax.data import pipeline, tfds_builder
from squeezetime_jax.data.config import default_data_config


@dataclasses.dataclass
class LabeledClips:
    """uint8 clips (N, T, S, S, 3) with int labels (-1: none) and their video ids."""

    clips: np.ndarray
    labels: np.ndarray
    video_ids: list[str]
    source: str
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def labelled(self) -> bool:
        return len(self.labels) > 0 and bool(np.all(self.labels >= 0))


def _data_config(num_frames: int, frame_interval: int, size: int, short_side: int):
    cfg = default_data_config()
    cfg.num_frames = int(num_frames)
    cfg.frame_interval = int(frame_interval)
    cfg.num_workers = 0
    for name in ("val", "test"):
        cfg[name].short_side = int(short_side)
        cfg[name].crop_size = int(size)
    return cfg


def prepared_dataset_name(directory: str) -> str | None:
    """`squeezetime_video/CONFIG` when `directory` holds exactly one prepared config."""
    root = files.join(directory, tfds_builder.NAME)
    configs = [
        c
        for c in files.listdir(root)
        if not c.startswith(".") and files.isdir(files.join(root, c))
    ]
    if len(configs) == 1:
        return f"{tfds_builder.NAME}/{configs[0]}"
    if len(configs) > 1:
        raise ValueError(
            f"{directory} holds several prepared datasets ({', '.join(configs)}): "
            f"give DIR:CONFIG, e.g. {directory}:{configs[0]}"
        )
    return None


def _pick(n: int, count: int | None, seed: int) -> np.ndarray:
    """`count` indices of n, a seeded permutation's prefix (all of them when None)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order if count is None else order[: int(count)])


def read_clips(
    source: str,
    *,
    num_frames: int,
    size: int,
    frame_interval: int = 4,
    short_side: int | None = None,
    count: int | None = None,
    split: str = "train",
    clips_per_video: int = 1,
    root: str | None = None,
    seed: int = 0,
) -> LabeledClips:
    """Clips of up to `count` videos of `source` (all when None), a seeded choice.

    `source`: a prepared dataset directory (optionally `DIR:CONFIG`; `split` names the
    split) or a video list file. Videos that do not decode are skipped; an error names
    the source when none is left.
    """
    short_side = int(size if short_side is None else short_side)
    cfg = _data_config(num_frames, frame_interval, size, short_side)
    protocol = pipeline.EvalProtocol(
        num_clips=int(clips_per_video),
        num_crops=1,
        short_side=short_side,
        crop_size=int(size),
        split=split,
    )
    directory, _, config_name = source.rpartition(":") if ":" in source else ("", "", "")
    if directory and not files.is_url(source) and files.isdir(directory):
        dataset = f"{tfds_builder.NAME}/{config_name}"
    else:
        directory = source
        dataset = prepared_dataset_name(source) if files.isdir(source) else None
    if dataset is not None:
        return _from_prepared(directory, dataset, cfg, protocol, count, seed)
    if files.isfile(source):
        return _from_list(source, cfg, protocol, count, root, seed)
    raise FileNotFoundError(
        f"{source}: neither a prepared dataset directory (python -m "
        "squeezetime_jax.data.prepare --out) nor a video list file"
    )


def _collect(views: list[tuple[np.ndarray, int, str]], source: str, names=None):
    if not views:
        raise ValueError(f"{source}: no decodable video among those chosen")
    return LabeledClips(
        clips=np.concatenate([v for v, _, _ in views]),
        labels=np.concatenate([np.full(len(v), label, np.int64) for v, label, _ in views]),
        video_ids=[vid for v, _, vid in views for _ in range(len(v))],
        source=source,
        class_names=names,
    )


def _from_prepared(directory, dataset, cfg, protocol, count, seed) -> LabeledClips:
    cfg.dataset, cfg.data_dir = dataset, files.absolute(directory)
    info = pipeline.dataset_info(cfg.data_dir, dataset)
    if protocol.split not in info.num_examples:
        raise ValueError(
            f"{directory}: dataset {dataset} has no split {protocol.split!r} "
            f"(splits: {', '.join(sorted(info.num_examples))})"
        )
    records = pipeline.open_source(cfg, protocol.split)
    views_of = clip_lib.EvalViews(cfg, protocol)
    views = []
    for i in _pick(len(records), count, seed):
        record = records[int(i)]
        out = views_of.map((int(i), record))
        if out["decode_failed"].any():
            continue
        vid = record["video_id"]
        vid = vid.decode() if isinstance(vid, bytes) else str(vid)
        views.append((out["video"], int(record["label"]), vid))
    return _collect(views, f"{directory} ({dataset}, {protocol.split})", info.class_names)


def _from_list(path, cfg, protocol, count, root, seed) -> LabeledClips:
    from squeezetime_jax.data import single_video, video_decode

    entries = []
    for number, line in enumerate(files.read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        label = -1
        if len(parts) > 1:
            try:
                label = int(parts[-1])
            except ValueError:
                raise ValueError(
                    f"{path}, line {number}: expected 'PATH [LABEL]', got {line!r}"
                ) from None
            video = line.rsplit(maxsplit=1)[0]
        else:
            video = parts[0]
        if not os.path.isabs(video):
            video = os.path.join(root or os.path.dirname(files.absolute(path)), video)
        entries.append((video, label))
    if not entries:
        raise ValueError(f"{path}: the video list is empty")
    views = []
    for i in _pick(len(entries), count, seed):
        video, label = entries[int(i)]
        try:
            out = single_video.video_views(
                single_video.read_video_bytes(video), cfg, protocol
            )
        except video_decode.VideoDecodeError:
            continue
        views.append((out["video"], label, video))
    return _collect(views, path)
