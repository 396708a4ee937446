"""Training-step time for the log line: clips/s and a smoothed ETA.

The wall time between two log lines also holds validation, checkpoint saves and, at
the start, compilation. `TrainingClock` leaves out the spans run inside
`clock.paused()` and smooths the seconds per step with an exponential moving
average, so the ETA does not jump after every validation.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable


class TrainingClock:
    """Seconds per training step, measured between `lap` calls minus paused spans.

    `smoothing` is the weight of the newest interval in the moving average. The
    first interval (compilation included) only seeds the estimate: the next one
    replaces it instead of being averaged with it.
    """

    def __init__(
        self,
        step: int,
        smoothing: float = 0.3,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self._clock = clock
        self._smoothing = smoothing
        self._step = step
        self._start = clock()
        self._paused = 0.0
        self._seconds_per_step: float | None = None
        self._seeded_by_first = False

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (validation, checkpointing) is not training time."""
        start = self._clock()
        try:
            yield
        finally:
            self._paused += self._clock() - start

    def lap(self, step: int) -> tuple[int, float]:
        """(steps, training seconds) since the previous lap; updates the average."""
        now = self._clock()
        steps = step - self._step
        seconds = max(now - self._start - self._paused, 1e-9)
        self._step, self._start, self._paused = step, now, 0.0
        if steps > 0:
            rate = seconds / steps
            if self._seconds_per_step is None:
                self._seconds_per_step, self._seeded_by_first = rate, True
            elif self._seeded_by_first:
                self._seconds_per_step, self._seeded_by_first = rate, False
            else:
                a = self._smoothing
                self._seconds_per_step = a * rate + (1 - a) * self._seconds_per_step
        return steps, seconds

    @property
    def seconds_per_step(self) -> float | None:
        return self._seconds_per_step

    def eta(self, remaining_steps: int) -> float | None:
        """Seconds of training left at the smoothed rate; None before the first lap."""
        if self._seconds_per_step is None:
            return None
        return max(remaining_steps, 0) * self._seconds_per_step


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
