"""How XLA on the CPU gets its host memory from the C heap (glibc malloc).

Two settings, both no-ops off glibc:

* `reuse_freed_memory`: XLA CPU allocates each step's temporary buffer afresh (the
  K400 train step: about 0.7 GiB at batch 4, 1.4 GiB at batch 8). glibc serves blocks
  this large with mmap and unmaps them when freed, so every step faults the whole
  buffer in again and the kernel zeroes it page by page: about 190,000 page faults
  and 0.3-0.5 s of system CPU time per step at batch 4, with the two threads queueing
  on the page fault path. Entry points (train.py, eval.py) therefore keep freed
  memory in the heap for the next step and run CPU computations on the calling
  thread: only the main thread's heap can hold blocks this large (the heaps glibc
  gives other threads stop at 64 MiB, and map anything larger). A single shared heap
  for all threads would do the same but makes XLA's threads contend for it (slower
  inference). benchmarks/train_benchmark.py measures the effect
  (`--heap-variants`).
* `release_freed_memory`: compiling the train step allocates and frees about 0.7 GiB
  of small blocks that glibc would otherwise keep resident for the whole run;
  `malloc_trim` returns them (the trainer calls it after the first step and after
  evaluations).
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


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
    """Keeps freed heap memory for reuse instead of unmapping it; True if glibc could.

    Large blocks come from the heap instead of their own mappings, and freeing never
    trims the heap: memory returns to the OS only through `release_freed_memory`.
    Process-wide, so library code leaves it to the entry points.
    """
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; -1 disables trimming.
    return all(
        libc.mallopt(param, value) == 1
        for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    )


def run_cpu_computations_on_calling_thread() -> None:
    """JAX's CPU backend executes each computation in the thread that calls it.

    (Its buffers are then allocated there: the main thread's heap.) Must run before
    JAX creates its CPU backend; accelerator backends are unaffected. A loop loses
    only the overlap of its own Python work with the step.
    """
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)


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

    flags.DEFINE_bool(
        "reuse_freed_memory",
        True,
        "On the CPU backend, keep freed host memory for reuse by the next "
        "step instead of returning it to the OS each time (glibc; see "
        "squeezetime_jax/runtime/host_memory.py).",
    )


def configure_from_flags() -> None:
    """Both settings unless --noreuse_freed_memory; first thing in main()."""
    from absl import flags

    if flags.FLAGS.reuse_freed_memory:
        reuse_freed_memory()
        run_cpu_computations_on_calling_thread()
