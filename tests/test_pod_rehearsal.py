"""The pod rehearsal's short form: 2 processes x 2 CPU devices on a GCS emulator.

SIGTERM to one process: both save the same step and exit; the restart on the same
layout ends bit-identical to an uninterrupted run (scripts/pod_rehearsal.py has
the full form, with other layouts).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.training_utils import REPO

pytest.importorskip("gcsfs", reason="the gcs extra is not installed")
pytest.importorskip("gcp_storage_emulator", reason="the test extra is not installed")


def test_short_rehearsal(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "pod_rehearsal.py"),
            "--short",
            f"--logs={tmp_path / 'logs'}",
            f"--report={report}",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    outcome = json.loads(report.read_text())
    assert outcome["preempt"]["exit_seconds"] < 120
    assert 0 < outcome["preempt"]["step"] < outcome["total_steps"]
    assert outcome["same_layout"] == "bit-identical"
