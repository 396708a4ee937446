"""Grain datasets for training and evaluation over prepared ArrayRecord video data.

Training: one global order of all records (a new permutation each epoch, endless),
cut into global batches; each process decodes and augments its rows of each global
batch (data/global_batches.py) with a generator keyed on (seed, global position),
then batches and prefetches with worker processes. A global batch is therefore the
same whatever the number of processes or workers, and a run resumes at any step on
any layout by starting at global batch `start_batch` (= the step).

Evaluation: view-indexed. Every (video, clip, crop) is one element; processes take
interleaved videos, and each pads its views with masked blanks to the same number of
full batches, so every view is seen exactly once across processes. With workers and
batch slots, a batch holds whole videos (as many as fit) followed by padding, so
that a worker decodes each video once and writes its views straight into the batch;
otherwise views run on across batches.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from typing import Any, Mapping

import grain
import numpy as np
import tensorflow_datasets as tfds

from squeezetime_jax import files
from squeezetime_jax.data import (
    batch_slots,
    clips,
    global_batches,
    tfds_builder,
    worker_lifetime,
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    class_names: list[str]
    num_examples: dict[str, int]  # per split


def _builder_dir(data_dir: str | None, name: str) -> str:
    builder = tfds.builder(name, data_dir=data_dir or None)
    return os.fspath(builder.data_dir)


def dataset_info(data_dir: str | None, name: str) -> DatasetInfo:
    """Classes and split sizes of a prepared dataset (no video is read)."""
    info = tfds.builder(name, data_dir=data_dir or None).info
    names = list(info.features["label"].names)
    return DatasetInfo(
        num_classes=len(names),
        class_names=names,
        num_examples={k: int(v.num_examples) for k, v in info.splits.items()},
    )


def open_source(data_config, split: str):
    """Random-access source of records dict(video bytes, label, video_id, num_frames...)."""
    try:
        return tfds.data_source(
            data_config.dataset, split=split, data_dir=data_config.data_dir or None
        )
    except Exception as e:  # tfds raises assorted types for missing data
        raise FileNotFoundError(
            f"cannot open dataset {data_config.dataset!r} split {split!r} in data_dir "
            f"{data_config.data_dir!r}; prepare it with python -m "
            f"squeezetime_jax.data.prepare: {e}"
        ) from e


def _process_shard(process_index, process_count) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # only when the caller did not say; the workers never need it

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _ensure_absl_flags_parsed() -> None:
    # Grain's worker processes read absl flags; outside an absl app they are unparsed.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def prefetch_with_workers(ds: grain.IterDataset, data_config) -> grain.IterDataset:
    """`ds` made by data.num_workers processes (Grain's mp_prefetch); 0: in this one."""
    if data_config.num_workers <= 0:
        return ds
    _ensure_absl_flags_parsed()
    return ds.mp_prefetch(
        grain.MultiprocessingOptions(
            num_workers=data_config.num_workers,
            per_worker_buffer_size=data_config.worker_buffer_size,
        ),
        worker_init_fn=worker_lifetime.bind_to_parent,  # no orphans after a kill -9
    )


def slots_enabled(data_config) -> bool:
    """Whether workers hand batches over through batch slots: with workers and
    data.batch_slots on (data/batch_slots.py)."""
    return data_config.num_workers > 0 and data_config.get("batch_slots", True)


def read_options(data_config) -> grain.ReadOptions:
    """Read-ahead inside each worker: data.read_threads, data.worker_buffer_size."""
    return grain.ReadOptions(
        num_threads=data_config.read_threads,
        prefetch_buffer_size=max(1, data_config.worker_buffer_size),
    )


def _seeds(seed: int) -> tuple[int, int]:
    shuffle_seed, map_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(shuffle_seed), int(map_seed)


def train_order(num_records: int, *, seed: int) -> grain.MapDataset:
    """The endless global order of record indices: every record once per epoch."""
    ds = grain.MapDataset.range(num_records)
    return ds.shuffle(seed=_seeds(seed)[0]).repeat(None)  # reshuffled each epoch


class _TrainExample(grain.transforms.Map):
    """Global position -> the augmented clip(s) of the record the order puts there.

    The generator is keyed on (seed, global position), not on the position in this
    process's stream, so the clip does not depend on the number of processes.
    """

    def __init__(self, order: grain.MapDataset, source, clip: clips.TrainClip, seed: int):
        self._order, self._source, self._clip, self._seed = order, source, clip, seed

    def map(self, position):
        position = int(position)
        index = int(self._order[position])
        rng = np.random.default_rng([self._seed, position])
        return self._clip.random_map((index, self._source[index]), rng)


def make_train_dataset(
    data_config,
    *,
    batch_size_per_process: int,
    seed: int,
    split: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    start_batch: int = 0,
) -> grain.IterDataset:
    """Infinite dataset of dict(video uint8 (B,T,S,S,3), label int32 (B,), decode_failed bool (B,)).

    This process's rows of global batches `start_batch`, `start_batch` + 1, ...: a
    resumed run passes its step. With train.augment_on_device, batches also hold
    device_augment.PARAM_KEYS and the step must call
    device_augment.augment_and_normalize(batch).
    """
    split = split or data_config.train.split
    pi, pc = _process_shard(process_index, process_count)
    source = open_source(data_config, split)
    if len(source) == 0:
        raise ValueError(f"split {split!r} of {data_config.dataset!r} has no videos")
    repeats = int(data_config.train.get("repeated_augmentation", 1))
    if repeats < 1 or batch_size_per_process % repeats:
        raise ValueError(
            f"train.repeated_augmentation {repeats} must be >= 1 and divide "
            f"batch_size_per_process {batch_size_per_process}"
        )
    # With repeated augmentation a global position is one window, giving R clips.
    windows = batch_size_per_process // repeats
    clip = clips.TrainClip(data_config, source, seed=seed)
    order = train_order(len(source), seed=seed)
    example = _TrainExample(order, source, clip, _seeds(seed)[1])
    if data_config.train.get("augment_on_device", False):
        # The clips arrive unaugmented: a step that only normalizes trains without
        # flip, jitter or erasing.
        logging.info(
            "train.augment_on_device: the train step must call "
            "device_augment.augment_and_normalize(batch)"
        )
    position = global_batches.GlobalPosition(windows, pi, pc)
    if slots_enabled(data_config):
        examples = _BatchExamples(example, position, windows)
        first = next(iter(examples(start_batch)))  # the layout, from a real clip
        if repeats > 1:
            first = {key: np.asarray(value)[0] for key, value in first.items()}
        return slot_batches(
            data_config,
            examples,
            layout=batch_slots.SlotLayout.of_example(first, batch_size_per_process),
            start_batch=start_batch,
            stop=global_batches.end_position(pc) // windows,
            stacked=repeats > 1,
        )
    ds = global_batches.process_positions(
        per_process=windows, process_index=pi, process_count=pc, start_batch=start_batch
    )
    ds = ds.map(example).batch(windows, drop_remainder=True)
    if repeats > 1:
        ds = ds.map(_merge_repeats)
    ds = ds.to_iter_dataset(read_options(data_config))
    return prefetch_with_workers(ds, data_config)


class _BatchExamples:
    """Global batch number -> this process's examples of it, in row order."""

    def __init__(self, example: _TrainExample, position, windows: int):
        self._example, self._position, self._windows = example, position, windows

    def __call__(self, batch: int):
        for row in range(self._windows):
            yield self._example.map(self._position.map(batch * self._windows + row))


def slot_batches(
    data_config,
    examples,
    *,
    layout: batch_slots.SlotLayout,
    start_batch: int,
    stop: int,
    stacked: bool = False,
) -> grain.IterDataset:
    """Batches start_batch..stop-1, written by the workers into reusable shared-memory
    slots of `layout` (data/batch_slots.py). `examples(batch)` yields a batch's clips in
    row order (`stacked`: dicts of several clips along a leading axis).
    """
    options = read_options(data_config)
    # Batches in flight: per worker its output buffer, its read-ahead and one being
    # written (and one more of margin); plus a few the consumer still holds.
    buffered = max(1, data_config.worker_buffer_size) + options.prefetch_buffer_size + 2
    return batch_slots.SlotBatchesDataset(
        grain.MapDataset.range(start_batch, stop),
        examples,
        layout=layout,
        num_slots=data_config.num_workers * buffered + batch_slots.HELD_BATCHES,
        prefetch=functools.partial(prefetch_with_workers, data_config=data_config),
        read_options=options,
        stacked=stacked,
    )


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    num_clips: int
    num_crops: int
    short_side: int
    crop_size: int
    split: str


def eval_protocol(data_config, protocol: str | Mapping[str, Any]) -> EvalProtocol:
    """'val', 'test' (from the config) or a mapping overriding any of their fields."""
    if isinstance(protocol, str):
        if protocol not in ("val", "test"):
            raise ValueError(
                f"protocol must be 'val', 'test' or a mapping, got {protocol!r}"
            )
        base, overrides = protocol, {}
    else:
        overrides = dict(protocol)
        base = overrides.pop("base", "test")
    fields = data_config[base].to_dict()
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ValueError(
            f"unknown eval protocol fields {sorted(unknown)}; known {sorted(fields)}"
        )
    fields.update(overrides)
    p = EvalProtocol(**{f.name: fields[f.name] for f in dataclasses.fields(EvalProtocol)})
    if p.num_crops not in (1, 3):
        raise ValueError(
            f"num_crops must be 1 (centre) or 3 (three-crop), got {p.num_crops}"
        )
    if p.crop_size > p.short_side:
        raise ValueError(f"crop_size {p.crop_size} larger than short_side {p.short_side}")
    return p


def _load_index(data_config, split: str, source) -> dict:
    path = files.join(
        _builder_dir(data_config.data_dir, data_config.dataset),
        tfds_builder.index_file(split),
    )
    if files.exists(path):
        index = files.read_json(path)
        if len(index["video_id"]) == len(source):
            return index
    # No index written at preparation time: read the records once.
    ids, labels = [], []
    for i in range(len(source)):
        r = source[i]
        vid = r["video_id"]
        ids.append(vid.decode() if isinstance(vid, bytes) else str(vid))
        labels.append(int(r["label"]))
    return {"video_id": ids, "label": labels}


def _merge_repeats(batch: dict) -> dict:
    """(B/R, R, ...) -> (B, ...): a window's R clips stay adjacent in the batch."""
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}


