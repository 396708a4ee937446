"""Random uint8 clips as a Grain dataset, for benchmarks and trainer tests.

Same batch layout and checkpointable iterator as the video pipeline, without any
decoding, so a step's throughput can be measured apart from the input's. Select
it with `config.data.dataset = "random"`.

Unlike the video pipeline (which shards videos per process before shuffling),
process p here takes slice p of each global batch of one global order, so a run
on several processes sees exactly the batches of a one-process run: what the
multi-process agreement tests need.
"""

from __future__ import annotations

import grain
import numpy as np

RANDOM_DATASET = "random"


class _GlobalBatchSlice(grain.transforms.Map):
    """Local position -> this process's element of the global order."""

    def __init__(
        self,
        order: grain.MapDataset,
        per_process: int,
        process_index: int,
        process_count: int,
    ):
        self._order = order
        self._per_process = per_process
        self._offset = process_index * per_process
        self._global = per_process * process_count

    def map(self, position):
        batch, row = divmod(int(position), self._per_process)
        return self._order[batch * self._global + self._offset + row]


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
) -> grain.IterDataset:
    """An endless, reshuffled-per-epoch stream of random clips."""
    order = grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)
    positions = grain.MapDataset.range(len(order) // process_count)
    ds = positions.map(
        _GlobalBatchSlice(order, batch_size_per_process, process_index, process_count)
    )
    ds = ds.map(_RandomClip((num_frames, crop_size, crop_size, 3), num_classes, seed))
    return ds.batch(batch_size_per_process, drop_remainder=True).to_iter_dataset()
