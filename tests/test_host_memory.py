"""release_freed_memory gives freed heap pages back (glibc on Linux)."""

import ctypes
import sys

import pytest

from squeezetime_jax.host_memory import release_freed_memory


def _resident_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap on Linux")
def test_freed_small_blocks_leave_resident_memory():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # 200 MiB in small blocks, as a compiler allocates; the last one stays allocated,
    # so the heap cannot simply shrink from the top when the others are freed.
    blocks = [libc.malloc(2048) for _ in range(100_000)]
    for block in blocks:
        ctypes.memset(block, 1, 2048)
    for block in blocks[:-1]:
        libc.free(block)
    before = _resident_mib()
    assert release_freed_memory()
    after = _resident_mib()
    libc.free(blocks[-1])
    assert before - after > 100, (before, after)
