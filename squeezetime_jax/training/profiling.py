"""`config.profile_steps = "START,COUNT"`: a jax.profiler trace of COUNT training steps.

The trace goes to WORKDIR/profile in TensorBoard's layout
(profile/plugins/profile/RUN/HOST.xplane.pb), so `tensorboard --logdir WORKDIR/profile`
shows it in the profile plugin (`pip install tensorboard-plugin-profile`, or xprof).
The profiler writes through its own C++ file layer; for a gs:// workdir the trace is
written to a local temporary directory first and then copied up with
`squeezetime_jax.files`, so it works wherever the rest of the workdir does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import jax

from squeezetime_jax import files

PROFILE_DIR = "profile"


def parse_profile_steps(value) -> tuple[int, int] | None:
    """ "START,COUNT" (or a pair) -> (start, count); "" / None -> None."""
    if value is None or value == "" or value == ():
        return None
    try:
        if isinstance(value, str):
            parts = [int(p) for p in value.replace(" ", "").split(",")]
        else:
            parts = [int(p) for p in value]
        start, count = parts
    except (TypeError, ValueError):
        raise ValueError(
            f"config error: profile_steps must be 'START,COUNT' (two integers), got {value!r}"
        ) from None
    if start < 0 or count <= 0:
        raise ValueError(
            f"config error: profile_steps {value!r}: START must be >= 0 and COUNT > 0"
        )
    return start, count


class StepProfiler:
    """Starts a trace before step START+1 runs and stops it after step START+COUNT.

    Steps are numbered as the trainer's `step` after an update (1 = the first update);
    `before(step)` takes the number of updates done so far. Only process 0 traces.
    """

    def __init__(
        self,
        spec,
        workdir: str,
        *,
        stage_locally: bool | None = None,
        pause=contextlib.nullcontext,
    ):
        self.window = parse_profile_steps(spec)
        self.target = files.join(workdir, PROFILE_DIR)
        self.enabled = self.window is not None and jax.process_index() == 0
        self.stage_locally = (
            files.is_url(workdir) if stage_locally is None else stage_locally
        )
        self._active = False
        self._local: str | None = None
        self._pause = pause  # writing the trace is not training time (TrainingClock)

    def before(self, step: int) -> None:
        if self.enabled and not self._active and step == self.window[0]:
            if self.stage_locally:
                self._local = tempfile.mkdtemp(prefix="squeezetime_profile_")
                log_dir = self._local
            else:
                log_dir = files.makedirs(self.target)
            with self._pause():
                jax.profiler.start_trace(log_dir)
            self._active = True

    def after(self, step: int, outputs=None) -> None:
        if self._active and step >= self.window[0] + self.window[1]:
            self.stop(outputs)

    def stop(self, outputs=None) -> None:
        """Ends the trace (waiting for `outputs` so device work is in it)."""
        if not self._active:
            return
        if outputs is not None:
            jax.block_until_ready(outputs)
        with self._pause():
            jax.profiler.stop_trace()
            self._active = False
            if self._local is not None:
                copy_tree(self._local, self.target)
                shutil.rmtree(self._local, ignore_errors=True)
                self._local = None
        print(f"profile of steps {self.describe()} written to {self.target}", flush=True)

    def describe(self) -> str:
        start, count = self.window
        return f"{start + 1}..{start + count}"


def copy_tree(source: str, target: str) -> list[str]:
    """Copies every file under a local directory to `target` (local or gs://)."""
    written = []
    for root, _, names in os.walk(source):
        for name in names:
            local = os.path.join(root, name)
            relative = os.path.relpath(local, source).split(os.sep)
            with open(local, "rb") as f:
                written.append(files.write_bytes(files.join(target, *relative), f.read()))
    return written
