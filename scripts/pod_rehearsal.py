"""A TPU pod played on one machine: N train.py processes x M CPU devices each.

    python scripts/pod_rehearsal.py                # full form (about 10 minutes)
    python scripts/pod_rehearsal.py --short        # the form the test suite runs

The processes find each other through jax.distributed on 127.0.0.1 (gloo CPU
collectives), and every path is gs:// on a local GCS emulator, as on a pod whose
workers share a bucket: the prepared demo dataset, the workdirs, the evaluations.
Each trainer reads its data with Grain worker processes. Checks, each printed as it
passes:

  watch     eval.py --watch beside the uninterrupted reference run evaluates each of
            its checkpoints exactly once, and stops after the final one.
  preempt   SIGTERM to ONE process mid-run: every process saves the same step
            (JAX's preemption sync point) and exits cleanly within a bound.
  kill -9   the restarted run loses its chief to SIGKILL while a checkpoint is being
            written (a step on GCS without its commit marker); the trainer's Grain
            workers die with it; the slice is restarted (the other processes are
            stopped, as a pod restart would) and resumes from the last complete
            checkpoint; it then ends bit-identical to the reference run.
  layouts   the preempted run restarted on other layouts (short: 1x4; full: 4x2,
            then 1x8, with a preemption on each but the last) ends within float32
            reduction-order noise of the reference: under 1% of the parameters'
            movement since the first stop (largest element and step-by-step
            training-loss differences printed). The data position is the step,
            so no layout change moves it.

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

from tests.fixtures.demo_dataset import (  # noqa: E402
    tiny_training_overrides,
    write_demo_dataset,
)
from tests.fixtures.gcs_emulator import GcsEmulator, upload_tree  # noqa: E402
from tests.fixtures.processes import alive, descendants, dies_with_parent, free_port  # noqa: E402
from tests.training_utils import TINY_VARIANT, config_flags  # noqa: E402

STOP_BOUND_S = 120.0  # from SIGTERM to every process exited


class Pod:
    """N train.py processes of one run; logs under `logs`."""

    def __init__(self, layout, workdir, env, logs, name, **overrides):
        self.processes_count, devices = layout
        self.logs = []
        self.processes = []
        port = free_port()
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
                    preexec_fn=dies_with_parent(signal.SIGKILL),
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


def training_losses(workdir: str) -> dict[int, float]:
    """{step: training loss} from the run's metrics.jsonl (a resumed run's last word)."""
    from squeezetime_jax import files

    losses = {}
    for line in files.read_text(files.join(workdir, "metrics.jsonl")).splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            losses[record["step"]] = record["train/loss"]
    return losses


def global_norm(a, b) -> float:
    """The L2 norm of a - b over every parameter."""
    import jax

    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return float(
        np.sqrt(sum(np.sum((np.asarray(x, np.float64) - y) ** 2) for x, y in leaves))
    )


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


def incomplete_steps(workdir: str) -> list[str]:
    """Checkpoint directories on GCS that Orbax has not committed (yet)."""
    from squeezetime_jax import files
    from squeezetime_jax.checkpoints import workdir as checkpointing

    root = checkpointing.checkpoint_dir(workdir)
    files.refresh(root)
    if not files.isdir(root):
        return []
    complete = {str(step) for step in checkpointing.complete_steps(workdir)}
    return [name for name in files.listdir(root) if name not in complete]


def watch_command(workdir: str, data: dict) -> list[str]:
    return [
        sys.executable,
        os.path.join(REPO, "eval.py"),
        f"--config={os.path.join(REPO, 'configs', 'k400.py')}:{TINY_VARIANT}",
        *[f"--config.{k}={v}" for k, v in data.items() if k.startswith("data.")],
        f"--checkpoint={workdir}",
        "--protocol=val",
        "--batch_size=2",
        "--progress=false",
        "--watch",
        "--poll_seconds=0.5",
        "--timeout=900",
    ]


def rehearse(short: bool, emulator: GcsEmulator, logs: str) -> dict:
    from squeezetime_jax import files
    from squeezetime_jax.checkpoints import workdir as checkpointing

    env = {**os.environ, **emulator.env()}
    total = 6 if short else 12
    first = (2, 2) if short else (2, 4)
    others = [(1, 4)] if short else [(4, 2), (1, 8)]
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # the preparation runs Grain, which reads absl flags
    prepared, _, _ = write_demo_dataset(os.path.join(logs, "demo-data"))
    data_url = emulator.gs("rehearsal", "data")
    upload_tree(prepared, data_url)
    common = {
        **tiny_training_overrides(data_url, num_workers=1),
        "total_steps": total,
        "checkpoint_every_steps": total // 2,
        "keep_checkpoints": 100,
        "eval_every_steps": 0,  # evaluation is eval.py --watch's job here
        # A gentler rate than the unit tests' tiny config: over the full form's 24
        # steps at 0.1, float32 reduction-order differences grow chaotically.
        "optimizer.base_lr": 0.02,
    }
    report: dict = {"layouts": [first, *others], "total_steps": total}

    # An uninterrupted run, the reference every other run must end at, with
    # eval.py --watch beside it.
    reference = emulator.gs("rehearsal", "reference")
    pod = Pod(first, reference, env, logs, "reference", **common)
    pod.wait_for(0, "step 1/", 600)  # config.json is written: the watch can start
    watcher = subprocess.Popen(
        watch_command(reference, common),
        env={
            **env,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": REPO,
        },
        stdout=open(os.path.join(logs, "watch.log"), "w"),
        stderr=subprocess.STDOUT,
        cwd=logs,
        preexec_fn=dies_with_parent(signal.SIGKILL),
    )
    pod.wait(600)
    want = final_params(reference, total)
    print(f"reference: {first[0]}x{first[1]} ran {total} steps uninterrupted", flush=True)
    try:
        watcher.wait(timeout=600)
    except subprocess.TimeoutExpired:
        watcher.kill()
        raise AssertionError("eval.py --watch did not stop after the final step")
    if watcher.returncode != 0:
        raise AssertionError(f"eval.py --watch exited {watcher.returncode}; see watch.log")
    lines = files.read_text(files.join(reference, "eval", "val", "metrics.jsonl"))
    evaluated = [json.loads(line)["step"] for line in lines.splitlines()]
    saved = checkpointing.complete_steps(reference)
    if evaluated != saved:
        raise AssertionError(f"--watch evaluated steps {evaluated}; saved {saved}")
    report["watch"] = {"evaluated": evaluated}
    print(f"watch: evaluated steps {evaluated}, each exactly once", flush=True)

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

    same = emulator.gs("rehearsal", "same-layout")
    stopped, took = preempt(first, same, "same-preempt", 2)
    report["preempt"] = {"step": stopped, "exit_seconds": round(took, 1)}
    moved = emulator.gs("rehearsal", "other-layouts")
    copy_tree(same, moved)  # the same preempted run, restarted elsewhere below

    # Restarted on the same layout, saving every step; its chief is killed mid-save.
    saving = {**common, "checkpoint_every_steps": 1, "async_checkpointing": True}
    pod = Pod(first, same, env, logs, "same-killed", **saving)
    deadline = time.monotonic() + 600
    while not (pending := incomplete_steps(same)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in pod.processes):
            pod.kill()
            raise AssertionError("kill -9: no checkpoint was seen in progress")
        time.sleep(0.02)
    chief = pod.processes[0]
    workers = descendants(chief.pid)
    chief.kill()  # SIGKILL to the process alone: its workers must go by themselves
    chief.wait()
    pod.kill()  # the rest of the slice, as the restart of a pod does
    survivors = [pid for pid in workers if alive(pid)]
    bound = time.monotonic() + 10
    while survivors and time.monotonic() < bound:
        time.sleep(0.1)
        survivors = [pid for pid in survivors if alive(pid)]
    if not workers or survivors:
        raise AssertionError(
            f"kill -9: the chief's {len(workers)} child processes; alive: {survivors}"
        )
    left = incomplete_steps(same)
    resume_from = checkpointing.complete_steps(same)[-1]
    restarted = Pod(first, same, env, logs, "same-resume", **saving)
    restarted.wait(600)
    if f"at step {resume_from}" not in restarted.text(0):
        raise AssertionError(f"kill -9: the restart did not resume at step {resume_from}")
    if not identical(final_params(same, total), want):
        raise AssertionError("same layout: the resumed run differs from the reference")
    report["kill9"] = {
        "seen_in_progress": pending,
        "left_uncommitted": left,
        "resumed_from": resume_from,
        "child_processes_killed_with_it": len(workers),
        "same_layout": "bit-identical",
    }
    print(
        f"kill -9: chief killed while writing {pending} ({len(workers)} child processes "
        f"ended with it; uncommitted after: {left}); resumed from step {resume_from} "
        "-> bit-identical to the reference",
        flush=True,
    )

    # Other layouts: preempted on each but the last, ends within float32 noise.
    chain = [stopped]
    for number, layout in enumerate(others):
        if number == len(others) - 1:
            Pod(layout, moved, env, logs, f"moved-resume-{number}", **common).wait(600)
        else:
            stopped, _ = preempt(
                layout, moved, f"moved-preempt-{number + 1}", chain[-1] + 3
            )
            chain.append(stopped)
    got = final_params(moved, total)
    difference = max_difference(got, want)
    # Relative to how far the parameters moved since the first stop: float32
    # reduction order differs across layouts, and BatchNorm over a few values per
    # channel amplifies it step by step; a wrong data position or optimizer state
    # would change the update as a whole.
    update = global_norm(want, final_params(moved, chain[0]))
    relative = global_norm(got, want) / update
    losses = [training_losses(workdir) for workdir in (reference, moved)]
    loss_difference = max(abs(losses[0][step] - losses[1][step]) for step in losses[0])
    report["other_layouts"] = {
        "stops": chain,
        "max_abs_param_difference": difference,
        "relative_param_difference": relative,
        "max_abs_loss_difference": loss_difference,
    }
    if not relative < 0.01:
        raise AssertionError(
            f"other layouts: params differ by {relative:.3g} of the update "
            f"(largest element {difference:.3g})"
        )
    print(
        "layouts: "
        + " -> ".join(f"{a}x{b}" for a, b in [first, *others])
        + f" (stops at {chain}) ends within {relative:.2g} of the update since step "
        + f"{chain[0]} (largest element {difference:.2g}) of the reference "
        + f"(training losses within {loss_difference:.2g} at every step)",
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
