"""The demo's report figures: training curves and confusion matrices, as PNG files.

Needs matplotlib (the `demo` extra); it is imported only when a figure is drawn.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np


def read_metrics(path: str) -> list[dict]:
    """The records of a trainer's metrics.jsonl, in file order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def series(records: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold `key`."""
    rows = [(r["step"], r[key]) for r in records if key in r]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows)
    return np.asarray(steps, float), np.asarray(values, float)


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> np.ndarray:
    """counts[i, j]: videos of class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "the demo report needs matplotlib: pip install -e '.[demo]'"
        ) from error
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(
    records: Sequence[dict],
    path: str,
    *,
    chance: float | None = None,
    test_top1: float | None = None,
    shuffled_top1: float | None = None,
) -> str:
    """Loss, accuracy (train and validation) and learning rate against the step."""
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
        axes[1].plot(steps_val, top1, "o-", label="validation top-1 (1 clip)")
    if test_top1 is not None:
        axes[1].axhline(
            test_top1, color="tab:green", ls="--", label=f"test 10x3: {test_top1:.1%}"
        )
    if shuffled_top1 is not None:
        axes[1].axhline(
            shuffled_top1,
            color="tab:red",
            ls="--",
            label=f"test, frames shuffled: {shuffled_top1:.1%}",
        )
    if chance is not None:
        axes[1].axhline(chance, color="gray", ls=":", label=f"chance: {chance:.0%}")
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(
    matrices: Sequence[np.ndarray],
    titles: Sequence[str],
    class_names: Sequence[str],
    path: str,
) -> str:
    """Row-normalized confusion matrices side by side, with the counts written in."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(matrices), figsize=(6.2 * len(matrices), 5.6), squeeze=False
    )
    names = [n.replace("-", "\n") for n in class_names]
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
                    fontsize=10,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def predictions_confusion(predictions_npz: str) -> tuple[np.ndarray, list[str]]:
    """Confusion matrix and class names from an eval.py predictions.npz."""
    with np.load(predictions_npz) as f:
        probabilities, labels, readable = f["probabilities"], f["labels"], f["readable"]
        names = (
            [str(n) for n in f["class_names"]]
            if "class_names" in f
            else [str(i) for i in range(probabilities.shape[1])]
        )
    predicted = probabilities.argmax(axis=1)
    return confusion_matrix(
        labels[readable], predicted[readable], probabilities.shape[1]
    ), names


def write_json(path: str, payload: dict) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    return path
