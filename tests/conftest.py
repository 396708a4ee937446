"""Test-wide setup: eight simulated CPU devices, so sharding tests run anywhere.

XLA reads the flag when JAX initializes its backend, hence before any test
imports jax. Single-device tests are unaffected: unsharded arrays live on
device 0.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

# One persistent compilation cache for the whole run, shared with the train.py
# subprocesses that the trainer tests start: identical programs compile once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
        prefix="squeezetime-jax-cache-"
    )
