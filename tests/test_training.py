"""The trainer: sharded step, recipe, exact resume, device-count changes, faults."""

import functools
import os
import shutil
import signal
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from squeezetime_jax.configs import hmdb51, k400
from squeezetime_jax.models import build_model
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training import optim
from squeezetime_jax.training.state import create_train_state, init_train_state
from squeezetime_jax.training.step import train_step
from squeezetime_jax.training.trainer import NonFiniteLossError, train_and_evaluate
from tests.training_utils import (
    checkpoint_steps,
    device_env,
    run_train,
    saved_params,
    tiny_config,
    train_command,
)


def _assert_trees_close(a, b, rtol, atol):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(
            np.asarray(x),
            np.asarray(y),
            rtol=rtol,
            atol=atol,
            err_msg=jax.tree_util.keystr(path),
        )


def _assert_trees_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(
            np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path)
        )


@pytest.mark.parametrize("shard_params", [False, True])
def test_step_on_eight_devices_equals_one_device(shard_params):
    assert jax.device_count() == 8
    config = tiny_config()
    model = build_model(config.model)
    schedule = optim.make_schedule(config, 8, total_steps=6, steps_per_epoch=3)
    tx = optim.make_optimizer(config, schedule)
    init = functools.partial(create_train_state, model, tx, clip_shape=(1, 2, 32, 32, 3))
    state = init_train_state(init, jax.random.PRNGKey(0), None)
    rng = np.random.default_rng(0)
    batch = {
        "video": rng.integers(0, 256, (8, 2, 32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, 5, (8,), dtype=np.int32),
    }
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = mesh_lib.make_mesh((-1,), devices=devices)
        shardings = mesh_lib.state_shardings(
            mesh, jax.eval_shape(lambda: state), shard_params
        )
        step = jax.jit(
            functools.partial(train_step, model=model, tx=tx, schedule=schedule),
            in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
            out_shardings=(shardings, mesh_lib.replicated(mesh)),
        )
        new_state, metrics = step(
            jax.device_put(state, shardings), mesh_lib.global_batch(batch, mesh)
        )
        results.append(jax.device_get((new_state.params, new_state.batch_stats, metrics)))
    (params1, stats1, metrics1), (params8, stats8, metrics8) = results
    assert metrics1["loss"] == pytest.approx(metrics8["loss"], rel=1e-5)
    _assert_trees_close(params1, params8, rtol=1e-4, atol=1e-5)
    # BatchNorm statistics are those of the global batch, not of each device's shard.
    _assert_trees_close(stats1, stats8, rtol=1e-4, atol=1e-5)
    assert not np.allclose(
        params1["fc_cls"]["kernel"], jax.device_get(state.params)["fc_cls"]["kernel"]
    )


def test_k400_schedule_follows_the_release():
    config = k400.get_config()
    steps_per_epoch = 10
    schedule = optim.make_schedule(
        config, 512, total_steps=100 * steps_per_epoch, steps_per_epoch=steps_per_epoch
    )
    peak = 0.015 * 512 / 64
    assert peak == pytest.approx(0.12)
    assert schedule(0) == pytest.approx(peak / 10)
    assert schedule(40) == pytest.approx(peak / 10 + (peak - peak / 10) / 2)
    assert schedule(80) == pytest.approx(peak)  # end of the 8-epoch warm-up
    mid = 80 + 460
    assert schedule(mid) == pytest.approx(1.5e-4 + (peak - 1.5e-4) / 2, rel=1e-5)
    assert schedule(1000) == pytest.approx(1.5e-4)  # absolute floor, not scaled


def test_hmdb51_schedule_steps_down_and_scales_the_backbone():
    config = hmdb51.get_config()
    schedule = optim.make_schedule(config, 64, total_steps=500, steps_per_epoch=10)
    assert schedule(0) == pytest.approx(0.02)
    assert schedule(119) == pytest.approx(0.02)
    assert schedule(120) == pytest.approx(0.002)
    assert schedule(240) == pytest.approx(0.0002)
    tx = optim.make_optimizer(config, schedule)
    params = {"backbone": {"w": jnp.ones(3)}, "fc_cls": {"w": jnp.ones(3)}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # lr * (grad + wd * param); the backbone moves at a tenth of the head's rate.
    head = 0.02 * (1 + 0.008)
    np.testing.assert_allclose(updates["fc_cls"]["w"], -head, rtol=1e-6)
    np.testing.assert_allclose(updates["backbone"]["w"], -0.1 * head, rtol=1e-6)


def test_coupled_weight_decay_and_clipping_match_torch_sgd():
    config = k400.get_config()
    config.optimizer.grad_clip_norm = 1.0
    config.optimizer.weight_decay = 0.05
    tx = optim.make_optimizer(config, lambda step: 0.1)
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(5,))}
    # float32 on both sides: decoupled decay, or decay after momentum, would differ
    # by about lr * wd * |param| = 5e-3, far above float32 rounding.
    torch_params = {
        k: torch.tensor(v, dtype=torch.float32, requires_grad=True)
        for k, v in params.items()
    }
    sgd = torch.optim.SGD(torch_params.values(), lr=0.1, momentum=0.9, weight_decay=0.05)
    jax_params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    opt_state = tx.init(jax_params)
    for _ in range(4):
        grads = {
            k: (rng.normal(size=v.shape) * 3).astype(np.float32) for k, v in params.items()
        }
        for k, p in torch_params.items():
            p.grad = torch.tensor(grads[k])
        torch.nn.utils.clip_grad_norm_(torch_params.values(), max_norm=1.0)
        sgd.step()
        updates, opt_state = tx.update(
            jax.tree.map(jnp.asarray, grads), opt_state, jax_params
        )
        jax_params = jax.tree.map(lambda p, u: p + u, jax_params, updates)
    for k in params:
        np.testing.assert_allclose(
            np.asarray(jax_params[k]),
            torch_params[k].detach().numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_interrupted_run_resumes_bit_identically(tmp_path):
    full = train_and_evaluate(tiny_config(), str(tmp_path / "full"))
    assert checkpoint_steps(tmp_path / "full") == [3, 6]
    # A run killed after step 3's checkpoint: only that checkpoint survives.
    shutil.copytree(tmp_path / "full", tmp_path / "killed")
    shutil.rmtree(tmp_path / "killed" / "checkpoints" / "6")
    resumed = train_and_evaluate(tiny_config(), str(tmp_path / "killed"))
    assert int(resumed.step) == 6
    _assert_trees_equal(jax.device_get(full.params), jax.device_get(resumed.params))
    _assert_trees_equal(
        jax.device_get(full.batch_stats), jax.device_get(resumed.batch_stats)
    )
    _assert_trees_equal(jax.device_get(full.opt_state), jax.device_get(resumed.opt_state))


def _global_norm(tree):
    return float(
        np.sqrt(
            sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree))
        )
    )


