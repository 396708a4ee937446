"""Reports of any run: training curves from metrics.jsonl, and confusion from eval outputs.

`write_report(workdir)` (the library behind `python -m squeezetime_jax.report`) writes
into WORKDIR/report (or `out_dir`):

  training_curves.png        loss, accuracy and learning rate against the step
  confusion_NAME.png         per eval output with at most `matrix_classes` classes:
                             the row-normalized confusion matrix with its counts
  confused_pairs_NAME.png    with more classes (Kinetics-400): the most confused
  per_class_accuracy_NAME.png  (true, predicted) pairs, and every class's accuracy sorted
  report.md                  the numbers: final and best metrics, per-class accuracy,
                             the most confused pairs, and links to the figures

Eval outputs are the directories `evaluation.job.write_outputs` fills (metrics.json and
predictions.npz); under a training workdir eval.py puts them in eval/PROTOCOL/step_N,
and the report takes each protocol's latest step. Paths may be local or gs://.

Needs matplotlib (the `report` extra); it is imported only when a figure is drawn.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
from typing import Mapping, Sequence

import numpy as np

from squeezetime_jax import files

METRICS_JSONL = "metrics.jsonl"
EVAL_METRICS = "metrics.json"
EVAL_PREDICTIONS = "predictions.npz"
REPORT_DIR = "report"
MARKDOWN = "report.md"
# Up to this many classes a confusion matrix is readable with its counts written in.
MATRIX_CLASSES = 30
TOP_PAIRS = 20


# ---------------------------------------------------------------- reading


def read_metrics(path: str) -> list[dict]:
    """The records of a trainer's metrics.jsonl, in file order."""
    records = []
    for number, line in enumerate(files.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
    return records


def series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold `key`."""
    rows = [(r["step"], r[key]) for r in records if key in r]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows)
    return np.asarray(steps, float), np.asarray(values, float)


@dataclasses.dataclass
class EvalResult:
    """One eval output: its metrics.json and per-video labels and predictions."""

    name: str
    directory: str
    metrics: dict
    labels: np.ndarray  # readable videos only
    predicted: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.labels, self.predicted, self.num_classes)


def load_eval_output(directory: str, name: str | None = None) -> EvalResult:
    """Reads metrics.json and predictions.npz of an eval output directory."""
    npz_path = files.join(directory, EVAL_PREDICTIONS)
    if not files.exists(npz_path):
        raise FileNotFoundError(f"{npz_path}: no eval predictions (eval.py --output_dir)")
    with np.load(io.BytesIO(files.read_bytes(npz_path))) as f:
        missing = [k for k in ("probabilities", "labels", "readable") if k not in f]
        if missing:
            raise ValueError(f"{npz_path}: missing array(s) {', '.join(missing)}")
        probabilities, labels = f["probabilities"], f["labels"]
        readable = f["readable"].astype(bool)
        names = (
            [str(n) for n in f["class_names"]]
            if "class_names" in f
            else [str(i) for i in range(probabilities.shape[1])]
        )
    metrics_path = files.join(directory, EVAL_METRICS)
    metrics = files.read_json(metrics_path) if files.exists(metrics_path) else {}
    return EvalResult(
        name=name or _default_name(directory),
        directory=directory,
        metrics=metrics,
        labels=np.asarray(labels[readable], np.int64),
        predicted=np.asarray(probabilities[readable].argmax(axis=1), np.int64),
        class_names=names,
    )


def _default_name(directory: str) -> str:
    parts = [p for p in re.split(r"[/\\]", directory.rstrip("/\\")) if p]
    if len(parts) >= 2 and re.fullmatch(r"step_\d+", parts[-1]):
        return f"{parts[-2]}_{parts[-1]}"
    return parts[-1] if parts else "eval"


def find_eval_outputs(workdir: str) -> list[str]:
    """Eval output directories in a run: WORKDIR itself if it is one, else those under
    WORKDIR/eval, keeping only the latest step_N of each protocol."""
    if files.exists(files.join(workdir, EVAL_PREDICTIONS)):
        return [files.absolute(workdir)]
    root = files.join(workdir, "eval")
    if not files.isdir(root):
        return []
    found = sorted(
        p[: -len(EVAL_PREDICTIONS) - 1]
        for p in files.walk_files(root)
        if p.endswith("/" + EVAL_PREDICTIONS) or p.endswith("\\" + EVAL_PREDICTIONS)
    )
    latest: dict[str, tuple[int, str]] = {}
    for directory in found:
        parent, _, leaf = directory.rstrip("/").rpartition("/")
        match = re.fullmatch(r"step_(\d+)", leaf)
        key, step = (parent, int(match.group(1))) if match else (directory, -1)
        if key not in latest or step > latest[key][0]:
            latest[key] = (step, directory)
    return sorted(d for _, d in latest.values())


# ---------------------------------------------------------------- numbers


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> np.ndarray:
    """counts[i, j]: videos of class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Recall of each class (diagonal / row sum); NaN for a class with no videos."""
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(counts) / np.maximum(totals, 1), np.nan)


@dataclasses.dataclass(frozen=True)
class ConfusedPair:
    true: int
    predicted: int
    count: int
    rate: float  # of the true class's videos


def most_confused_pairs(counts: np.ndarray, k: int = TOP_PAIRS) -> list[ConfusedPair]:
    """The k off-diagonal (true, predicted) cells with the most videos (ties: the higher
    share of the true class first, then class order)."""
    totals = counts.sum(axis=1)
    cells = [(int(counts[i, j]), i, j) for i, j in zip(*np.nonzero(counts)) if i != j]
    cells.sort(key=lambda c: (-c[0], -c[0] / max(int(totals[c[1]]), 1), c[1], c[2]))
    return [ConfusedPair(i, j, n, n / max(int(totals[i]), 1)) for n, i, j in cells[:k]]


# ---------------------------------------------------------------- figures


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "report figures need matplotlib: pip install -e '.[report]'"
        ) from error
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    return files.write_bytes(path, buffer.getvalue())


def plot_training_curves(
    records: Sequence[dict],
    path: str,
    *,
    chance: float | None = None,
    test_top1: float | None = None,
    shuffled_top1: float | None = None,
    marks: Mapping[str, float] | None = None,
) -> str:
    """Loss, accuracy (train and validation) and learning rate against the step.

    `marks` draws labelled horizontal lines on the accuracy plot (e.g. a test top-1);
    `test_top1`, `shuffled_top1` and `chance` are the demo's named ones.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    steps, loss = series(records, "train/loss")
    axes[0].plot(steps, loss, label="train loss")
    steps_val, loss_val = series(records, "val/loss")
    if len(steps_val):
        axes[0].plot(steps_val, loss_val, "o-", label="validation loss")
    axes[0].set_title("Loss")
    steps, acc = series(records, "train/accuracy")
    axes[1].plot(steps, acc, label="train (per batch)", alpha=0.7)
    steps_val, top1 = series(records, "val/top1")
    if len(steps_val):
        axes[1].plot(steps_val, top1, "o-", label="validation top-1")
    lines = []
    if test_top1 is not None:
        lines.append((f"test 10x3: {test_top1:.1%}", test_top1, "tab:green", "--"))
    if shuffled_top1 is not None:
        lines.append(
            (f"test, frames shuffled: {shuffled_top1:.1%}", shuffled_top1, "tab:red", "--")
        )
    for label, value in (marks or {}).items():
        lines.append((f"{label}: {value:.1%}", value, None, "--"))
    if chance is not None:
        lines.append((f"chance: {chance:.0%}", chance, "gray", ":"))
    for label, value, color, style in lines:
        axes[1].axhline(value, color=color, ls=style, label=label)
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("Accuracy")
    steps, lr = series(records, "train/learning_rate")
    axes[2].plot(steps, lr)
    axes[2].set_title("Learning rate")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    matrices: Sequence[np.ndarray],
    titles: Sequence[str],
    class_names: Sequence[str],
    path: str,
) -> str:
    """Row-normalized confusion matrices side by side, with the counts written in."""
    plt = _pyplot()
    n = len(class_names)
    cell = max(0.35, 5.6 / max(n, 1))
    side = max(5.6, cell * n)
    fig, axes = plt.subplots(
        1, len(matrices), figsize=((side + 0.6) * len(matrices), side), squeeze=False
    )
    names = [str(c).replace("-", "\n") for c in class_names]
    for ax, counts, title in zip(axes[0], matrices, titles):
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=10 if n <= 10 else 6,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(n), names, fontsize=7, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_confused_pairs(
    pairs: Sequence[ConfusedPair], class_names: Sequence[str], path: str, title: str = ""
) -> str:
    """Horizontal bars: the most confused (true -> predicted) pairs and their counts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.3 * max(len(pairs), 4) + 1.2))
    labels = [f"{class_names[p.true]} -> {class_names[p.predicted]}" for p in pairs]
    ax.barh(range(len(pairs)), [p.count for p in pairs], color="tab:red")
    ax.set_yticks(range(len(pairs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("videos (true -> predicted)")
    ax.set_title(title or "Most confused pairs", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class_accuracy(
    accuracy: np.ndarray, class_names: Sequence[str], path: str, title: str = ""
) -> str:
    """Every class's accuracy, sorted; the lowest 15 named."""
    plt = _pyplot()
    valid = np.flatnonzero(~np.isnan(accuracy))
    order = valid[np.argsort(accuracy[valid], kind="stable")]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.bar(range(len(order)), accuracy[order], width=1.0, color="tab:blue")
    for rank, c in enumerate(order[:15]):
        ax.annotate(
            str(class_names[c]),
            (rank, accuracy[c]),
            rotation=90,
            fontsize=6,
            xytext=(0, 3),
            textcoords="offset points",
            va="bottom",
            ha="center",
        )
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("classes, sorted by accuracy")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Per-class accuracy", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- the report


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "eval"


