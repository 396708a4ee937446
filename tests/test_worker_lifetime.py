"""Grain workers die with a trainer killed by SIGKILL (no orphans holding memory)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.fixtures.processes import alive
from tests.training_utils import REPO

PARENT = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from squeezetime_jax.data import worker_lifetime

    def worker(bind, ready):
        if bind:
            worker_lifetime.bind_to_parent(0, 1)
        ready.set()
        time.sleep(60)

    if __name__ == "__main__":
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        child = context.Process(target=worker, args=(sys.argv[1] == "bind", ready))
        child.start()
        ready.wait(120)
        print(child.pid, flush=True)
        time.sleep(60)
    """
)


def _orphan_survives(mode, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    child = int(parent.stdout.readline())  # once its init ran
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(child):
        time.sleep(0.1)
    survived = alive(child)
    if survived:
        os.kill(child, signal.SIGKILL)
    return survived


def test_a_bound_worker_dies_with_its_killed_parent(tmp_path):
    assert not _orphan_survives("bind", tmp_path)


def test_an_unbound_worker_would_survive(tmp_path):  # the test can fail
    assert _orphan_survives("free", tmp_path)
