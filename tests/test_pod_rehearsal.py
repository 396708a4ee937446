"""The pod rehearsal's short form: 2 processes x 2 CPU devices on a GCS emulator.

eval.py --watch beside the run evaluates each checkpoint once; SIGTERM to one
process: both save the same step and exit; SIGKILL of the chief mid-save: its
workers die, the restart resumes from the last complete step and ends bit-identical
to an uninterrupted run; a restart on 1 process x 4 devices ends within float32
noise of it (scripts/pod_rehearsal.py has the full form, with more layouts).
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
    assert outcome["watch"]["evaluated"] == [3, 6]
    kill9 = outcome["kill9"]
    assert kill9["same_layout"] == "bit-identical"
    assert kill9["child_processes_killed_with_it"] >= 1  # the Grain worker at least
    assert kill9["resumed_from"] < int(kill9["seen_in_progress"][0])
    moved = outcome["other_layouts"]
    assert moved["relative_param_difference"] < 0.01
    assert moved["max_abs_param_difference"] < 1e-4  # 3 steps: little room to grow
