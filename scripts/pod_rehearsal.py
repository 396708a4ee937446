"""A TPU pod played on one machine: N train.py processes x M CPU devices each.

    python scripts/pod_rehearsal.py                # full form (a few minutes)
    python scripts/pod_rehearsal.py --short        # the form the test suite runs

The processes find each other through jax.distributed on 127.0.0.1 (gloo CPU
collectives), and every path is gs:// on a local GCS emulator, as on a pod whose
workers share a bucket. Checks, each printed as it passes:

  preempt   SIGTERM to ONE process mid-run: every process saves the same step
            (JAX's preemption sync point) and exits cleanly within a bound.
  resume    the run restarted on the same layout ends bit-identical to an
            uninterrupted run (so it resumed at the exact data position);
            restarted on other layouts (4x2, then 1x8; full form) it should end
            within float32 reduction-order noise of it (largest difference printed).

Known failure (full form): a restart on another number of processes stops at the
data restore ("checkpoints/<step>/data/process_0-of-1.json does not exist"): Grain
saves one iterator position per process and restores only onto the same process
count. The short form therefore restarts on the same layout only.

Not yet played here: kill -9 of one process during a save (the Grain workers' end
with their trainer is tested in tests/test_worker_lifetime.py; a half-written GCS
step is ignored by Orbax's commit file), and eval.py --watch beside the run
(tests/test_gcs.py runs --watch on a gs:// workdir).

It cannot show TPU-specific behaviour: ICI/DCN collectives, libtpu, the TPU
metadata server's cluster detection, real preemption notices, GCS latency.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from tests.fixtures.gcs_emulator import GcsEmulator  # noqa: E402
from tests.training_utils import config_flags  # noqa: E402

STOP_BOUND_S = 120.0  # from SIGTERM to every process exited


def _die_with_parent() -> None:
    """In each train.py: SIGKILL when the rehearsal itself dies (Linux)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Pod:
    """N train.py processes of one run; logs under `logs`."""

    def __init__(self, layout, workdir, env, logs, name, **overrides):
        self.processes_count, devices = layout
        self.logs = []
        self.processes = []
        port = _free_port()
        process_env = {
            **env,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": REPO,
        }
        for index in range(self.processes_count):
            log_path = os.path.join(logs, f"{name}.{index}.log")
            self.logs.append(log_path)
            command = [
                sys.executable,
                os.path.join(REPO, "train.py"),
                f"--workdir={workdir}",
                *config_flags(**overrides),
                f"--coordinator_address=127.0.0.1:{port}",
                f"--num_processes={self.processes_count}",
                f"--process_id={index}",
            ]
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=process_env,
                    stdout=open(log_path, "w"),
                    stderr=subprocess.STDOUT,
                    cwd=logs,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            )

    def text(self, index: int) -> str:
        with open(self.logs[index], errors="replace") as f:
            return f.read()

    def wait_for(self, index: int, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text(index):
                return
            if any(p.poll() not in (None, 0) for p in self.processes):
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"{needle!r} not seen in {self.logs[index]}")

    def wait(self, timeout: float) -> float:
        start = time.monotonic()
        try:
            for p in self.processes:
                p.wait(timeout=max(timeout - (time.monotonic() - start), 1))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"processes still running after {timeout:.0f} s (hang)")
        for index, p in enumerate(self.processes):
            if p.returncode != 0:
                raise AssertionError(
                    f"process {index} exited {p.returncode}:\n{self.text(index)[-3000:]}"
                )
        return time.monotonic() - start

    def kill(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def copy_tree(source: str, target: str) -> None:
    from squeezetime_jax import files

    for path in files.walk_files(source):
        files.write_bytes(target + path[len(source) :], files.read_bytes(path))


def stop_steps(pod: Pod) -> list[int | None]:
    steps = []
    for index in range(pod.processes_count):
        found = None
        for line in pod.text(index).splitlines():
            if "stopping at step" in line:
                found = int(line.split("stopping at step")[1].split()[0])
        steps.append(found)
    return steps


def final_params(workdir: str, step: int):
    from squeezetime_jax import files
    from tests.training_utils import saved_params

    files.refresh(workdir)  # written by the train.py processes since we last looked

    return saved_params(workdir, step)


def max_difference(a, b) -> float:
    import jax

    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)


