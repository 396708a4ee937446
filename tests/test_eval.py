"""eval.py and its library: per-video aggregation, view counting, meshes, outputs, --watch."""

import json
import os
import shutil
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl import flags

from squeezetime_jax.checkpoints import workdir as checkpointing
from squeezetime_jax.checkpoints.restore import restore
from squeezetime_jax.data import MEAN_RGB, STD_RGB, clips, make_eval_dataset, pipeline
from squeezetime_jax.evaluation import job as ev
from squeezetime_jax.evaluation import scoring as eval_protocols
from squeezetime_jax.interop.torch_checkpoints import save_torch_checkpoint
from squeezetime_jax.models import build_model
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training.state import create_train_state, init_train_state
from tests.fixtures.demo_dataset import small_data_config, write_demo_dataset
from tests.fixtures.processes import free_port
from tests.training_utils import REPO, device_env, tiny_config

# 5 videos x (2 clips x 3 crops) = 30 views in batches of 8: the last batch is uneven.
PROTOCOL = {"base": "test", "num_clips": 2, "num_crops": 3, "split": "train"}
PROTOCOL_FLAG = "test:num_clips=2,num_crops=3,split=train"
BATCH = 8


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    flags.FLAGS.mark_as_parsed()
    out, videos, _ = write_demo_dataset(tmp_path_factory.mktemp("demo"))
    return out, videos


@pytest.fixture(scope="module")
def config(prepared):
    data = small_data_config(prepared[0])
    data.num_frames = 2
    return tiny_config(
        **{"data": data, "model.num_classes": 3, "total_steps": 2, "eval_every_steps": 0}
    )


def _state(config, seed):
    model = build_model(config.model)
    init_fn = lambda rng: create_train_state(
        model, optax.sgd(0.1, momentum=0.9), rng, clip_shape=(1, 2, 32, 32, 3)
    )
    return init_train_state(init_fn, jax.random.PRNGKey(seed), None)