class _LocalVideoViews(grain.transforms.Map):
    """This process's j-th video -> all its views (clips.EvalViews).

    A class so worker processes can pickle it.
    """

    def __init__(self, source, views: clips.EvalViews, process_index, process_count):
        self._source, self._views = source, views
        self._first, self._step = process_index, process_count

    def map(self, local_video):
        index = self._first + int(local_video) * self._step
        return self._views.map((index, self._source[index]))


class _WholeVideoBatch:
    """Local batch number -> its videos' views, then masked blanks up to `rows`."""

    def __init__(self, video_views, *, num_videos, videos_per_batch, views, rows, pad):
        self._video_views, self._num_videos = video_views, num_videos
        self._per_batch, self._views = videos_per_batch, views
        self._rows, self._pad = rows, pad

    def __call__(self, batch: int):
        first = batch * self._per_batch
        videos = range(first, min(first + self._per_batch, self._num_videos))
        for video in videos:
            yield self._video_views.map(video)
        missing = self._rows - len(videos) * self._views
        if missing:
            yield {
                key: np.broadcast_to(value, (missing,) + np.shape(value))
                for key, value in self._pad.items()
            }


def eval_uses_slots(data_config, batch_size: int, views: int) -> bool:
    """Whether evaluation batches go through batch slots: when batches do
    (`slots_enabled`) and a process's batch has room for one video's views."""
    return slots_enabled(data_config) and batch_size >= views


