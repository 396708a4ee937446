"""Random uint8 clips as a Grain dataset, for benchmarks and trainer tests.

Same batch layout and checkpointable iterator as the video pipeline, without any
decoding, so a step's throughput can be measured apart from the input's. Select
it with `config.data.dataset = "random"`.
"""

from __future__ import annotations

import grain
import numpy as np

RANDOM_DATASET = "random"


class _RandomClip(grain.transforms.Map):
    def __init__(self, shape: tuple[int, ...], num_classes: int, seed: int):
        self._shape, self._num_classes, self._seed = shape, num_classes, seed

    def map(self, index):
        rng = np.random.default_rng([self._seed, int(index)])
        return {"video": rng.integers(0, 256, self._shape, dtype=np.uint8),
                "label": np.int32(int(index) % self._num_classes)}


def make_random_train_dataset(*, num_examples: int, num_classes: int, num_frames: int,
                              crop_size: int, batch_size_per_process: int, seed: int,
                              process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """An endless shuffled stream of random clips, sharded by process."""
    ds = grain.MapDataset.range(num_examples)[process_index::process_count]
    ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds.map(_RandomClip((num_frames, crop_size, crop_size, 3), num_classes, seed))
    return ds.batch(batch_size_per_process, drop_remainder=True).to_iter_dataset()
