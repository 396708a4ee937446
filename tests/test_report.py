"""Run reports: curves from metrics.jsonl, confusion numbers from eval outputs."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from squeezetime_jax.data.pipeline import EvalDataset, EvalProtocol  # noqa: E402
from squeezetime_jax.evaluation import job, report  # noqa: E402
from squeezetime_jax.training.metrics_writer import MetricWriter  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["walk", "run", "jump"]
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDICTED = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
PNG = b"\x89PNG\r\n\x1a\n"


def write_eval(directory, labels, predicted, views_per_video=2):
    """An eval output as eval.py writes it (job.summarize, job.write_outputs)."""
    n, c = len(labels), len(NAMES)
    video = np.repeat(np.arange(n), views_per_video)
    logits = np.zeros((len(video), c), np.float32)
    logits[np.arange(len(video)), np.repeat(predicted, views_per_video)] = 5.0
    views = {
        "logits": logits,
        "label": np.repeat(labels, views_per_video).astype(np.int32),
        "video_index": video.astype(np.int32),
        "clip_index": np.tile(np.arange(views_per_video), n).astype(np.int32),
        "crop_index": np.zeros(len(video), np.int32),
        "decode_failed": np.zeros(len(video), bool),
    }
    dataset = EvalDataset(
        None,
        protocol=EvalProtocol(views_per_video, 1, 48, 32, "test"),
        video_ids=[f"v{i}" for i in range(n)],
        labels=labels,
        num_batches=1,
        batch_size=len(video),
        process_index=0,
        process_count=1,
    )
    output = job.summarize(views, dataset, c, NAMES)
    job.write_outputs(str(directory), output)
    return output


@pytest.fixture
def workdir(tmp_path):
    writer = MetricWriter(str(tmp_path), enabled=True)
    for step in range(1, 7):
        writer.write(
            step,
            {"loss": 2.0 / step, "accuracy": step / 7, "learning_rate": 0.1 * step},
            prefix="train/",
        )
        if step % 3 == 0:
            writer.write(step, {"top1": 0.2 * step / 3, "loss": 1.0}, prefix="val/")
    writer.close()
    # An older evaluation of the same protocol, which the report must pass over.
    write_eval(tmp_path / "eval" / "test" / "step_3", LABELS, LABELS)
    write_eval(tmp_path / "eval" / "test" / "step_6", LABELS, PREDICTED)
    return tmp_path


def test_numbers_of_the_confusion():
    counts = report.confusion_matrix(np.array(LABELS), np.array(PREDICTED), 3)
    np.testing.assert_allclose(report.per_class_accuracy(counts), [3 / 4, 1 / 3, 2 / 3])
    pairs = report.most_confused_pairs(counts, 2)
    assert (pairs[0].true, pairs[0].predicted, pairs[0].count) == (1, 2, 2)
    assert pairs[0].rate == pytest.approx(2 / 3)
    # Ties on count: the larger share of its class first (jump->walk 1/3 > walk->run 1/4).
    assert (pairs[1].true, pairs[1].predicted) == (2, 0)
    empty = report.per_class_accuracy(np.zeros((2, 2), np.int64))
    assert np.isnan(empty).all()


def test_report_of_a_run_with_few_classes(workdir):
    written = report.write_report(str(workdir))
    out = workdir / "report"
    for name in ("training_curves.png", "confusion_test_step_6.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert "eval/test/step_6" in md and "step_3`" not in md  # the latest step only
    assert "- top-1 60.00%, top-5 100.00%, mean class accuracy 58.33%" in md
    assert "| walk | 75.00% | 4 |" in md and "| run | 33.33% | 3 |" in md
    assert "| run | jump | 2 | 66.67% |" in md.split("Most confused pairs:")[1]
    assert "final train loss 0.3333" in md and "peak 0.6, final 0.6" in md
    assert "final 40.00% (step 6), best 40.00% (step 6)" in md
    assert written.evals[0].metrics["top1"] == pytest.approx(0.6)


def test_many_classes_get_pairs_and_per_class_figures_via_the_cli(workdir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "squeezetime_jax.report",
            str(workdir),
            "--matrix_classes=2",
            "--out",
            str(workdir / "r"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = workdir / "r"
    for name in ("confused_pairs_test_step_6.png", "per_class_accuracy_test_step_6.png"):
        assert (out / name).read_bytes()[:8] == PNG
        assert str(out / name) in result.stdout
    assert not (out / "confusion_test_step_6.png").exists()
    md = (out / "report.md").read_text()
    # Lowest accuracy first.
    rows = [r for r in md.splitlines() if r.startswith("| ") and r.endswith(" |")]
    assert rows.index("| run | 33.33% | 3 |") < rows.index("| jump | 66.67% | 3 |")


def test_nothing_to_report_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        report.write_report(str(tmp_path))