def eval_batches(
    data_config,
    video_views: grain.transforms.Map,
    *,
    num_videos: int,
    max_videos: int,
    views: int,
    batch_size: int,
    pad: dict,
) -> tuple[grain.IterDataset, int]:
    """A process's evaluation batches and their number (the same on every process).

    `video_views` maps this process's video j (of `num_videos`; the busiest process
    has `max_videos`) to its `views` views, stacked; through slots
    (`eval_uses_slots`) a value may also be a list of the views' arrays. `pad` is one
    masked blank view.
    """
    if eval_uses_slots(data_config, batch_size, views):
        videos_per_batch = batch_size // views  # whole videos: each decoded once
        num_batches = math.ceil(max_videos / videos_per_batch)
        examples = _WholeVideoBatch(
            video_views,
            num_videos=num_videos,
            videos_per_batch=videos_per_batch,
            views=views,
            rows=batch_size,
            pad=pad,
        )
        ds = slot_batches(
            data_config,
            examples,
            layout=batch_slots.SlotLayout.of_example(pad, batch_size),
            start_batch=0,
            stop=num_batches,
            stacked=True,
        )
        return ds, num_batches
    if slots_enabled(data_config):
        logging.warning(
            "evaluation batches of %d views per process hold less than one video's %d "
            "views: they take Grain's hand-off, several times slower per view than "
            "batch slots; an eval batch size of at least %d views per process avoids it",
            batch_size,
            views,
            views,
        )
    num_batches = math.ceil(max_videos * views / batch_size)
    ds = grain.MapDataset.range(num_videos).map(video_views)
    ds = prefetch_with_workers(ds.to_iter_dataset(read_options(data_config)), data_config)
    ds = UnbatchPadIterDataset(ds, total=num_batches * batch_size, pad=pad)
    return ds.batch(batch_size, drop_remainder=True), num_batches


