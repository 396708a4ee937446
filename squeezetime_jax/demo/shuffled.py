"""Evaluation with the frames of every view put in a random order.

The control experiment of the demo: the same checkpoint, data and protocol as
eval.py, but each view's frames are permuted (a fresh permutation per view, from a
fixed seed). A model that reads temporal order should fall to chance here. It is
eval.py's job with one batch transform.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from squeezetime_jax.evaluation import job


def shuffle_frames(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B, T, H, W, C) -> the same clips, each with its T frames in a random order."""
    b, t = video.shape[:2]
    order = np.argsort(rng.random((b, t)), axis=1)
    return np.take_along_axis(video, order.reshape(b, t, 1, 1, 1), axis=1)


class FrameShuffle:
    """A batch transform: every view's frames in a new random order, from `seed` and
    this process's index (so processes draw different permutations)."""

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng([seed, jax.process_index()])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**batch, "video": shuffle_frames(np.asarray(batch["video"]), self._rng)}


def evaluate_shuffled(
    config: ml_collections.ConfigDict,
    checkpoint: str,
    *,
    data_dir: str | None = None,
    protocol="test",
    output_dir: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> job.EvalResult:
    """eval.py's evaluation of `checkpoint` on frame-shuffled views; writes its outputs.

    Returns the EvalResult (metrics.json contents plus `frame_order` and `seed`).
    """
    runner = job.CheckpointEvaluator(
        config, protocol=protocol, data_dir=data_dir, progress=progress
    )
    restored = job.restore(checkpoint, sharding=job.mesh_lib.replicated(runner.mesh))
    output = runner.evaluate(restored, batch_transform=FrameShuffle(seed))
    output.metrics.update({"frame_order": "shuffled", "seed": seed})
    if output_dir and jax.process_index() == 0:
        job.write_outputs(output_dir, output)
    return output
