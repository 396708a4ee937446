"""Tiny training configs and subprocess runners shared by the trainer tests."""

import os
import subprocess
import sys

import jax
import numpy as np

from squeezetime_jax.checkpoints import workdir as workdir_lib
from squeezetime_jax.checkpoints.restore import restore
from squeezetime_jax.configs import k400

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_VARIANT = "depth=10,frames=2,widen=0.125,batch=8"
TINY_OVERRIDES = {
    "model.pos_dims": (4, 2, 1, 1),
    "model.num_classes": 5,
    "data.dataset": "random",
    "data.num_examples": 24,
    "data.train.crop_size": 32,
    "schedule.warmup_steps": 2,
    "optimizer.base_lr": 0.1,
    "log_every_steps": 1,
    "checkpoint_every_steps": 3,
    "total_steps": 6,
    "async_checkpointing": False,
}


def tiny_config(**overrides):
    config = k400.get_config(TINY_VARIANT)
    for key, value in {**TINY_OVERRIDES, **overrides}.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def config_flags(**overrides):
    """The same tiny config as command-line flags of train.py."""
    flags = [f"--config={os.path.join(REPO, 'configs', 'k400.py')}:{TINY_VARIANT}"]
    for key, value in {**TINY_OVERRIDES, **overrides}.items():
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
            value = f"({value})"
        flags.append(f"--config.{key}={value}")
    return flags


def train_command(workdir, **overrides):
    return [
        sys.executable,
        os.path.join(REPO, "train.py"),
        f"--workdir={workdir}",
        *config_flags(**overrides),
    ]


def device_env(num_devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_train(workdir, num_devices, extra_args=(), timeout=300, **overrides):
    result = subprocess.run(
        train_command(workdir, **overrides) + list(extra_args),
        env=device_env(num_devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def checkpoint_steps(workdir):
    return workdir_lib.complete_steps(workdir)


def saved_params(workdir, step):
    """The params of a saved train state as numpy arrays, whatever mesh saved them."""
    params = restore(workdir, step).variables["params"]
    return jax.tree.map(np.asarray, params)
