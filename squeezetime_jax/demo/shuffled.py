"""Evaluation with the frames of every view put in a random order.

The control experiment of the demo: the same checkpoint, data and protocol as
eval.py, but each view's frames are permuted (a fresh permutation per view, from a
fixed seed). A model that reads temporal order should fall to chance here.
"""

from __future__ import annotations

from typing import Iterator

import jax
import ml_collections
import numpy as np

from squeezetime_jax import data as data_lib
from squeezetime_jax.evaluation import evaluator as evaluation
from squeezetime_jax.evaluation import job as evaluate
from squeezetime_jax.evaluation.checkpoint import restore_for_eval
from squeezetime_jax.models import build_model
from squeezetime_jax.training import mesh as mesh_lib


def shuffle_frames(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B, T, H, W, C) -> the same clips, each with its T frames in a random order."""
    b, t = video.shape[:2]
    order = np.argsort(rng.random((b, t)), axis=1)
    return np.take_along_axis(video, order.reshape(b, t, 1, 1, 1), axis=1)


class ShuffledFrames:
    """An EvalDataset whose batches have their frames shuffled; otherwise the same."""

    def __init__(self, dataset: data_lib.EvalDataset, seed: int = 0):
        self._dataset = dataset
        self._seed = seed

    def __getattr__(self, name):
        return getattr(self._dataset, name)

    def __len__(self) -> int:
        return len(self._dataset)

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng([self._seed, self._dataset.process_index])
        for batch in self._dataset:
            yield {**batch, "video": shuffle_frames(np.asarray(batch["video"]), rng)}


def evaluate_shuffled(
    config: ml_collections.ConfigDict,
    checkpoint: str,
    *,
    data_dir: str | None = None,
    protocol="test",
    output_dir: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> evaluate.EvalOutput:
    """eval.py's evaluation of `checkpoint` on frame-shuffled views; writes its outputs.

    Returns the EvalOutput (metrics.json contents plus `frame_order` and `seed`).
    """
    mesh = mesh_lib.make_mesh(config.mesh_shape, config.mesh_axes)
    restored = restore_for_eval(checkpoint, mesh)
    data_config = evaluate.eval_data_config(
        config, restored.model_config, data_dir, restored.metadata
    )
    info = data_lib.dataset_info(data_config.data_dir, data_config.dataset)
    evaluator = evaluation.Evaluator(
        build_model(restored.model_config), mesh, config.eval_batch_size
    )
    dataset = ShuffledFrames(
        data_lib.make_eval_dataset(
            data_config,
            batch_size_per_process=config.eval_batch_size // jax.process_count(),
            protocol=protocol,
        ),
        seed,
    )
    views = evaluate.evaluate_views(evaluator, restored.variables, dataset, progress)
    output = evaluate.summarize(
        views, dataset, restored.model_config.num_classes, info.class_names
    )
    output.metrics.update(
        {
            "checkpoint": restored.source,
            "step": restored.step,
            "dataset": data_config.dataset,
            "frame_order": "shuffled",
            "seed": seed,
        }
    )
    if output_dir and jax.process_index() == 0:
        evaluate.write_outputs(output_dir, output)
    return output