def _save_step(workdir, config, step, seed):
    """A train.py workdir layout: config.json and an Orbax step with the train state."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, default=str)
    state = _state(config, seed).replace(step=jnp.int32(step))
    manager = checkpointing.make_manager(workdir, async_save=False)
    checkpointing.save(manager, step, state, force=True)
    manager.wait_until_finished()
    manager.close()
    return state


@pytest.fixture(scope="module")
def workdir(config, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("workdir"))
    states = {step: _save_step(path, config, step, seed=step) for step in (1, 2)}
    return path, states


def _mesh(num_devices):
    return mesh_lib.make_mesh((num_devices,), devices=jax.devices()[:num_devices])


@pytest.fixture(scope="module")
def runner_1(config):
    return ev.CheckpointEvaluator(
        config, protocol=PROTOCOL, batch_size=BATCH, mesh=_mesh(1), progress=False
    )


@pytest.fixture(scope="module")
def result_1(runner_1, workdir):
    return runner_1.evaluate(restore(workdir[0], 2, mesh_lib.replicated(runner_1.mesh)))


# ---------------------------------------------------------------- aggregation by hand


def test_average_views_and_accuracies_equal_a_hand_computation():
    rng = np.random.default_rng(0)
    num_videos, clips_, crops, classes = 4, 2, 3, 6
    logits = rng.normal(size=(num_videos, clips_ * crops, classes)) * 3
    labels = np.array([1, 4, 4, 0])
    order = rng.permutation(num_videos * clips_ * crops)  # views arrive in any order
    video, view = np.divmod(np.arange(num_videos * clips_ * crops), clips_ * crops)
    views = {
        "logits": logits.reshape(-1, classes)[order],
        "video_index": video[order],
        "clip_index": (view // crops)[order],
        "crop_index": (view % crops)[order],
    }
    scores = eval_protocols.average_views(views, labels, clips_ * crops, crops)
    for v in range(num_videos):
        expected = np.mean([np.exp(row) / np.exp(row).sum() for row in logits[v]], axis=0)
        np.testing.assert_allclose(scores.probabilities[v], expected, rtol=1e-6)
    top1 = scores.probabilities.argmax(-1)
    hits = top1 == labels
    per_class = [hits[labels == c].mean() for c in np.unique(labels)]
    got = eval_protocols.accuracies(scores.probabilities, labels)
    assert got["top1"] == pytest.approx(hits.mean())
    assert got["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
    top5 = np.argsort(-scores.probabilities, -1)[:, :5]
    assert got["top5"] == pytest.approx(np.mean([labels[i] in top5[i] for i in range(4)]))

    repeated = {k: np.concatenate([v, v[:1]]) for k, v in views.items()}
    with pytest.raises(ValueError, match="1 seen more than once"):
        eval_protocols.check_views(repeated, num_videos, clips_ * crops, crops)
    missing = {k: v[1:] for k, v in views.items()}
    with pytest.raises(ValueError, match="1 missing"):
        eval_protocols.check_views(missing, num_videos, clips_ * crops, crops)


def test_mean_class_accuracy_weights_classes_not_videos():
    probabilities = np.eye(3)[[0, 0, 0, 1, 0]]  # class 0 right 3/3, class 1 right 1/2
    labels = np.array([0, 0, 0, 1, 1])
    got = eval_protocols.accuracies(probabilities, labels)
    assert got["top1"] == pytest.approx(4 / 5)
    assert got["mean_class_accuracy"] == pytest.approx((1.0 + 0.5) / 2)


def test_config_protocols_are_the_papers():
    from squeezetime_jax.configs import hmdb51, k400, k600

    def views(config, protocol):
        p = pipeline.eval_protocol(config.data, protocol)
        return p.num_clips, p.num_crops, p.short_side, p.crop_size

    for module in (k400, k600):
        assert views(module.get_config(), "test") == (10, 3, 224, 224)
        assert views(module.get_config(), "val") == (1, 1, 256, 224)
    assert views(hmdb51.get_config(), "test") == (2, 3, 286, 286)
    # The release validates HMDB51 every epoch on 2 clips x 3 crops at 224 and keeps
    # the best; Kinetics and HMDB51 test on the validation list.
    hmdb = hmdb51.get_config()
    assert views(hmdb, "val") == (2, 3, 224, 224)
    assert hmdb.eval_every_epochs == 1.0 and hmdb.save_best
    for config in (k400.get_config(), k600.get_config(), hmdb):
        assert pipeline.eval_protocol(config.data, "test").split == "validation"
        assert config.model.bn_group_size == 64
    assert views(k400.get_config(), ev.parse_protocol("test:num_clips=4,num_crops=1")) == (
        4,
        1,
        224,
        224,
    )


def test_parse_protocol():
    assert ev.parse_protocol("val") == "val"
    assert ev.parse_protocol(
        "test:num_clips=2,num_crops=3,short_side=286,crop_size=286"
    ) == {
        "base": "test",
        "num_clips": 2,
        "num_crops": 3,
        "short_side": 286,
        "crop_size": 286,
    }
    with pytest.raises(ValueError, match="must start with"):
        ev.parse_protocol("train")
    with pytest.raises(ValueError, match="not key=value"):
        ev.parse_protocol("test:num_clips")


# ---------------------------------------------------------------- real videos, real model


def _direct_view_logits(config, variables, prepared_dir):
    """Every view of the split through the model, one video at a time, outside the pipeline."""
    data = small_data_config(prepared_dir)
    data.num_frames = 2
    protocol = pipeline.eval_protocol(data, PROTOCOL)
    source = pipeline.open_source(data, "train")
    model = build_model(config.model)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    mean, std = np.array(MEAN_RGB), np.array(STD_RGB)
    out = []
    for i in range(len(source)):
        views = clips.EvalViews(data, protocol).map((i, source[i]))
        x = (views["video"].astype(np.float32) - mean) / std
        out.append(np.asarray(apply(jax.device_get(variables), x)))
    return np.stack(out)  # (videos, views, classes), views clip-major


def test_every_view_once_with_uneven_last_batch_and_direct_logits(
    result_1, workdir, config, prepared
):
    metrics, arrays = result_1.metrics, result_1.arrays
    assert metrics["num_videos"] == 5 and metrics["views_per_video"] == 6
    assert metrics["num_views"] == 30 and metrics["num_unreadable"] == 0
    keys = list(
        zip(
            arrays["view_video_index"], arrays["view_clip_index"], arrays["view_crop_index"]
        )
    )
    assert sorted(keys) == [(v, c, k) for v in range(5) for c in range(2) for k in range(3)]
    direct = _direct_view_logits(config, workdir[1][2].variables, prepared[0])
    np.testing.assert_allclose(
        arrays["view_logits"].reshape(5, 6, 3), direct, rtol=1e-4, atol=1e-5
    )
    # Per-video probabilities: mean softmax of that video's view logits.
    exp = np.exp(direct - direct.max(-1, keepdims=True))
    expected = (exp / exp.sum(-1, keepdims=True)).mean(1)
    np.testing.assert_allclose(arrays["probabilities"], expected, rtol=1e-5, atol=1e-6)
    labels = arrays["labels"]
    assert metrics["top1"] == pytest.approx(np.mean(expected.argmax(-1) == labels))
    assert metrics["top5"] == 1.0  # 3 classes


def test_eight_devices_equal_one_device(config, workdir, result_1):
    runner = ev.CheckpointEvaluator(
        config, protocol=PROTOCOL, batch_size=BATCH, mesh=_mesh(8), progress=False
    )
    restored = restore(workdir[0], 2, mesh_lib.replicated(runner.mesh))
    leaf = jax.tree.leaves(restored.variables)[0]
    assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated
    result_8 = runner.evaluate(restored)
    for key in ("top1", "top5", "mean_class_accuracy", "num_views", "num_videos"):
        assert result_8.metrics[key] == result_1.metrics[key]
    for key, value in result_1.arrays.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(result_8.arrays[key], value, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(result_8.arrays[key], value)


def test_simulated_processes_count_each_view_once(runner_1, workdir, result_1):
    """Two processes' datasets, evaluated one after the other and gathered, give the
    single-process result (each process pads to the same number of batches)."""
    restored = restore(workdir[0], 2, mesh_lib.replicated(runner_1.mesh))
    evaluator = runner_1._evaluator_for(restored.config)
    data = ev.eval_data_config(runner_1.config, restored.config)
    parts = []
    for process in range(2):
        ds = make_eval_dataset(
            data,
            batch_size_per_process=BATCH,
            protocol=PROTOCOL,
            process_index=process,
            process_count=2,
        )
        assert len(ds) == 3  # videos 0,2,4 (18 views) and 1,3 (12 views): 3 batches each
        parts.append(evaluator.evaluate(restored.variables, ds, keep_views=True).views)
    views = ev.sort_views({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    output = ev.summarize(views, ds, 3)
    assert output.metrics["num_views"] == 30
    np.testing.assert_allclose(
        output.arrays["probabilities"], result_1.arrays["probabilities"], rtol=1e-6
    )
    assert output.metrics["top1"] == result_1.metrics["top1"]


class _CorruptSource:
    def __init__(self, base, corrupt):
        self._base, self._corrupt = base, corrupt

    def __len__(self):
        return len(self._base)

    def __getitem__(self, i):
        record = dict(self._base[i])
        if i in self._corrupt:
            record["video"] = b"\x00\x00\x00\x18ftypmp42" + bytes(200)
        return record


def test_unreadable_video_is_counted_and_not_scored(
    runner_1, workdir, result_1, monkeypatch, tmp_path
):
    real = pipeline.open_source
    monkeypatch.setattr(
        pipeline, "open_source", lambda cfg, split: _CorruptSource(real(cfg, split), {2})
    )
    restored = restore(workdir[0], 2, mesh_lib.replicated(runner_1.mesh))
    output = runner_1.evaluate(restored, str(tmp_path))
    metrics = json.load(open(tmp_path / "metrics.json"))
    assert metrics["num_unreadable"] == 1 and metrics["num_videos_evaluated"] == 4
    assert metrics["unreadable_video_ids"] == [str(output.arrays["video_ids"][2])]
    assert metrics["num_views"] == 30 and metrics["num_views_evaluated"] == 24
    keep = np.arange(5) != 2
    expected = eval_protocols.accuracies(
        result_1.arrays["probabilities"][keep], result_1.arrays["labels"][keep], 3
    )
    assert metrics["top1"] == pytest.approx(expected["top1"])
    npz = np.load(tmp_path / "predictions.npz")
    assert npz["readable"].tolist() == keep.tolist()


def test_cli_on_pth_export_matches_workdir(workdir, config, prepared, result_1, tmp_path):
    """eval.py on the .pth export of the workdir's step 2 (8 devices) gives the same
    metrics and arrays as the workdir evaluated in-process on one device."""
    pth = str(tmp_path / "model.pth")
    save_torch_checkpoint(pth, jax.device_get(workdir[1][2].variables), config.model)
    out = tmp_path / "eval"
    run = subprocess.run(
        _eval_command(pth, prepared[0], out),
        env=device_env(8),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "top1" in run.stdout and "view/s" in run.stderr  # summary line, progress bar
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["devices"] == 8 and metrics["step"] is None
    for key in (
        "top1",
        "top5",
        "mean_class_accuracy",
        "num_views",
        "num_videos",
        "num_unreadable",
        "protocol",
    ):
        assert metrics[key] == result_1.metrics[key], key
    npz = np.load(out / "predictions.npz")
    np.testing.assert_allclose(
        npz["probabilities"], result_1.arrays["probabilities"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        npz["view_logits"], result_1.arrays["view_logits"], rtol=1e-4, atol=1e-5
    )
    assert npz["video_ids"].tolist() == result_1.arrays["video_ids"].tolist()
    assert npz["class_names"].tolist() == ["walk", "run", "jump"]


def _eval_command(checkpoint, prepared_dir, output_dir):
    return [
        sys.executable,
        os.path.join(REPO, "eval.py"),
        f"--config={os.path.join(REPO, 'configs', 'k400.py')}:depth=10,frames=2,widen=0.125",
        f"--checkpoint={checkpoint}",
        f"--data={prepared_dir}",
        f"--protocol={PROTOCOL_FLAG}",
        f"--output_dir={output_dir}",
        f"--batch_size={BATCH}",
        "--config.data.dataset=squeezetime_video/custom",
        "--config.data.num_workers=0",
        "--config.data.test.short_side=48",
        "--config.data.test.crop_size=48",
    ]


def test_two_processes_gather_every_view_once(workdir, prepared, result_1, tmp_path):
    """eval.py in two processes (one device each) on the workdir: each restores the
    checkpoint onto the two-process mesh, evaluates its videos, and process 0 writes
    the same results as one process."""
    port = free_port()
    out = tmp_path / "eval"
    commands = [
        _eval_command(workdir[0], prepared[0], out)
        + [
            "--step=2",
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            "--noprogress",
        ]
        for i in range(2)
    ]
    processes = [
        subprocess.Popen(
            c,
            env=device_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        for c in commands
    ]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["processes"] == 2 and metrics["step"] == 2
    for key in ("top1", "top5", "mean_class_accuracy", "num_views", "num_videos"):
        assert metrics[key] == result_1.metrics[key], key
    npz = np.load(out / "predictions.npz")
    for key in ("view_video_index", "view_clip_index", "view_crop_index", "labels"):
        np.testing.assert_array_equal(npz[key], result_1.arrays[key])
    np.testing.assert_allclose(
        npz["probabilities"], result_1.arrays["probabilities"], rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------- --watch


def test_watch_evaluates_new_checkpoints_until_the_final_step(config, workdir, tmp_path):
    source_dir, _ = workdir
    watched = str(tmp_path / "run")
    os.makedirs(os.path.join(watched, "checkpoints"))
    shutil.copy(os.path.join(source_dir, "config.json"), watched)  # total_steps = 2

    def publish(step):  # as Orbax does: write elsewhere, then rename into place
        tmp = os.path.join(watched, "checkpoints", f"{step}.tmp")
        shutil.copytree(os.path.join(source_dir, "checkpoints", str(step)), tmp)
        os.rename(tmp, os.path.join(watched, "checkpoints", str(step)))

    publish(1)
    protocol = {
        "base": "test",
        "num_clips": 1,
        "num_crops": 1,
        "split": "train",
        "crop_size": 48,
    }
    outputs = os.path.join(watched, "eval", ev.protocol_name(protocol))

    def second_checkpoint_later():
        # Step 2 appears only after step 1 has been evaluated.
        done = os.path.join(outputs, "step_1", "metrics.json")
        for _ in range(600):
            if os.path.exists(done):
                break
            threading.Event().wait(0.1)
        publish(2)

    thread = threading.Thread(target=second_checkpoint_later)
    thread.start()
    results = ev.watch(
        config,
        watched,
        protocol=protocol,
        timeout=120,
        poll_seconds=0.2,
        batch_size=BATCH,
        progress=False,
    )
    thread.join()
    assert sorted(results) == [1, 2]
    lines = [json.loads(line) for line in open(os.path.join(watched, "metrics.jsonl"))]
    assert [line["step"] for line in lines] == [1, 2]
    for line in lines:
        assert line[f"eval/{ev.protocol_name(protocol)}/top1"] == pytest.approx(
            results[line["step"]]["top1"]
        )
    assert os.listdir(os.path.join(watched, "tensorboard"))
    # Different parameters at the two steps: different predictions.
    p1 = np.load(os.path.join(outputs, "step_1", "predictions.npz"))
    p2 = np.load(os.path.join(outputs, "step_2", "predictions.npz"))
    assert not np.allclose(p1["view_logits"], p2["view_logits"])


def test_watch_stops_after_timeout_without_final_step(config, workdir, tmp_path):
    source_dir, _ = workdir
    watched = str(tmp_path / "run")
    shutil.copytree(source_dir, watched)
    train_config = json.load(open(os.path.join(watched, "config.json")))
    train_config["total_steps"] = 10  # training is not finished: only the timeout stops it
    json.dump(train_config, open(os.path.join(watched, "config.json"), "w"))
    results = ev.watch(
        config,
        watched,
        protocol={
            "base": "test",
            "num_clips": 1,
            "num_crops": 1,
            "split": "train",
            "crop_size": 48,
        },
        timeout=0.5,
        poll_seconds=0.1,
        batch_size=BATCH,
        progress=False,
    )
    assert sorted(results) == [1, 2]


def test_clip_settings_stored_with_the_checkpoint_replace_the_config_files(config):
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    stored = metadata_lib.Metadata(
        frame_interval=7,
        protocols={"test": {"short_side": 41, "crop_size": 37, "num_clips": 5}},
    )
    data = ev.eval_data_config(config, config.model, metadata=stored)
    assert (data.frame_interval, data.test.num_clips) == (7, 5)
    assert (data.test.short_side, data.test.crop_size) == (41, 37)
    assert data.test.num_crops == config.data.test.num_crops  # not stored: the config's
    # What the command line set (--config.data.*) wins over the checkpoint.
    data = ev.eval_data_config(
        config,
        config.model,
        metadata=stored,
        config_overrides=["data.test.short_side", "data.frame_interval", "seed"],
    )
    assert data.frame_interval == config.data.frame_interval
    assert data.test.short_side == config.data.test.short_side
    assert data.test.crop_size == 37
