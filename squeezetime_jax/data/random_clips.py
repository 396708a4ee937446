"""Random uint8 clips as a Grain dataset, for benchmarks and trainer tests.

Same batch layout and checkpointable iterator as the video pipeline, without any
decoding, so a step's throughput can be measured apart from the input's. Select
it with `config.data.dataset = "random"`.

Like the video pipeline, process p takes slice p of each global batch of one
global order (data/global_batches.py), so a run on several processes sees exactly
the batches of a one-process run, and a restart resumes at `start_batch`.
"""

from __future__ import annotations

import grain
import numpy as np

from squeezetime_jax.data import global_batches

RANDOM_DATASET = "random"


class _Record(grain.transforms.Map):
    """Global position -> the record index the global order puts there."""

    def __init__(self, order: grain.MapDataset):
        self._order = order

    def map(self, position):
        return self._order[int(position)]


class _RandomClip(grain.transforms.Map):
    def __init__(self, shape: tuple[int, ...], num_classes: int, seed: int):
        self._shape, self._num_classes, self._seed = shape, num_classes, seed

    def map(self, index):
        rng = np.random.default_rng([self._seed, int(index)])
        return {
            "video": rng.integers(0, 256, self._shape, dtype=np.uint8),
            "label": np.int32(int(index) % self._num_classes),
        }


def make_random_train_dataset(
    *,
    num_examples: int,
    num_classes: int,
    num_frames: int,
    crop_size: int,
    batch_size_per_process: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_batch: int = 0,
) -> grain.IterDataset:
    """An endless, reshuffled-per-epoch stream of random clips, from global batch `start_batch`."""
    order = grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)
    ds = global_batches.process_positions(
        per_process=batch_size_per_process,
        process_index=process_index,
        process_count=process_count,
        start_batch=start_batch,
    )
    ds = ds.map(_Record(order))
    ds = ds.map(_RandomClip((num_frames, crop_size, crop_size, 3), num_classes, seed))
    return ds.batch(batch_size_per_process, drop_remainder=True).to_iter_dataset()
