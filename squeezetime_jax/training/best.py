"""The best validation checkpoint, kept beside the last ones (`config.save_best`).

The release keeps the checkpoint of the best validation accuracy (mmengine's
`save_best='auto'`: the first metric, top-1). Here, after every validation whose
top-1 beats the best so far, the model's variables are written as a converted
checkpoint directory (checkpoints.converted: `restore`, eval.py, predict and export
read it) under WORKDIR/best/<step>, the previous best is removed, and
WORKDIR/best/best.json names the step, the metric and its value. A resumed run
reads best.json and keeps comparing against it.

    python eval.py --checkpoint WORKDIR/best/<step> --protocol test
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from squeezetime_jax import files
from squeezetime_jax.checkpoints import converted
from squeezetime_jax.evaluation import scoring

BEST_DIR = "best"
POINTER = "best.json"


def video_metrics(
    views: Mapping[str, np.ndarray], num_videos: int, views_per_video: int, num_crops: int
) -> dict[str, float]:
    """Video-level top-1/top-5 of a multi-view validation: softmax averaged over each
    video's views (mmaction2's average_clips='prob'), as the release validates."""
    labels = np.zeros(num_videos, np.int32)
    labels[np.asarray(views["video_index"])] = np.asarray(views["label"])
    scores = scoring.average_views(dict(views), labels, views_per_video, num_crops)
    return scoring.accuracies(scores.probabilities, labels)


def read_best(workdir: str) -> dict[str, Any] | None:
    pointer = files.join(workdir, BEST_DIR, POINTER)
    return files.read_json(pointer) if files.isfile(pointer) else None


def is_better(value: float, best: Mapping[str, Any] | None) -> bool:
    return bool(np.isfinite(value)) and (best is None or value > float(best["value"]))


def save_best(
    workdir: str,
    step: int,
    variables: Mapping[str, Any],
    model_config,
    metric: str,
    value: float,
) -> dict[str, Any]:
    """Writes WORKDIR/best/<step> (every process takes part in the array save) and
    moves the pointer to it; returns the new pointer."""
    root = files.join(files.absolute(workdir), BEST_DIR)
    directory = files.join(root, str(step))
    previous = read_best(workdir)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(
        files.join(directory, converted.VARIABLES_DIR),
        {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}},
        force=True,
    )
    checkpointer.wait_until_finished()
    checkpointer.close()
    pointer = {
        "step": int(step),
        "metric": metric,
        "value": float(value),
        "path": directory,
    }
    if jax.process_index() == 0:
        files.write_text(
            files.join(directory, converted.CONFIG_FILE),
            model_config.to_json(indent=2) + "\n",
        )
        files.write_json(
            files.join(directory, converted.REPORT_FILE),
            {
                "format": converted.FORMAT,
                "source": f"{workdir} step {step}",
                "notes": [f"best validation {metric} {value:.4f} at step {step}"],
            },
        )
        files.write_json(files.join(root, POINTER), pointer)
        if previous and previous.get("path") and previous["path"] != directory:
            if files.exists(previous["path"]):
                files.remove_tree(previous["path"])
    return pointer
