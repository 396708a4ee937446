"""One global example order, cut into global batches that do not depend on the layout.

Global batch g holds positions [g*B, (g+1)*B) of an endless global order. Process p of
P feeds rows [p*b, (p+1)*b) of it (b = B/P), which is how `mesh.global_batch`
assembles the processes' parts. So the examples of every global batch are the same on
1, 2 or 64 processes, and a run restarted on another number of hosts continues from
global batch `start_batch` (the train step: one global batch per step) with exactly the
examples it would have seen. Nothing about the position needs saving: it is the step.
"""

from __future__ import annotations

import sys

import grain


class GlobalPosition(grain.transforms.Map):
    """A position in this process's stream -> its position in the global order."""

    def __init__(self, per_process: int, process_index: int, process_count: int):
        if per_process < 1:
            raise ValueError(f"per-process batch size must be >= 1, got {per_process}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self._per_process = per_process
        self._offset = process_index * per_process
        self._global = per_process * process_count

    def map(self, position):
        batch, row = divmod(int(position), self._per_process)
        return batch * self._global + self._offset + row


def end_position(process_count: int) -> int:
    """Where a process's stream of positions stops: its global positions stay below
    sys.maxsize."""
    return sys.maxsize // (2 * process_count)


def process_positions(
    *, per_process: int, process_index: int, process_count: int, start_batch: int = 0
) -> grain.MapDataset:
    """This process's endless stream of global positions, from global batch `start_batch`."""
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    local = grain.MapDataset.range(start_batch * per_process, end_position(process_count))
    return local.map(GlobalPosition(per_process, process_index, process_count))
