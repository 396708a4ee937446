"""Test-wide setup: eight simulated CPU devices, so sharding tests run anywhere.

XLA reads the flag when JAX initializes its backend, hence before any test
imports jax. Single-device tests are unaffected: unsharded arrays live on
device 0.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

# The tests run on XLA CPU. With libtpu installed (the tpu-compile extra) JAX would
# otherwise probe for a TPU in every process, and each would take libtpu's
# one-process lock, which the TPU-compile tests need; those compile for TPU
# topologies without JAX's TPU backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

# One persistent compilation cache for the whole run, shared with the train.py
# subprocesses that the trainer tests start: identical programs compile once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
        prefix="squeezetime-jax-cache-"
    )