def _pct(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.2f}%"


def _training_section(records: list[dict], figure: str | None) -> list[str]:
    lines = ["## Training", ""]
    steps, loss = series(records, "train/loss")
    if len(steps):
        lines.append(f"- steps logged: {int(steps[-1])}, final train loss {loss[-1]:.4f}")
    _, acc = series(records, "train/accuracy")
    if len(acc):
        lines.append(f"- final train accuracy (last batch): {_pct(acc[-1])}")
    _, lr = series(records, "train/learning_rate")
    if len(lr):
        lines.append(f"- learning rate: peak {lr.max():.4g}, final {lr[-1]:.4g}")
    steps_val, top1 = series(records, "val/top1")
    if len(steps_val):
        best = int(np.argmax(top1))
        lines.append(
            f"- validation top-1: final {_pct(top1[-1])} (step {int(steps_val[-1])}), "
            f"best {_pct(top1[best])} (step {int(steps_val[best])})"
        )
    _, speed = series(records, "train/clips_per_second")
    if len(speed):
        lines.append(f"- training speed: median {np.median(speed):.1f} clips/s")
    if figure:
        lines += ["", f"![training curves]({figure})"]
    return lines + [""]


def _eval_section(
    result: EvalResult, figures: dict[str, str], top_pairs: int, per_class_rows: int
) -> list[str]:
    m, names = result.metrics, result.class_names
    counts = result.confusion()
    accuracy = per_class_accuracy(counts)
    lines = [f"## Evaluation: {result.name}", "", f"`{result.directory}`", ""]
    p = m.get("protocol") or {}
    if p:
        lines.append(
            f"- protocol: split {p.get('split')}, {p.get('num_clips')} clips x "
            f"{p.get('num_crops')} crops, short side {p.get('short_side')}, crop "
            f"{p.get('crop_size')}"
        )
    top1 = float(np.mean(result.labels == result.predicted)) if len(result.labels) else None
    lines.append(
        f"- top-1 {_pct(m.get('top1', top1))}, top-5 {_pct(m.get('top5'))}, mean class "
        f"accuracy {_pct(np.nanmean(accuracy) if len(result.labels) else None)}"
    )
    lines.append(
        f"- videos: {len(result.labels)} evaluated"
        + (f", {m['num_unreadable']} unreadable" if m.get("num_unreadable") else "")
        + f", {result.num_classes} classes"
    )
    lines.append("")
    for title, key in (
        ("confusion matrix", "confusion"),
        ("most confused pairs", "pairs"),
        ("per-class accuracy", "per_class"),
    ):
        if key in figures:
            lines += [f"![{title}]({figures[key]})", ""]
    pairs = most_confused_pairs(counts, top_pairs)
    if pairs:
        lines += [
            "Most confused pairs:",
            "",
            "| true | predicted | videos | share of true class |",
            "|---|---|---:|---:|",
        ]
        lines += [
            f"| {names[q.true]} | {names[q.predicted]} | {q.count} | {_pct(q.rate)} |"
            for q in pairs
        ]
        lines.append("")
    valid = np.flatnonzero(~np.isnan(accuracy))
    order = valid[np.argsort(accuracy[valid], kind="stable")]
    shown = order if len(order) <= per_class_rows else order[:per_class_rows]
    heading = (
        "Per-class accuracy:"
        if len(shown) == len(order)
        else f"Per-class accuracy, the {len(shown)} lowest of {len(order)}:"
    )
    totals = counts.sum(axis=1)
    lines += [heading, "", "| class | accuracy | videos |", "|---|---:|---:|"]
    lines += [f"| {names[c]} | {_pct(accuracy[c])} | {int(totals[c])} |" for c in shown]
    return lines + [""]


