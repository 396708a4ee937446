"""Grain worker processes end with the trainer that started them.

A trainer killed with SIGKILL (a pod preempted without grace, an OOM kill, a
`kill -9`) cannot stop its Grain workers, and each would live on holding its
buffers, and the multiprocessing resource tracker with them. `bind_to_parent`
runs first in every worker: it asks the kernel to SIGKILL the worker when its
parent dies (Linux PR_SET_PDEATHSIG), and, since that notice follows the parent
*thread* and does not exist off Linux, also watches the parent's pid from a
daemon thread and exits once the worker has been re-parented.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def bind_to_parent(worker_index: int = 0, worker_count: int = 0) -> None:
    """Grain's `worker_init_fn`: this process dies when its parent does."""
    del worker_index, worker_count
    # The pid that started this worker, even if it is already gone by now.
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