class EvalDataset:
    """A finite, view-indexed evaluation dataset; iterate it for batches.

    Batches: dict(video uint8 (B,T,C,C,3), label, video_index (-1 for padding),
    clip_index, crop_index (int32 (B,)), mask (False for padding), decode_failed).
    A video's views are `views_per_video` = num_clips * num_crops elements.
    """

    def __init__(
        self,
        dataset,
        *,
        protocol,
        video_ids,
        labels,
        num_batches,
        batch_size,
        process_index,
        process_count,
    ):
        self.dataset: grain.IterDataset = dataset
        self.protocol: EvalProtocol = protocol
        self.video_ids: list[str] = video_ids
        self.labels: np.ndarray = np.asarray(labels, np.int32)
        self.num_videos = len(video_ids)
        self.views_per_video = protocol.num_clips * protocol.num_crops
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.process_index, self.process_count = process_index, process_count

    def __iter__(self):
        return iter(self.dataset)

    def __len__(self) -> int:
        return self.num_batches


def make_eval_dataset(
    data_config,
    *,
    batch_size_per_process: int,
    protocol: str | Mapping[str, Any] = "val",
    split: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> EvalDataset:
    """View-indexed evaluation dataset, identical batch count on every process."""
    p = eval_protocol(data_config, protocol)
    split = split or p.split
    pi, pc = _process_shard(process_index, process_count)
    source = open_source(data_config, split)
    index = _load_index(data_config, split, source)
    n, views = len(source), p.num_clips * p.num_crops
    pad = {
        "video": np.zeros((data_config.num_frames, p.crop_size, p.crop_size, 3), np.uint8),
        "label": np.int32(0),
        "video_index": np.int32(-1),
        "clip_index": np.int32(0),
        "crop_index": np.int32(0),
        "mask": np.bool_(False),
        "decode_failed": np.bool_(False),
    }
    # Through slots, a worker writes each view into the batch without stacking them.
    stacked = not eval_uses_slots(data_config, batch_size_per_process, views)
    video_views = clips.EvalViews(data_config, p, stacked=stacked)
    # Processes take videos pi, pi+pc, ...; the busiest has ceil(n/pc) videos.
    ds, num_batches = eval_batches(
        data_config,
        _LocalVideoViews(source, video_views, pi, pc),
        num_videos=len(range(pi, n, pc)),
        max_videos=math.ceil(n / pc),
        views=views,
        batch_size=batch_size_per_process,
        pad=pad,
    )
    return EvalDataset(
        ds,
        protocol=p,
        video_ids=list(index["video_id"]),
        labels=index["label"],
        num_batches=num_batches,
        batch_size=batch_size_per_process,
        process_index=pi,
        process_count=pc,
    )


class UnbatchPadIterDataset(grain.IterDataset):
    """Splits stacked elements along axis 0, then pads with `pad` up to `total` elements."""

    def __init__(self, parent: grain.IterDataset, *, total: int, pad: dict):
        super().__init__(parent)
        self._total, self._pad = total, pad

    def __iter__(self):
        return _UnbatchPadIterator(self._parent.__iter__(), self._total, self._pad)


class _UnbatchPadIterator(grain.DatasetIterator):
    def __init__(self, parent, total: int, pad: dict):
        super().__init__(parent)
        self._total, self._pad = total, pad
        self._group, self._pos, self._emitted = None, 0, 0
        self._group_state = parent.get_state()  # parent state before the current group
        self._exhausted = False

    def __next__(self):
        if self._emitted >= self._total:
            raise StopIteration
        while not self._exhausted and (
            self._group is None or self._pos >= self._group_len()
        ):
            state = self._parent.get_state()
            try:
                self._group = next(self._parent)
                self._group_state, self._pos = state, 0
            except StopIteration:
                self._exhausted, self._group = True, None
        self._emitted += 1
        if self._exhausted:
            return dict(self._pad)
        out = {k: v[self._pos] for k, v in self._group.items()}
        self._pos += 1
        return out

    def _group_len(self) -> int:
        return len(next(iter(self._group.values())))

    def get_state(self) -> dict:
        return {
            "parent": self._group_state,
            "pos": self._pos,
            "emitted": self._emitted,
            "has_group": self._group is not None,
            "exhausted": self._exhausted,
        }

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self._group_state, self._emitted = state["parent"], state["emitted"]
        self._exhausted, self._group, self._pos = state["exhausted"], None, 0
        if state["has_group"]:
            self._group = next(self._parent)
            self._pos = state["pos"]