def identical(a, b) -> bool:
    import jax

    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def rehearse(short: bool, emulator: GcsEmulator, logs: str) -> dict:
    from squeezetime_jax.checkpoints import workdir as checkpointing

    env = {**os.environ, **emulator.env()}
    total = 6 if short else 24
    first = (2, 2) if short else (2, 4)
    # Other layouts (full form only): a different process count does not restore
    # yet, see the module docstring.
    others = [] if short else [(4, 2), (1, 8)]
    common = {
        "total_steps": total,
        "checkpoint_every_steps": total,
        "keep_checkpoints": 10,
    }
    report: dict = {"layouts": [first, *others], "total_steps": total}

    # An uninterrupted run: the reference every other run must end at.
    reference = emulator.gs("rehearsal", "reference")
    Pod(first, reference, env, logs, "reference", **common).wait(600)
    want = final_params(reference, total)
    print(f"reference: {first[0]}x{first[1]} ran {total} steps uninterrupted", flush=True)

    def preempt(layout, workdir, name, after_step):
        pod = Pod(layout, workdir, env, logs, name, **common)
        pod.wait_for(0, f"step {after_step}/{total}", 600)
        signalled = time.monotonic()
        os.kill(pod.processes[-1].pid, signal.SIGTERM)  # one process, not the chief
        pod.wait(STOP_BOUND_S)
        took = time.monotonic() - signalled
        steps = stop_steps(pod)
        if len(set(steps)) != 1 or steps[0] is None:
            raise AssertionError(f"{name}: processes stopped at different steps {steps}")
        saved = checkpointing.complete_steps(workdir)
        if steps[0] not in saved:
            raise AssertionError(f"{name}: step {steps[0]} not among saved {saved}")
        print(
            f"preempt: SIGTERM to process {layout[0] - 1} of {layout[0]}x{layout[1]} "
            f"-> all saved step {steps[0]} and exited in {took:.1f} s",
            flush=True,
        )
        return steps[0], took

    # Same layout: preempted, restarted, bit-identical to the reference.
    same = emulator.gs("rehearsal", "same-layout")
    stopped, took = preempt(first, same, "same-preempt", 2)
    report["preempt"] = {"step": stopped, "exit_seconds": round(took, 1)}
    moved = emulator.gs("rehearsal", "other-layouts")
    copy_tree(same, moved)  # the same preempted run, restarted elsewhere below
    restarted = Pod(first, same, env, logs, "same-resume", **common)
    restarted.wait(600)
    if f"at step {stopped}" not in restarted.text(0):
        raise AssertionError("the restart did not resume from the preemption checkpoint")
    if not identical(final_params(same, total), want):
        raise AssertionError("same layout: the resumed run differs from the reference")
    report["same_layout"] = "bit-identical"
    print(
        f"resume: {first[0]}x{first[1]} again -> bit-identical to the reference", flush=True
    )
    if not others:
        return report

    # Other layouts: preempted on each in turn, ends within float32 noise.
    chain = [stopped]
    for number, layout in enumerate(others):
        last = number == len(others) - 1
        if last:
            pod = Pod(layout, moved, env, logs, f"moved-resume-{number}", **common)
            pod.wait(600)
        else:
            stopped, _ = preempt(
                layout, moved, f"moved-preempt-{number + 1}", chain[-1] + 3
            )
            chain.append(stopped)
    difference = max_difference(final_params(moved, total), want)
    report["other_layouts"] = {"stops": chain, "max_abs_param_difference": difference}
    if not difference < 1e-4:
        raise AssertionError(f"other layouts: params differ by {difference:.3g}")
    print(
        "resume: "
        + " -> ".join(f"{a}x{b}" for a, b in [first, *others])
        + f" (stops at {chain}) ends within {difference:.2g} of the reference",
        flush=True,
    )
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the test suite's form")
    parser.add_argument("--logs", default=None, help="where process logs go")
    parser.add_argument("--report", default=None, help="write the outcome as JSON")
    args = parser.parse_args(argv)
    logs = args.logs or tempfile.mkdtemp(prefix="pod-rehearsal-")
    os.makedirs(logs, exist_ok=True)
    print(f"logs in {logs}", flush=True)
    with GcsEmulator(log_path=os.path.join(logs, "gcs-emulator.log")) as emulator:
        os.environ.update(emulator.env())
        report = rehearse(args.short, emulator, logs)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    print("rehearsal passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
