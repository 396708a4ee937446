"""Scalar metrics to TensorBoard event files and a JSONL file (process 0 only).

A local workdir gets the JSONL lines appended and flushed at every write. GCS has
no append: for a gs:// workdir the writer reads the existing file once (a resumed
run keeps its history), keeps the lines in memory and replaces the whole object,
at most every `flush_seconds` and at close. TensorBoard event files of a gs://
workdir are written to a local temporary directory and uploaded whole on the same
schedule (tensorboardX's own GCS writer uploads again when garbage-collected, and
retries for minutes once the bucket is unreachable, e.g. at interpreter exit). A
run killed without warning thus loses at most `flush_seconds` of metrics on GCS;
its checkpoints are unaffected.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Mapping

import jax
import numpy as np

from squeezetime_jax import files

URL_FLUSH_SECONDS = 30.0


class MetricWriter:
    """Writes `{step, name: value, ...}` lines to workdir/metrics.jsonl and to
    TensorBoard under workdir/tensorboard; a no-op on processes other than 0."""

    def __init__(
        self,
        workdir: str,
        enabled: bool | None = None,
        filename: str = "metrics.jsonl",
        flush_seconds: float = URL_FLUSH_SECONDS,
    ):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = None
        self._tensorboard = None
        self._remote = files.is_url(workdir)
        self._path = files.join(workdir, filename)
        self._lines: list[str] = []  # gs://: the whole file, rewritten on flush
        self._dirty = False
        self._flush_seconds = flush_seconds if self._remote else 0.0
        self._last_flush = time.monotonic()
        self._tensorboard_dir = None
        self._tensorboard_local = None  # gs:// workdirs: events written here, uploaded
        if not self.enabled:
            return
        files.makedirs(workdir)
        if self._remote:
            if files.isfile(self._path):
                self._lines = files.read_text(self._path).splitlines(keepends=True)
        else:
            self._jsonl = files.open_file(self._path, "a", encoding="utf-8")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # TensorBoard files are optional; JSONL always works.
            SummaryWriter = None
        if SummaryWriter is not None:
            self._tensorboard_dir = files.join(workdir, "tensorboard")
            if self._remote:
                self._tensorboard_local = tempfile.mkdtemp(prefix="tensorboard-")
            # flush_secs: tensorboardX's own background flush, kept off our schedule.
            self._tensorboard = SummaryWriter(
                self._tensorboard_local or self._tensorboard_dir, flush_secs=10**6
            )

    def write(self, step: int, scalars: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        values = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        line = json.dumps({"step": int(step), "time": time.time(), **values}) + "\n"
        if self._remote:
            self._lines.append(line)
        else:
            self._jsonl.write(line)
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, int(step))
        self._dirty = True
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self.enabled or not self._dirty:
            return
        if self._remote:
            files.write_text(self._path, "".join(self._lines))
        else:
            self._jsonl.flush()
        if self._tensorboard is not None:
            self._tensorboard.flush()
            self._upload_events()
        self._dirty = False
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
            self._upload_events()
            if self._tensorboard_local is not None:
                shutil.rmtree(self._tensorboard_local, ignore_errors=True)
                self._tensorboard_local = None

    def _upload_events(self) -> None:
        if self._tensorboard_local is None:
            return
        for root, _, names in os.walk(self._tensorboard_local):
            for name in names:
                local = os.path.join(root, name)
                relative = os.path.relpath(local, self._tensorboard_local)
                with open(local, "rb") as f:
                    files.write_bytes(
                        files.join(self._tensorboard_dir, *relative.split(os.sep)), f.read()
                    )
