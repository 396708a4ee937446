"""The demo job: generate -> prepare -> train.py -> eval.py (ordered, shuffled) -> .pth ->
mobile export (float32 and int8 ExecuTorch, int8 checked on the test videos) -> report.

Every stage but generation and the shuffled control runs the project's own command
line in a subprocess (the same path a Kinetics user takes), with its full output in
WORKDIR/logs/ and its progress on the terminal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

from squeezetime_jax.configs import demo as demo_config
from squeezetime_jax.demo import generate, scenes
from squeezetime_jax.evaluation import report

# The demo's config, named by path for the train and eval commands (--config).
CONFIG = demo_config.__file__

# Videos per split: the full demo, and the smoke version of --quick and the tests.
FULL_COUNTS = {"train": 800, "val": 100, "test": 200}
QUICK_COUNTS = {"train": 16, "val": 8, "test": 8}
STAGES = (
    "Generating videos",
    "Preparing the dataset",
    "Training",
    "Evaluating (test protocol)",
    "Evaluating with shuffled frames",
    "Converting to PyTorch",
    "Exporting for mobile",
    "Writing the report",
)


@dataclasses.dataclass
class DemoPaths:
    workdir: str

    def __post_init__(self):
        self.workdir = os.path.abspath(self.workdir)

    def _in(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    @property
    def data(self) -> str:
        return self._in("data")

    @property
    def prepared(self) -> str:
        return self._in("prepared")

    @property
    def train(self) -> str:
        return self._in("train")

    @property
    def eval_test(self) -> str:
        return self._in("eval", "test_10x3")

    @property
    def eval_shuffled(self) -> str:
        return self._in("eval", "test_10x3_shuffled")

    @property
    def logs(self) -> str:
        return self._in("logs")

    @property
    def report(self) -> str:
        return self._in("report")

    @property
    def mobile(self) -> str:
        return self._in("report", "mobile")

    @property
    def pth(self) -> str:
        return self._in("report", "squeezetime_demo.pth")


class StageError(RuntimeError):
    """A stage's command failed; the message names its log file."""


def banner(index: int, title: str) -> None:
    line = f"[{index}/{len(STAGES)}] {title}"
    print(f"\n{'=' * 78}\n{line}\n{'=' * 78}", flush=True)


