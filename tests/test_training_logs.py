"""Training logs: the smoothed ETA, profiler traces and quiet absl/Orbax logging."""

import glob
import os
import subprocess

import jax.numpy as jnp
import pytest

from squeezetime_jax.training import profiling
from squeezetime_jax.training.progress import TrainingClock, format_eta
from tests.training_utils import device_env, train_command


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_eta_excludes_paused_time_and_is_smoothed():
    t = FakeClock()
    clock = TrainingClock(0, smoothing=0.5, clock=t)
    assert clock.eta(100) is None and format_eta(None) == "?"
    t.now = 30.0  # 10 steps, compilation included: 3 s/step seeds the estimate
    assert clock.lap(10) == (10, 30.0)
    assert clock.eta(100) == pytest.approx(300.0)
    t.now = 40.0  # 10 steps at 1 s/step replace the seed outright
    clock.lap(20)
    assert clock.seconds_per_step == pytest.approx(1.0)
    with clock.paused():  # a validation of 50 s
        t.now = 90.0
    t.now = 110.0  # 10 steps in 20 s of training: 2 s/step, averaged with 1 s/step
    steps, seconds = clock.lap(30)
    assert (steps, seconds) == (10, pytest.approx(20.0))
    assert clock.seconds_per_step == pytest.approx(1.5)
    assert clock.eta(70) == pytest.approx(105.0)
    assert format_eta(3723.9) == "1:02:03"
    with pytest.raises(ValueError, match="smoothing"):
        TrainingClock(0, smoothing=0.0)


def test_profile_steps_parsing():
    assert profiling.parse_profile_steps("") is None
    assert profiling.parse_profile_steps("10, 5") == (10, 5)
    assert profiling.parse_profile_steps((3, 2)) == (3, 2)
    for bad in ("10", "a,b", "1,2,3", "-1,2", "4,0"):
        with pytest.raises(ValueError, match="profile_steps"):
            profiling.parse_profile_steps(bad)


def test_profiler_stages_a_remote_trace_locally_and_copies_it(tmp_path):
    """The path a gs:// workdir takes: trace to a local temporary, then copy up."""
    profiler = profiling.StepProfiler("1,1", str(tmp_path / "run"), stage_locally=True)
    profiler.before(0)  # not the window yet
    assert not profiler._active
    profiler.before(1)
    staged = profiler._local
    x = jnp.ones((64, 64))
    profiler.after(2, (x @ x).sum())
    assert not profiler._active and not os.path.exists(staged)
    traces = glob.glob(str(tmp_path / "run/profile/plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0


def test_train_run_writes_a_profile_and_logs_no_info_noise(tmp_path):
    workdir = tmp_path / "run"
    run = lambda *extra, **over: subprocess.run(  # noqa: E731
        train_command(workdir, total_steps=4, **over) + list(extra),
        env=device_env(1),
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = run(profile_steps="1,2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    traces = glob.glob(str(workdir / "profile/plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
    assert "profile of steps 2..3 written to" in result.stdout
    assert "step 4/4 |" in result.stdout and "| eta 0:00:00" in result.stdout
    log = result.stdout + result.stderr
    assert not [line for line in log.splitlines() if line.startswith("I")], log[-2000:]
    # --verbose_logs brings the INFO records back (a resume: Orbax logs the restore).
    verbose = run("--verbose_logs")
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    info = [line for line in verbose.stderr.splitlines() if line.startswith("I")]
    assert any("checkpoint" in line.lower() for line in info), verbose.stderr[-2000:]