def test_checkpoints_restore_on_another_device_count(tmp_path):
    # 8 devices to step 3, then 1 device from step 3 to 6. (Other numbers of
    # processes: scripts/pod_rehearsal.py, run by tests/test_pod_rehearsal.py.)
    workdir = tmp_path / "8to1"
    run_train(workdir, 8)
    at_step3, uninterrupted = saved_params(workdir, 3), saved_params(workdir, 6)
    shutil.rmtree(workdir / "checkpoints" / "6")
    result = run_train(workdir, 1)
    assert "resumed from" in result.stdout and "at step 3" in result.stdout
    resumed = saved_params(workdir, 6)
    # Steps 4-6 on the other device count match up to float32 reduction order,
    # which BatchNorm over a few values amplifies in single elements; a wrong
    # optimizer state or data position would change the update as a whole.
    update = jax.tree.map(np.subtract, uninterrupted, at_step3)
    error = jax.tree.map(np.subtract, resumed, uninterrupted)
    assert _global_norm(error) <= 0.02 * _global_norm(update)


def test_sigterm_checkpoints_at_the_next_step_and_exits_cleanly(tmp_path):
    workdir = tmp_path / "preempted"
    process = subprocess.Popen(
        train_command(workdir, total_steps=100000, checkpoint_every_steps=100000),
        env=device_env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:  # wait until training is under way
        lines.append(line)
        if line.startswith("step 3/"):
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(lines) + output
    assert "SIGTERM: checkpoint saved at step" in output
    saved = checkpoint_steps(workdir)
    assert len(saved) == 1 and 3 < saved[0] < 100000
    result = run_train(workdir, 1, total_steps=saved[0] + 2)
    assert f"at step {saved[0]}" in result.stdout


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(total_steps=12, checkpoint_every_steps=2)
    config.optimizer.base_lr = 1e30
    config.optimizer.grad_clip_norm = 0.0
    with pytest.raises(NonFiniteLossError, match=r"at step \d+") as error:
        train_and_evaluate(config, str(tmp_path))
    saved = checkpoint_steps(tmp_path)
    assert f"last good checkpoint is step {saved[-1] if saved else None}" in str(
        error.value
    )
    for step in saved:
        assert all(
            np.all(np.isfinite(leaf))
            for leaf in jax.tree.leaves(saved_params(tmp_path, step))
        )


def test_config_errors_are_one_line_and_early(tmp_path):
    with pytest.raises(ValueError, match="batch_size 12 is not divisible by the 8 devices"):
        train_and_evaluate(tiny_config(batch_size=12), str(tmp_path))
    with pytest.raises(ValueError, match="model.depth must be one of"):
        train_and_evaluate(tiny_config(**{"model.depth": 42}), str(tmp_path))
    result = subprocess.run(
        train_command(tmp_path / "x") + ["--config.no_such_field=1"],
        env=device_env(1),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "no_such_field" in result.stderr
    assert not os.path.exists(tmp_path / "x" / "checkpoints")


def test_trains_with_device_augmentation_and_validates_on_real_videos(tmp_path):
    import json

    from absl import flags

    from tests.fixtures.demo_dataset import small_data_config, write_demo_dataset

    flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
    prepared, _, _ = write_demo_dataset(tmp_path / "data")
    data = small_data_config(prepared)
    data.num_frames = 2
    data.train.augment_on_device = True  # flip/jitter/erasing inside the jitted step
    data.train.resize_on_device = True  # YUV crops scaled and converted there too
    config = tiny_config(
        **{
            "data": data,
            "model.num_classes": 3,
            "total_steps": 2,
            "schedule.warmup_steps": 1,
            "eval_every_steps": 2,
            "eval_protocol": "val",
        }
    )
    state = train_and_evaluate(config, str(tmp_path / "run"))
    assert int(state.step) == 2
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if "train/loss" in r]
    val = [r for r in records if "val/top1" in r]
    assert [r["step"] for r in train] == [1, 2] and all(
        np.isfinite(r["train/loss"]) for r in train
    )
    assert len(val) == 1 and val[0]["step"] == 2
    assert (
        val[0]["val/views"] == 3
    )  # the demo dataset's three validation videos, 1 view each
    assert 0.0 <= val[0]["val/top1"] <= 1.0
    # The class names and clip settings travel with the weights (metadata.json).
    from squeezetime_jax.checkpoints import metadata as metadata_lib
    from squeezetime_jax.data import dataset_info

    stored = metadata_lib.read(tmp_path / "run")
    assert stored.class_names == dataset_info(prepared, data.dataset).class_names
    assert (stored.num_frames, stored.frame_interval) == (2, data.frame_interval)
    assert stored.protocols["val"]["crop_size"] == data.val.crop_size