def run_command(cmd: list[str], log_path: str, *, on_line=None, echo=True) -> None:
    """Runs `cmd`; stdout+stderr go to `log_path` and, line by
    line, to `on_line` (or the terminal). tqdm's carriage-return updates are shown live.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        # Bytes, split on both \r and \n by hand: text mode would turn tqdm's \r into \n.
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        pending = b""
        while chunk := os.read(proc.stdout.fileno(), 4096):
            log.write(chunk.decode("utf-8", "replace"))
            log.flush()
            pending += chunk
            while (cut := _first_break(pending)) >= 0:
                line, pending = (
                    pending[: cut + 1].decode("utf-8", "replace"),
                    pending[cut + 1 :],
                )
                if on_line is not None:
                    on_line(line.rstrip("\r\n"))
                elif echo and not _is_log_noise(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
        code = proc.wait()
    if code != 0:
        tail = open(log_path, encoding="utf-8").read()[-3000:]
        raise StageError(
            f"{' '.join(cmd[:3])} ... failed (exit {code}); full log: {log_path}\n{tail}"
        )


def _first_break(data: bytes) -> int:
    found = [i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0]
    return min(found) if found else -1


_ABSL_LINE = re.compile(r"^[IWE]\d{4} \d")


def _is_log_noise(line: str) -> bool:
    """absl/Orbax INFO and WARNING records: kept in the log file, not on the terminal."""
    return bool(_ABSL_LINE.match(line)) and not line.startswith("E")


class TrainingProgress:
    """A progress bar fed by the trainer's metrics.jsonl, the structured record of its
    steps and validations (read whenever the trainer prints); validations are shown
    above the bar. The trainer's own output goes to logs/train.log."""

    def __init__(self, metrics_path: str, total_steps: int):
        import tqdm

        self.metrics_path = metrics_path
        self._offset = 0
        self.bar = tqdm.tqdm(
            total=total_steps, desc="train", unit="step", dynamic_ncols=True
        )

    def __call__(self, line: str) -> None:
        del line  # a sign of progress; what happened is read from the metrics file
        for record in self._new_records():
            step = int(record.get("step", self.bar.n))
            if "loss" in record:
                self.bar.update(max(step - self.bar.n, 0))
                self.bar.set_postfix(
                    loss=f"{record['loss']:.4f}", acc=f"{record.get('accuracy', 0):.3f}"
                )
            validation = {k[4:]: v for k, v in record.items() if k.startswith("val/")}
            if validation:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(validation.items()))
                self.bar.write(f"step {step} validation: {shown}")

    def _new_records(self) -> list[dict]:
        try:
            with open(self.metrics_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def close(self):
        self(line="")
        self.bar.close()


def _python() -> str:
    return sys.executable


def stage_prepare(paths: DemoPaths, info: dict) -> None:
    lists = [f"{split}={path}" for split, path in info["lists"].items()]
    cmd = [
        _python(),
        "-m",
        "squeezetime_jax.data.prepare",
        "--root",
        info["root"],
        "--out",
        paths.prepared,
        "--classes",
        info["classes"],
        "--workers",
        "2",
        "--overwrite",
    ]
    for spec in lists:
        cmd += ["--list", spec]
    run_command(cmd, os.path.join(paths.logs, "prepare.log"))


def config_arg(quick: bool) -> str:
    return CONFIG + _variant(quick)


def _variant(quick: bool) -> str:
    return ":quick=true" if quick else ""


# What a demo run records in its training directory, so that a later run resumes
# only its own training (a killed run), never one with other settings.
RUN_RECORD = "demo_run.json"


def _training_settings(quick: bool, overrides: dict | None) -> dict:
    return {
        "config": "configs/demo.py" + _variant(quick),
        "overrides": {k: str(v) for k, v in sorted((overrides or {}).items())},
    }


def check_training_dir(
    paths: DemoPaths, quick: bool, overrides: dict | None = None
) -> bool:
    """True when `paths.train` holds this run's earlier training (it resumes), False when
    there is none; StageError when it holds training with other or unknown settings."""
    if not os.path.isdir(paths.train) or not os.listdir(paths.train):
        return False
    wanted = _training_settings(quick, overrides)
    try:
        with open(os.path.join(paths.train, RUN_RECORD), encoding="utf-8") as f:
            recorded = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        recorded = None
    if recorded != wanted:
        raise StageError(
            f"{paths.train} holds training from another run (settings: "
            f"{recorded or 'not recorded'}; this run: {wanted}), and resuming it would evaluate "
            f"that model. Remove {paths.train} or choose another --workdir."
        )
    return True


def stage_train(paths: DemoPaths, quick: bool, overrides: dict | None = None) -> None:
    os.makedirs(paths.train, exist_ok=True)
    with open(os.path.join(paths.train, RUN_RECORD), "w", encoding="utf-8") as f:
        json.dump(_training_settings(quick, overrides), f)
    cmd = [
        _python(),
        "-m",
        "squeezetime_jax.train",
        f"--config={config_arg(quick)}",
        f"--workdir={paths.train}",
        f"--config.data.data_dir={paths.prepared}",
    ]
    cmd += [f"--config.{k}={v}" for k, v in (overrides or {}).items()]
    config = demo_config.get_config("quick=true" if quick else None)
    total_steps = int((overrides or {}).get("total_steps", config.total_steps))
    progress = TrainingProgress(os.path.join(paths.train, "metrics.jsonl"), total_steps)
    try:
        run_command(cmd, os.path.join(paths.logs, "train.log"), on_line=progress)
    finally:
        progress.close()


def stage_eval(paths: DemoPaths, quick: bool) -> dict:
    cmd = [
        _python(),
        "-m",
        "squeezetime_jax.evaluate",
        f"--config={config_arg(quick)}",
        f"--checkpoint={paths.train}",
        f"--data={paths.prepared}",
        "--protocol=test",
        f"--output_dir={paths.eval_test}",
    ]
    run_command(cmd, os.path.join(paths.logs, "eval_test.log"))
    with open(os.path.join(paths.eval_test, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def stage_shuffled(paths: DemoPaths, quick: bool) -> dict:
    # In this process: eval.py has no frame-shuffling option, and the control must use
    # exactly its data, protocol and aggregation (squeezetime_jax.evaluation.job).
    from squeezetime_jax.demo import shuffled

    config = demo_config.get_config("quick=true" if quick else None)
    output = shuffled.evaluate_shuffled(
        config,
        paths.train,
        data_dir=paths.prepared,
        protocol="test",
        output_dir=paths.eval_shuffled,
    )
    return output.metrics


def stage_convert(paths: DemoPaths) -> None:
    cmd = [_python(), "-m", "squeezetime_jax.convert", "to-torch", paths.train, paths.pth]
    run_command(cmd, os.path.join(paths.logs, "convert.log"))


# The export's own results; its libraries' warnings stay in logs/export.log.
_EXPORT_LINE = re.compile(r"^(exporting |int8 |executorch|squeezetime\S*: XNNPACK|error)")


def _show_export_line(line: str) -> None:
    if _EXPORT_LINE.match(line):
        print("  " + line, flush=True)


def stage_export(paths: DemoPaths, quick: bool) -> dict | None:
    """float32 and int8 ExecuTorch programs; int8 calibrated on training clips and
    checked against float32 on the test videos. None when the export extra is missing."""
    from squeezetime_jax.export.mobile import MissingExtraError, require_extras

    try:
        require_extras(["executorch"])
    except MissingExtraError as error:
        print(f"  skipped: {error}")
        return None
    config = demo_config.get_config("quick=true" if quick else None)
    size = config.data.test.crop_size
    cmd = [
        _python(),
        "-m",
        "squeezetime_jax.export",
        "--checkpoint",
        paths.train,
        "--format",
        "executorch",
        "--int8",
        "--out",
        paths.mobile,
        "--frames",
        str(config.model.num_frames),
        "--size",
        str(size),
        "--frame_interval",
        str(config.data.frame_interval),
        "--short_side",
        str(config.data.test.short_side),
        "--calibration_data",
        paths.prepared,
        "--calibration_split",
        config.data.train.split,
        "--check_data",
        paths.prepared,
        "--check_split",
        config.data.test.split,
    ]
    run_command(cmd, os.path.join(paths.logs, "export.log"), on_line=_show_export_line)
    with open(
        os.path.join(paths.mobile, "squeezetime_export_info.json"), encoding="utf-8"
    ) as f:
        held_out = json.load(f)["int8_vs_float32_held_out"][0]
    summary = {
        k: held_out[k]
        for k in ("clips", "agreement", "top1", "float32_top1", "accuracy_drop")
    }
    summary["path"] = os.path.join(paths.mobile, held_out["path"])  # named in its dir
    return summary


def stage_report(
    paths: DemoPaths,
    test: dict,
    shuffled_metrics: dict,
    timings: dict,
    quick: bool,
    int8: dict | None = None,
) -> dict:
    os.makedirs(paths.report, exist_ok=True)
    chance = 1.0 / len(scenes.CLASSES)
    records = report.read_metrics(os.path.join(paths.train, report.METRICS_JSONL))
    ordered = report.load_eval_output(paths.eval_test, "test 10x3")
    shuffled_output = report.load_eval_output(paths.eval_shuffled, "test 10x3, shuffled")
    confusion = report.plot_confusion(
        [ordered.confusion(), shuffled_output.confusion()],
        [
            f"test, 10 clips x 3 crops: top-1 {test['top1']:.1%}",
            f"same, frames shuffled: top-1 {shuffled_metrics['top1']:.1%} (chance {chance:.0%})",
        ],
        ordered.class_names,
        os.path.join(paths.report, "confusion_matrix.png"),
    )
    # report.md: the numbers behind the figures (the library's, as for any run).
    markdown = report.write_report(
        paths.train,
        out_dir=paths.report,
        eval_dirs={
            "test 10x3": paths.eval_test,
            "test 10x3, frames shuffled": paths.eval_shuffled,
        },
        confusion_figures=False,
        extra_figures={"confusion matrices": os.path.basename(confusion)},
        notes=[" ".join(_int8_line(int8).split())],
        title="SqueezeTime demo",
    ).markdown
    curves = report.plot_training_curves(  # the demo's curves: with test and chance lines
        records,
        os.path.join(paths.report, "training_curves.png"),
        chance=chance,
        test_top1=test["top1"],
        shuffled_top1=shuffled_metrics["top1"],
    )
    example = _example_video(paths)
    # The .pth carries the class names and clip settings of the training run.
    predict = (
        f"{_display_python()} -m squeezetime_jax.predict --checkpoint {paths.pth} "
        f"{example['path']}"
    )
    summary = {
        "quick": quick,
        "classes": list(scenes.CLASSES),
        "chance": chance,
        "test_10x3": {
            k: test[k] for k in ("top1", "top5", "mean_class_accuracy", "num_videos")
        },
        "test_10x3_shuffled_frames": {
            k: shuffled_metrics[k]
            for k in ("top1", "top5", "mean_class_accuracy", "num_videos")
        },
        "int8_vs_float32_test_centre_clips": int8,
        "seconds": timings,
        "files": {
            "training_curves": curves,
            "confusion_matrix": confusion,
            "report": markdown,
            "metrics_test": os.path.join(paths.eval_test, "metrics.json"),
            "metrics_shuffled": os.path.join(paths.eval_shuffled, "metrics.json"),
            "pytorch_checkpoint": paths.pth,
            "training_workdir": paths.train,
            "logs": paths.logs,
        },
        "example_video": example,
        "predict_command": predict,
    }
    report.write_json(os.path.join(paths.report, "summary.json"), summary)
    return summary


def _example_video(paths: DemoPaths) -> dict:
    with open(os.path.join(paths.data, "test_list.txt"), encoding="utf-8") as f:
        rel, label = f.readline().rsplit(maxsplit=1)
    return {
        "path": os.path.join(paths.data, "videos", rel),
        "label": scenes.CLASSES[int(label)],
    }


def _display_python() -> str:
    here = os.path.relpath(sys.executable, os.getcwd())
    return here if not here.startswith("..") else sys.executable


def run_demo(
    workdir: str,
    *,
    quick: bool = False,
    counts: dict | None = None,
    train_overrides: dict | None = None,
) -> dict:
    """Runs every stage into `workdir` and returns the report summary (also report/summary.json)."""
    paths = DemoPaths(workdir)
    counts = counts or (QUICK_COUNTS if quick else FULL_COUNTS)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    resumes = check_training_dir(paths, quick, train_overrides)  # before any work

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 1)
        return result

    banner(
        1,
        f"{STAGES[0]}: {sum(counts.values())} H.264 mp4 files, {len(scenes.CLASSES)} "
        f"classes that differ only in temporal order",
    )
    for i, name in enumerate(scenes.CLASSES):
        print(f"  class {i}: {name}")
    info = timed("generate", generate.generate_dataset, paths.data, counts)
    print(f"  videos in {info['root']}; lists and classes.txt in {paths.data}")
    banner(2, f"{STAGES[1]} (python -m squeezetime_jax.data.prepare)")
    timed("prepare", stage_prepare, paths, info)
    banner(3, f"{STAGES[2]} (train.py --config configs/demo.py{_variant(quick)})")
    if resumes:
        print(
            f"  {paths.train} holds this demo's earlier training: it resumes from the latest "
            f"checkpoint (remove the directory to train afresh)"
        )
    timed("train", stage_train, paths, quick, train_overrides)
    banner(4, f"{STAGES[3]}: eval.py, 10 clips x 3 crops per test video")
    test = timed("eval_test", stage_eval, paths, quick)
    banner(5, f"{STAGES[4]}: the same views, each clip's frames in random order")
    shuffled_metrics = timed("eval_shuffled", stage_shuffled, paths, quick)
    print(
        f"  top-1 with shuffled frames: {shuffled_metrics['top1']:.4f} "
        f"(chance {1 / len(scenes.CLASSES):.4f})"
    )
    banner(6, f"{STAGES[5]} (python -m squeezetime_jax.convert to-torch)")
    timed("convert", stage_convert, paths)
    print(f"  wrote {paths.pth}")
    banner(
        7,
        f"{STAGES[6]} (python -m squeezetime_jax.export --int8): int8 calibrated on "
        "training clips, checked on the test videos",
    )
    int8 = timed("export", stage_export, paths, quick)
    banner(8, STAGES[7])
    timings["total"] = round(time.perf_counter() - start, 1)
    summary = stage_report(paths, test, shuffled_metrics, timings, quick, int8)
    print_summary(summary)
    return summary


def _int8_line(int8: dict | None) -> str:
    if not int8:
        return "int8 ExecuTorch export: skipped (export extra not installed)"
    return (
        f"int8 ExecuTorch, test centre clips:        top-1 {int8['top1']:.1%} vs float32 "
        f"{int8['float32_top1']:.1%}, agreement {int8['agreement']:.1%} "
        f"({int8['clips']} clips)"
    )


def print_summary(summary: dict) -> None:
    files = summary["files"]
    t, s = summary["test_10x3"], summary["test_10x3_shuffled_frames"]
    print(
        f"""
Test videos (held out), 10 clips x 3 crops: top-1 {t["top1"]:.1%}, mean class {t["mean_class_accuracy"]:.1%}
Same videos, frames shuffled:               top-1 {s["top1"]:.1%} (chance {summary["chance"]:.0%})
{_int8_line(summary.get("int8_vs_float32_test_centre_clips"))}
Total time: {summary["seconds"]["total"]:.0f} s ({", ".join(f"{k} {v:.0f} s" for k, v in summary["seconds"].items() if k != "total")})

Report:
  training curves     {files["training_curves"]}
  confusion matrices  {files["confusion_matrix"]}
  metrics             {files["metrics_test"]}
                      {files["metrics_shuffled"]}
  PyTorch checkpoint  {files["pytorch_checkpoint"]}
  report.md           {files["report"]}
  summary             {os.path.join(os.path.dirname(files["training_curves"]), "summary.json")}
  logs                {files["logs"]}

Classify one of the test videos (true class: {summary["example_video"]["label"]}):
  {summary["predict_command"]}
""",
        flush=True,
    )
