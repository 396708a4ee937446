"""Evaluation over view-indexed datasets: metrics summed on device, views kept on host.

Each batch is a global array sharded like a training batch. Top-1/top-5 hits and
the loss are summed under jit over the unmasked views of every process; each
process also keeps its own views' logits with their (video, clip, crop) indices,
so that protocols can average per video afterwards.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from squeezetime_jax.inference.model import predict_step
from squeezetime_jax.runtime.compile_options import compiler_options
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training.step import eval_metrics

_VIEW_KEYS = ("label", "video_index", "clip_index", "crop_index", "mask")


@dataclasses.dataclass
class EvaluatedViews:
    """Sums of the on-device metrics and, if kept, this process's views."""

    sums: dict[str, float]
    # This process's views (masked padding removed): logits and their indices.
    views: dict[str, np.ndarray]

    def metrics(self) -> dict[str, float]:
        count = max(self.sums["count"], 1.0)
        return {
            "top1": self.sums["top1_sum"] / count,
            "top5": self.sums["top5_sum"] / count,
            "loss": self.sums["loss_sum"] / count,
            "views": self.sums["count"],
        }


class Evaluator:
    def __init__(self, model, mesh, global_batch_size: int):
        self.mesh = mesh
        mesh_lib.check_batch_divides(global_batch_size, mesh)
        sharding = mesh_lib.batch_sharding(mesh)
        self._predict = jax.jit(
            functools.partial(predict_step, model=model),
            out_shardings=sharding,
            compiler_options=compiler_options(),
        )
        self._metrics = jax.jit(eval_metrics, out_shardings=mesh_lib.replicated(mesh))

    def _local(self, array: jax.Array) -> np.ndarray:
        return np.asarray(
            multihost_utils.global_array_to_host_local_array(
                array, self.mesh, P(self.mesh.axis_names)
            )
        )

    def evaluate(
        self,
        variables: Any,
        batches: Iterable[dict[str, np.ndarray]],
        keep_views: bool = False,
    ) -> EvaluatedViews:
        sums: dict[str, float] = {}
        kept: dict[str, list[np.ndarray]] = {key: [] for key in ("logits",) + _VIEW_KEYS}
        for local_batch in batches:
            batch = mesh_lib.global_batch(
                {k: local_batch[k] for k in ("video",) + _VIEW_KEYS if k in local_batch},
                self.mesh,
            )
            logits = self._predict(variables, batch)
            step_sums = self._metrics(logits, batch["label"], batch["mask"])
            for key, value in jax.device_get(step_sums).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            if keep_views:
                mask = np.asarray(local_batch["mask"], bool)
                kept["logits"].append(self._local(logits)[mask])
                for key in _VIEW_KEYS:
                    kept[key].append(np.asarray(local_batch[key])[mask])
                if "decode_failed" in local_batch:  # host-only: never sent to devices
                    kept.setdefault("decode_failed", []).append(
                        np.asarray(local_batch["decode_failed"], bool)[mask]
                    )
        views = {k: np.concatenate(v) for k, v in kept.items() if v} if keep_views else {}
        return EvaluatedViews(sums=sums, views=views)


def gather_views(views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every process's kept views, concatenated in process order, on every process.

    Processes hold different numbers of views, so each pads its arrays to the
    largest count before the all-gather and the padding is cut off afterwards.
    """
    if jax.process_count() == 1 or not views:  # no views: no batches on any process
        return views
    count = len(next(iter(views.values())))
    counts = np.asarray(multihost_utils.process_allgather(np.asarray(count, np.int64)))
    longest = int(counts.max())
    gathered = {}
    for key in sorted(views):
        value = np.asarray(views[key])
        padded = np.zeros((longest,) + value.shape[1:], value.dtype)
        padded[:count] = value
        stacked = np.asarray(multihost_utils.process_allgather(padded))
        gathered[key] = np.concatenate([stacked[i, :n] for i, n in enumerate(counts)])
    return gathered
