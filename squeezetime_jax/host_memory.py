"""Handing heap memory that XLA's compiler freed back to the operating system.

Compiling the K400 train step on XLA CPU allocates and frees about 0.7 GiB of small
heap blocks; glibc keeps the freed pages mapped, so they stay in the process's
resident memory for the whole run (measured with benchmarks/train_benchmark.py's
"before the first step" column). `malloc_trim` returns them. On other C libraries
and systems this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return None


def release_freed_memory() -> bool:
    """Returns freed heap pages to the OS (glibc); True if the C library could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
