"""gs:// end to end against a local GCS emulator: data, workdir, resume, eval, convert,
export (eval.py --watch on gs://, beside a live run: tests/test_pod_rehearsal.py).

Every subprocess runs in an empty directory that must stay empty: a URL handled by
os.path would land there as ./gs:/bucket/...
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from squeezetime_jax import files
from tests.fixtures.demo_dataset import tiny_training_overrides, write_demo_dataset
from tests.fixtures.gcs_emulator import GcsEmulator, upload_tree
from tests.training_utils import REPO, TINY_VARIANT, config_flags, device_env

pytest.importorskip("gcsfs", reason="the gcs extra is not installed")
pytest.importorskip("gcp_storage_emulator", reason="the test extra is not installed")


@pytest.fixture(scope="module")
def gcs():
    with GcsEmulator() as emulator:
        saved = {k: os.environ.get(k) for k in emulator.env()}
        os.environ.update(emulator.env())  # this process reads the bucket too
        try:
            yield emulator
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="module")
def data_url(gcs, tmp_path_factory):
    flags.FLAGS.mark_as_parsed()
    prepared, _, _ = write_demo_dataset(tmp_path_factory.mktemp("demo"))
    url = gcs.gs("data")
    assert upload_tree(prepared, url) > 3
    return url


def _run(args, cwd, env, timeout=600):
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def test_file_layer_and_metric_writer_on_gs(gcs):
    from squeezetime_jax.training.metrics_writer import MetricWriter

    base = gcs.gs("layer")
    files.write_text(f"{base}/a/b.txt", "x")
    files.write_json(f"{base}/c.json", {"k": 1})
    assert sorted(files.walk_files(base)) == [f"{base}/a/b.txt", f"{base}/c.json"]
    assert files.listdir(base) == ["a", "c.json"] and files.isdir(f"{base}/a")
    assert files.read_json(f"{base}/c.json") == {"k": 1} and not files.exists(f"{base}/z")

    run = f"{base}/run"
    writer = MetricWriter(run, enabled=True, flush_seconds=0.0)
    writer.write(1, {"loss": 1.0})
    writer.close()
    writer = MetricWriter(run, enabled=True, flush_seconds=3600.0)  # a resumed run
    writer.write(2, {"loss": 0.5})
    lines = files.read_text(f"{run}/metrics.jsonl").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]  # not flushed yet
    writer.close()
    lines = files.read_text(f"{run}/metrics.jsonl").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]  # history kept
    assert any("tfevents" in name for name in files.listdir(f"{run}/tensorboard"))


def test_train_resume_eval_watch_and_convert_on_gs(gcs, data_url, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**device_env(2), **gcs.env(), "PYTHONPATH": REPO}
    workdir = gcs.gs("runs", "tiny")
    overrides = tiny_training_overrides(data_url)

    def train(total_steps):
        return _run(
            [
                sys.executable,
                os.path.join(REPO, "train.py"),
                f"--workdir={workdir}",
                *config_flags(**overrides, total_steps=total_steps),
            ],
            cwd,
            env,
        )

    train(3)
    assert files.read_json(files.join(workdir, "config.json"))["total_steps"] == 3
    resumed = train(6)
    assert "at step 3" in resumed.stdout
    assert files.listdir(files.join(workdir, "checkpoints")) == ["3", "6"]
    lines = files.read_text(files.join(workdir, "metrics.jsonl")).splitlines()
    steps = [json.loads(line)["step"] for line in lines if "train/loss" in line]
    assert steps == [1, 2, 3, 4, 5, 6]  # the resumed run kept the first run's lines
    assert any(
        "tfevents" in name for name in files.listdir(files.join(workdir, "tensorboard"))
    )

    eval_flags = [
        f"--config={os.path.join(REPO, 'configs', 'k400.py')}:{TINY_VARIANT}",
        *[f"--config.{k}={v}" for k, v in overrides.items() if k.startswith("data.")],
        f"--checkpoint={workdir}",
        "--protocol=val",
        "--batch_size=2",
        "--progress=false",
    ]
    evaluated = _run([sys.executable, os.path.join(REPO, "eval.py"), *eval_flags], cwd, env)
    metrics = files.read_json(files.join(workdir, "eval", "val", "step_6", "metrics.json"))
    assert metrics["num_videos_evaluated"] == 3 and 0 <= metrics["top1"] <= 1
    assert "top1" in evaluated.stdout

    exported = gcs.gs("exported", "tiny.pth")
    _run(
        [sys.executable, "-m", "squeezetime_jax.convert", "to-torch", workdir, exported],
        cwd,
        env,
    )
    import jax

    from squeezetime_jax.checkpoints.restore import restore as load_variables

    from_pth = load_variables(exported).variables  # read back from gs:// through torch
    from_workdir = load_variables(workdir).variables
    assert jax.tree.structure(from_pth) == jax.tree.structure(from_workdir)
    for got, want in zip(jax.tree.leaves(from_pth), jax.tree.leaves(from_workdir)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    exported_dir = gcs.gs("exported", "mobile")
    _run(
        [
            sys.executable,
            "-m",
            "squeezetime_jax.export",
            f"--checkpoint={workdir}",
            "--format=pytorch",
            f"--out={exported_dir}",
        ],
        cwd,
        env,
    )
    names = files.listdir(exported_dir)
    assert {"squeezetime.pth", "squeezetime.pt2", "squeezetime_export_info.json"} <= set(
        names
    )
    info = files.read_json(files.join(exported_dir, "squeezetime_export_info.json"))
    assert all(check["passed"] for check in info["parity_vs_jax"])

    assert os.listdir(cwd) == []  # nothing landed in the working directory


def test_a_long_running_reader_sees_steps_saved_by_another_process(gcs, tmp_path):
    """What eval.py --watch relies on: gcsfs's listing cache is refreshed."""
    from squeezetime_jax.checkpoints import workdir as checkpointing

    workdir = gcs.gs("watched")
    files.write_text(files.join(workdir, "checkpoints", "1", "commit_success.txt"), "")
    files.write_text(files.join(workdir, "checkpoints", "1", "state", "x"), "")
    assert checkpointing.complete_steps(workdir) == [1]
    script = (
        "from squeezetime_jax import files\n"
        f"base = {files.join(workdir, 'checkpoints', '2')!r}\n"
        "files.write_text(base + '/state/x', '')\n"
        "files.write_text(base + '/commit_success.txt', '')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        env={**os.environ, **gcs.env(), "PYTHONPATH": REPO},
        cwd=tmp_path,
        timeout=120,
    )
    assert checkpointing.complete_steps(workdir) == [1, 2]
