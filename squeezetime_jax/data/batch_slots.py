"""Training batches handed from the worker processes through reusable shared-memory slots.

Grain's `mp_prefetch` sends each batch array as a new shared-memory segment: the
worker creates and faults in fresh pages for every batch, and the receiving process
opens, maps and later unlinks a segment per array per batch. At K400 sizes (2.4 MB
per RGB clip) that costs the receiving process about 0.35 ms of CPU per clip, a cap of
a few thousand clips/s per host.

Here the receiving process makes one segment of `num_slots` fixed-size slots before
the workers start. A worker writes every clip of local batch g straight into slot
g mod num_slots and sends back only g. The receiving process turns the slot into NumPy
views (no copy, pages already mapped) that `mesh.global_batch` gives to `device_put`
without a copy where the backend can alias host memory (CPU). A slot is free again
once every view of its batch, and every device buffer aliasing one, is gone
(`weakref.finalize`); the worker of batch g + num_slots waits for that.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import mmap
import os
import sys
import threading
import time
import weakref
from multiprocessing import shared_memory
from typing import Any, Callable, Mapping

import grain
import numpy as np

# Page-aligned arrays: device_put can alias them (XLA CPU needs aligned buffers).
ALIGNMENT = mmap.PAGESIZE
# Training batches the consumer may still hold (the step's input, the next one, and
# device buffers aliasing them while steps run) beyond those in flight.
HELD_BATCHES = 4
# How often the receiving process checks for a worker waiting on a slot.
RECLAIM_SECONDS = 0.01
# A worker waiting this long for a slot says why in the log (and keeps waiting).
WAIT_WARNING_SECONDS = 60.0


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


@dataclasses.dataclass(frozen=True)
class SlotLayout:
    """Where each array of one batch lies in a slot: key -> (offset, shape, dtype)."""

    arrays: tuple[tuple[str, int, tuple[int, ...], str], ...]
    slot_bytes: int

    @classmethod
    def of_example(cls, example: Mapping[str, Any], rows: int) -> "SlotLayout":
        """The layout of a batch of `rows` clips shaped like `example` (one clip's arrays)."""
        arrays, offset = [], 0
        for key in sorted(example):
            value = np.asarray(example[key])
            if value.dtype.hasobject:
                raise TypeError(f"batch key {key!r} holds Python objects, not numbers")
            shape = (rows,) + value.shape
            arrays.append((key, offset, shape, value.dtype.str))
            offset += _aligned(math.prod(shape) * value.dtype.itemsize)
        return cls(tuple(arrays), max(offset, ALIGNMENT))

    @property
    def rows(self) -> int:
        """Clips per batch: the leading dimension of every array."""
        return self.arrays[0][2][0]

    def views(self, slot: np.ndarray) -> dict[str, np.ndarray]:
        """The batch's arrays inside `slot` (a uint8 array of slot_bytes), not copied."""
        return {
            key: slot[offset : offset + math.prod(shape) * np.dtype(dtype).itemsize]
            .view(dtype)
            .reshape(shape)
            for key, offset, shape, dtype in self.arrays
        }


@dataclasses.dataclass(frozen=True)
class SlotsSpec:
    """What a worker needs to attach to the slots (picklable)."""

    name: str
    layout: SlotLayout
    num_slots: int
    first_batch: int

    @property
    def header_bytes(self) -> int:
        return _aligned(2 * 8 * self.num_slots)

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.num_slots * self.layout.slot_bytes

    def slot_offset(self, batch: int) -> int:
        return self.header_bytes + (batch % self.num_slots) * self.layout.slot_bytes

    def header(self, buffer) -> tuple[np.ndarray, np.ndarray]:
        """Per slot: the last batch whose views were all dropped, and the batch a worker
        is waiting to see dropped before it writes (-1: none)."""
        released, wanted = np.ndarray((2, self.num_slots), np.int64, buffer=buffer)
        return released, wanted


class BatchSlots:
    """The receiving process's side: owns the segment, opens batches, frees slots."""

    def __init__(self, layout: SlotLayout, num_slots: int, first_batch: int):
        if num_slots < 2:
            raise ValueError(f"need at least 2 batch slots, got {num_slots}")
        probe = SlotsSpec("", layout, num_slots, first_batch)
        # Registered with multiprocessing's resource tracker: unlinked even after kill -9.
        shm = shared_memory.SharedMemory(create=True, size=probe.total_bytes)
        self.spec = dataclasses.replace(probe, name=shm.name)
        # Views come from a mapping of our own, so `shm` closes now and its __del__
        # never meets exported buffers; the segment lives until unlinked.
        self._memory = _attach(self.spec)
        shm.close()
        self._released, self._wanted = self.spec.header(self._memory)
        self._released[:] = -1
        self._wanted[:] = -1
        stop = threading.Event()
        threading.Thread(
            target=_reclaim,
            args=(self._released, self._wanted, stop),
            name="batch-slot-reclaim",
            daemon=True,
        ).start()
        self._finalize = weakref.finalize(self, _close, shm, stop)

    def open(self, batch: int) -> dict[str, np.ndarray]:
        """Views of batch `batch`'s slot; the slot is freed when all of them are gone."""
        spec = self.spec
        offset = spec.slot_offset(batch)
        base = np.ndarray((spec.layout.slot_bytes,), np.uint8, self._memory, offset)
        # Every view below keeps `base` alive through its .base chain.
        weakref.finalize(base, self._free, batch)
        return spec.layout.views(base)

    def _free(self, batch: int) -> None:
        slot = batch % self.spec.num_slots
        self._released[slot] = max(int(self._released[slot]), batch)

    def close(self) -> None:
        """Unlinks the segment (mappings stay valid); also done when garbage collected."""
        self._finalize()


def _reclaim(released: np.ndarray, wanted: np.ndarray, stop: threading.Event) -> None:
    """While a worker waits for a slot, lets JAX drop the host buffers it has done with.

    A device array made from a slot without a copy keeps the slot's views alive until
    its computations end, and JAX hands such references back to Python only during a
    later call into its runtime. A trainer blocked waiting for the next batch makes
    none, so without this the worker would wait for a slot that is already free.
    """
    while not stop.wait(RECLAIM_SECONDS):
        jax = sys.modules.get("jax")  # none imported: no device array holds a slot
        if jax is not None and bool((wanted > released).any()):
            jax.device_put(np.zeros((), np.uint8)).delete()


def _close(shm: shared_memory.SharedMemory, stop: threading.Event) -> None:
    stop.set()
    _unlink_quietly(shm)


def _unlink_quietly(shm: shared_memory.SharedMemory) -> None:
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


def _attach(spec: SlotsSpec):
    """Maps the segment in a worker without registering it with the resource tracker.

    SharedMemory(name) would register it again (Python < 3.13 has no track=False), and
    the tracker would unlink the slots when this worker exits.
    """
    import _posixshmem  # the module SharedMemory itself uses

    fd = _posixshmem.shm_open("/" + spec.name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, spec.total_bytes)
    finally:
        os.close(fd)


class FillSlot(grain.transforms.Map):
    """Worker side: local batch number -> the batch written into its slot; returns the number.

    `examples(batch)` yields the batch's clips in row order: each a dict with one clip's
    arrays or, when `stacked`, a dict of arrays holding any number of clips along a
    leading axis (a window's repeated clips, a video's evaluation views). A stacked
    value may also be a list of the clips' arrays, written row by row without being
    stacked first.
    """

    def __init__(
        self, spec: SlotsSpec, examples: Callable[[int], Any], stacked: bool = False
    ):
        self._spec, self._examples, self._stacked = spec, examples, stacked
        self._memory = None

    def map(self, batch):
        batch = int(batch)
        spec = self._spec
        if self._memory is None:
            self._memory = _attach(spec)
        self._wait_for_slot(batch)
        slot = np.ndarray(
            (spec.layout.slot_bytes,), np.uint8, self._memory, spec.slot_offset(batch)
        )
        arrays = spec.layout.views(slot)
        row = 0
        for example in self._examples(batch):
            if example.keys() != arrays.keys():
                raise KeyError(
                    f"batch {batch}: example keys {sorted(example)} differ from the "
                    f"batch layout's {sorted(arrays)}"
                )
            count = _clip_count(batch, example) if self._stacked else 1
            if row + count > spec.layout.rows:
                raise ValueError(
                    f"batch {batch} has more than {spec.layout.rows} clips, what its "
                    "slot holds"
                )
            for key, value in example.items():
                if not self._stacked:  # row's view (also for scalars) takes one clip
                    _write(batch, key, arrays[key][row, ...], value)
                elif isinstance(value, (list, tuple)):
                    for offset, clip in enumerate(value):
                        _write(batch, key, arrays[key][row + offset, ...], clip)
                else:
                    _write(batch, key, arrays[key][row : row + count], value)
            row += count
        if row != spec.layout.rows:
            raise ValueError(
                f"batch {batch} has {row} clips; its slot holds {spec.layout.rows}"
            )
        return batch

    def _wait_for_slot(self, batch: int) -> None:
        spec = self._spec
        previous = batch - spec.num_slots
        if previous < spec.first_batch:
            return
        released, wanted = spec.header(self._memory)
        slot = batch % spec.num_slots
        if released[slot] >= previous:
            return
        wanted[slot] = previous
        try:
            self._wait(batch, slot, previous, released)
        finally:
            wanted[slot] = -1

    def _wait(self, batch: int, slot: int, previous: int, released: np.ndarray) -> None:
        pause, waited, warned = 1e-4, 0.0, 0.0
        while released[slot] < previous:
            time.sleep(pause)
            waited += pause
            pause = min(2 * pause, 0.01)
            if waited - warned >= WAIT_WARNING_SECONDS:
                warned = waited
                logging.warning(
                    "batch %d has waited %.0f s for slot %d: batch %d is still referenced. "
                    "Are training batches (or device arrays made from them) kept alive?",
                    batch,
                    waited,
                    slot,
                    previous,
                )


def _clip_count(batch: int, example: Mapping[str, Any]) -> int:
    """Clips in a stacked example: the length of each of its values, all alike."""
    counts = {key: len(value) for key, value in example.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"batch {batch}: an example's keys hold different numbers of clips: {counts}"
        )
    return next(iter(counts.values()))


def _write(batch: int, key: str, target: np.ndarray, value) -> None:
    value = np.asarray(value)  # no copy for an array
    if value.shape != target.shape or value.dtype != target.dtype:
        raise ValueError(
            f"batch {batch}: key {key!r} is {value.dtype}{list(value.shape)}, "
            f"the layout has {target.dtype}{list(target.shape)}"
        )
    target[...] = value


class OpenSlot(grain.transforms.Map):
    """Receiving side: local batch number -> the batch's arrays, views of its slot."""

    def __init__(self, slots: BatchSlots):
        self._slots = slots

    def map(self, batch):
        return self._slots.open(int(batch))


class SlotBatchesDataset(grain.IterDataset):
    """Batches `batches` (local batch numbers, in order) made by `examples` in worker
    processes and handed over through slots of `layout`.

    Each iteration makes its own segment, so iterating again (evaluation) never meets
    the slots' state of an earlier pass. `prefetch(ds)` runs a dataset of batch numbers
    in the workers (pipeline.prefetch_with_workers); `num_slots` counts the batches that
    can be in flight at once.
    """

    def __init__(
        self,
        batches: grain.MapDataset,
        examples: Callable[[int], Any],
        *,
        layout: SlotLayout,
        num_slots: int,
        prefetch: Callable[[grain.IterDataset], grain.IterDataset],
        read_options: grain.ReadOptions,
        stacked: bool = False,
    ):
        super().__init__()
        self._batches, self._examples, self._stacked = batches, examples, stacked
        self._layout, self._num_slots = layout, num_slots
        self._prefetch, self._read_options = prefetch, read_options

    def __iter__(self) -> grain.DatasetIterator:
        first = int(self._batches[0]) if len(self._batches) else 0
        slots = BatchSlots(self._layout, self._num_slots, first)
        fill = FillSlot(slots.spec, self._examples, self._stacked)
        ds = self._prefetch(self._batches.map(fill).to_iter_dataset(self._read_options))
        return ds.map(OpenSlot(slots)).__iter__()

    def __str__(self) -> str:
        return f"SlotBatchesDataset(slots={self._num_slots}, rows={self._layout.rows})"
