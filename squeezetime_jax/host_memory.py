"""How the process's C heap (glibc malloc) hands memory to XLA on the CPU.

Two settings, both no-ops off glibc:

* `reuse_freed_memory`: XLA CPU allocates each step's temporary buffer afresh (the
  K400 train step: about 0.7 GiB at batch 4, 1.4 GiB at batch 8). glibc serves blocks
  this large with mmap and unmaps them when freed, so every step faults the whole
  buffer in again and the kernel zeroes it page by page (about 190,000 page faults
  and 0.3-0.7 s of system CPU time per step, the two threads queueing on the page
  fault path). Kept in one heap and never trimmed automatically, the freed buffer is
  reused by the next step as it is. benchmarks/train_benchmark.py measures the
  effect (`--heap-variants`).
* `release_freed_memory`: compiling the train step allocates and frees about 0.7 GiB
  of small blocks that glibc would otherwise keep resident for the whole run;
  `malloc_trim` returns them (called after the first step and after evaluations).
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both are glibc extensions)
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return None
    return libc


def reuse_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse instead of unmapping it; True if it could.

    One heap for all threads (a thread's own arena cannot hold a block over 64 MiB,
    and would map it), no mmap for large blocks, no trimming on free (memory returns
    to the OS only through `release_freed_memory`). Call it first thing in an entry
    point, before JAX creates its CPU threads (before the first computation):
    threads that already allocated keep their own arenas. Process-wide, so library
    code leaves it to the entry points (train.py, eval.py).
    """
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success.
    return all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))


def release_freed_memory() -> bool:
    """Returns freed heap pages to the OS (glibc); True if the C library could."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def define_flags() -> None:
    """--[no]reuse_freed_memory for an entry point (absl)."""
    from absl import flags

    flags.DEFINE_bool("reuse_freed_memory", True,
                      "Keep freed host memory for reuse by the next step instead of "
                      "returning it to the OS (glibc; see squeezetime_jax/host_memory.py).")


def configure_from_flags() -> None:
    """`reuse_freed_memory` unless --noreuse_freed_memory; first thing in main()."""
    from absl import flags

    if flags.FLAGS.reuse_freed_memory:
        reuse_freed_memory()