@dataclasses.dataclass
class Report:
    out_dir: str
    markdown: str  # path of report.md
    figures: list[str]
    evals: list[EvalResult]


def write_report(
    workdir: str,
    *,
    out_dir: str | None = None,
    eval_dirs: Sequence[str] | Mapping[str, str] | None = None,
    matrix_classes: int = MATRIX_CLASSES,
    top_pairs: int = TOP_PAIRS,
    per_class_rows: int = 30,
    curve_marks: Mapping[str, float] | None = None,
    confusion_figures: bool = True,
    extra_figures: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    title: str | None = None,
) -> Report:
    """Writes the figures and report.md of a run; returns what it wrote.

    `eval_dirs` (a list, or {name: directory}) replaces the eval outputs found under
    WORKDIR/eval. `extra_figures` ({title: file name in out_dir}) are linked in the
    markdown as they are (figures a caller drew itself); `notes` are lines added at
    the end.
    """
    out_dir = files.absolute(out_dir or files.join(workdir, REPORT_DIR))
    files.makedirs(out_dir)
    figures: list[str] = []
    sections: list[str] = [f"# {title or 'Report: ' + files.absolute(workdir)}", ""]

    metrics_path = files.join(workdir, METRICS_JSONL)
    if files.exists(metrics_path):
        records = read_metrics(metrics_path)
        curves = plot_training_curves(
            records, files.join(out_dir, "training_curves.png"), marks=curve_marks
        )
        figures.append(curves)
        sections += _training_section(records, "training_curves.png")

    if eval_dirs is None:
        named = [(None, d) for d in find_eval_outputs(workdir)]
    elif isinstance(eval_dirs, Mapping):
        named = list(eval_dirs.items())
    else:
        named = [(None, d) for d in eval_dirs]
    if not named and not figures:
        raise FileNotFoundError(
            f"{workdir}: nothing to report (no {METRICS_JSONL}, no eval output with "
            f"{EVAL_PREDICTIONS} under eval/); pass eval output directories explicitly"
        )
    evals = []
    for name, directory in named:
        result = load_eval_output(directory, name)
        evals.append(result)
        slug, local = _slug(result.name), {}
        if confusion_figures:
            counts = result.confusion()
            if result.num_classes <= matrix_classes:
                local["confusion"] = f"confusion_{slug}.png"
                plot_confusion(
                    [counts],
                    [f"{result.name}: top-1 {_pct(result.metrics.get('top1'))}"],
                    result.class_names,
                    files.join(out_dir, local["confusion"]),
                )
            else:
                local["pairs"] = f"confused_pairs_{slug}.png"
                plot_confused_pairs(
                    most_confused_pairs(counts, top_pairs),
                    result.class_names,
                    files.join(out_dir, local["pairs"]),
                    f"{result.name}: most confused pairs",
                )
                local["per_class"] = f"per_class_accuracy_{slug}.png"
                plot_per_class_accuracy(
                    per_class_accuracy(counts),
                    result.class_names,
                    files.join(out_dir, local["per_class"]),
                    f"{result.name}: per-class accuracy",
                )
            figures += [files.join(out_dir, f) for f in local.values()]
        sections += _eval_section(result, local, top_pairs, per_class_rows)
    for caption, name in (extra_figures or {}).items():
        sections += [f"![{caption}]({name})", ""]
    if notes:
        sections += ["## Notes", ""] + [f"- {line}" for line in notes] + [""]
    markdown = files.write_text(
        files.join(out_dir, MARKDOWN), "\n".join(sections).rstrip() + "\n"
    )
    return Report(out_dir, markdown, figures, evals)


def write_json(path: str, payload: dict) -> str:
    return files.write_text(path, json.dumps(payload, indent=2) + "\n")
