"""Scalar metrics to TensorBoard event files and a JSONL file (process 0 only)."""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import jax
import numpy as np


class MetricWriter:
    """Writes `{step, name: value, ...}` lines to workdir/metrics.jsonl and to
    TensorBoard under workdir/tensorboard; a no-op on processes other than 0."""

    def __init__(
        self, workdir: str, enabled: bool | None = None, filename: str = "metrics.jsonl"
    ):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tensorboard = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, filename), "a", encoding="utf-8")
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # TensorBoard files are optional; JSONL always works.
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        values = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        self._jsonl.write(
            json.dumps({"step": int(step), "time": time.time(), **values}) + "\n"
        )
        self._jsonl.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, int(step))
            self._tensorboard.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
