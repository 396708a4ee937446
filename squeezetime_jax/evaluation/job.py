"""evaluate_checkpoint(config, checkpoint, ...): the library behind eval.py.

Sections: protocol and data, mesh and checkpoint, views (jitted over the mesh,
gathered from every process), per-video aggregation, outputs. `watch` runs the
same evaluation on each new checkpoint of a training workdir.

Outputs (process 0) in the output directory:
  metrics.json     top-1, top-5, mean-class accuracy over the readable videos, with the
                   protocol and the counts of videos, views and unreadable videos
  predictions.npz  per-video averaged probabilities and per-view logits with their
                   video/clip/crop indices, views sorted by (video, clip, crop)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from squeezetime_jax import data as data_lib
from squeezetime_jax import files
from squeezetime_jax.checkpoints import workdir as workdir_lib
from squeezetime_jax.checkpoints.restore import Restored, restore
from squeezetime_jax.config_utils import resolve_steps
from squeezetime_jax.data.random_clips import RANDOM_DATASET
from squeezetime_jax.evaluation import evaluator as evaluation
from squeezetime_jax.evaluation import scoring as eval_protocols
from squeezetime_jax.models import build_model
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training.metrics_writer import MetricWriter

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"


# ---------------------------------------------------------------- protocol and data


def parse_protocol(text: str) -> str | dict[str, Any]:
    """'val', 'test', or 'test:num_clips=2,num_crops=3,short_side=286,crop_size=286'."""
    base, _, overrides = text.partition(":")
    if base not in ("val", "test"):
        raise ValueError(f"protocol {text!r}: must start with 'val' or 'test'")
    if not overrides:
        return base
    protocol: dict[str, Any] = {"base": base}
    for item in overrides.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ValueError(f"protocol {text!r}: {item!r} is not key=value")
        protocol[key] = value if key == "split" else int(value)
    return protocol


def protocol_name(protocol: str | Mapping[str, Any]) -> str:
    if isinstance(protocol, str):
        return protocol
    items = dict(protocol)
    base = items.pop("base", "test")
    return base + "".join(f"_{k}{v}" for k, v in sorted(items.items()))


def eval_data_config(
    config: ml_collections.ConfigDict,
    model_config,
    data_dir: str | None = None,
    metadata=None,
    config_overrides: Iterable[str] = (),
) -> ml_collections.ConfigDict:
    """The config's data section for this checkpoint: its data_dir and frame count, and
    the clip settings stored with the checkpoint (frame interval, val/test short side,
    crop, clips and crops), except those in `config_overrides` (dotted config keys
    such as "data.test.short_side", given on the command line)."""
    data_config = ml_collections.ConfigDict(config.data.to_dict())
    if data_dir:
        data_config.data_dir = data_dir
    if metadata is not None:
        keep = [k[len("data.") :] for k in config_overrides if k.startswith("data.")]
        for change in metadata.apply_to_data_config(data_config, keep):
            logging.info("data.%s (stored with the checkpoint)", change)
    if data_config.num_frames != model_config.num_frames:
        # The network's input channels are 3 x frames: the checkpoint decides.
        logging.info(
            "data.num_frames %d -> %d (the checkpoint's num_frames)",
            data_config.num_frames,
            model_config.num_frames,
        )
        data_config.num_frames = model_config.num_frames
    return data_config


# ---------------------------------------------------------------- views


def _progress(batches: Iterable[dict], total_views: int, enabled: bool) -> Iterator[dict]:
    from tqdm import tqdm

    with tqdm(
        total=total_views, unit="view", desc="eval", disable=not enabled, dynamic_ncols=True
    ) as bar:
        for batch in batches:
            yield batch
            # Each process sees its own part; process 0 shows an estimate of the whole.
            seen = int(np.sum(batch["mask"])) * jax.process_count()
            bar.update(min(seen, bar.total - bar.n))


# Rewrites a host batch ({'video': (B, T, H, W, 3), ...}) before evaluation.
BatchTransform = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def evaluate_views(
    evaluator: evaluation.Evaluator,
    variables: Any,
    dataset: data_lib.EvalDataset,
    progress: bool = False,
    batch_transform: BatchTransform | None = None,
) -> dict[str, np.ndarray]:
    """Logits and indices of every view of `dataset`, from all processes, sorted."""
    total = dataset.num_videos * dataset.views_per_video
    batches: Iterable[dict] = dataset
    if batch_transform is not None:
        batches = map(batch_transform, batches)
    batches = _progress(batches, total, progress and jax.process_index() == 0)
    views = evaluation.gather_views(
        evaluator.evaluate(variables, batches, keep_views=True).views
    )
    return sort_views(views)


def sort_views(views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.lexsort((views["crop_index"], views["clip_index"], views["video_index"]))
    return {k: np.asarray(v)[order] for k, v in views.items()}


# ---------------------------------------------------------------- aggregation


@dataclasses.dataclass
class EvalResult:
    """One evaluation: metrics.json's contents and predictions.npz's arrays."""

    metrics: dict[str, Any]
    arrays: dict[str, np.ndarray]  # the contents of predictions.npz


def summarize(
    views: dict[str, np.ndarray],
    dataset: data_lib.EvalDataset,
    num_classes: int,
    class_names: list[str] | None = None,
) -> EvalResult:
    """Per-video averages and accuracies; unreadable videos are counted, not scored."""
    p = dataset.protocol
    scores = eval_protocols.average_views(
        views, dataset.labels, dataset.views_per_video, p.num_crops
    )
    readable = scores.readable
    metrics: dict[str, Any] = eval_protocols.accuracies(
        scores.probabilities[readable], scores.labels[readable], num_classes
    )
    view_ok = readable[views["video_index"]]
    metrics.update(
        eval_protocols.view_accuracies(views["logits"][view_ok], views["label"][view_ok])
    )
    ids = np.asarray(dataset.video_ids)
    metrics.update(
        {
            "num_videos": int(dataset.num_videos),
            "num_videos_evaluated": int(readable.sum()),
            "num_unreadable": int((~readable).sum()),
            "unreadable_video_ids": [str(v) for v in ids[~readable]],
            "views_per_video": int(dataset.views_per_video),
            "num_views": int(len(views["video_index"])),
            "num_views_evaluated": int(view_ok.sum()),
            "num_classes": int(num_classes),
            "protocol": dataclasses.asdict(p),
        }
    )
    arrays = {
        "video_ids": ids.astype(str),
        "labels": scores.labels,
        "probabilities": scores.probabilities,
        "readable": readable,
        "view_logits": np.asarray(views["logits"], np.float32),
        "view_video_index": np.asarray(views["video_index"], np.int32),
        "view_clip_index": np.asarray(views["clip_index"], np.int32),
        "view_crop_index": np.asarray(views["crop_index"], np.int32),
        "view_label": np.asarray(views["label"], np.int32),
    }
    if class_names is not None:
        arrays["class_names"] = np.asarray(class_names, dtype=str)
    return EvalResult(metrics, arrays)


def write_outputs(output_dir: str, output: EvalResult) -> None:
    files.write_text(
        files.join(output_dir, METRICS_FILE), json.dumps(output.metrics, indent=2) + "\n"
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **output.arrays)
    files.write_bytes(files.join(output_dir, PREDICTIONS_FILE), buffer.getvalue())


def format_metrics(metrics: Mapping[str, Any]) -> str:
    p = metrics["protocol"]
    return (
        f"{metrics.get('checkpoint', '')}: "
        f"{p['split']} {p['num_clips']}x{p['num_crops']} views at short side "
        f"{p['short_side']}, crop {p['crop_size']} | top1 {metrics['top1']:.4f} | top5 "
        f"{metrics['top5']:.4f} | mean class {metrics['mean_class_accuracy']:.4f} | "
        f"{metrics['num_videos_evaluated']}/{metrics['num_videos']} videos, "
        f"{metrics['num_views']} views, {metrics['num_unreadable']} unreadable"
    )


# ---------------------------------------------------------------- the run


class CheckpointEvaluator:
    """Evaluates checkpoints of one model under one protocol; compiles once."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        protocol: str | Mapping = "test",
        data_dir: str | None = None,
        batch_size: int | None = None,
        mesh=None,
        progress: bool = True,
        config_overrides: Iterable[str] = (),
    ):
        self.config = config
        self.config_overrides = tuple(config_overrides)
        self.protocol = protocol
        self.data_dir = data_dir
        self.batch_size = batch_size or config.eval_batch_size
        self.mesh = mesh or mesh_lib.make_mesh(config.mesh_shape, config.mesh_axes)
        self.progress = progress
        self._evaluator = None
        self._model_config = None

    def _evaluator_for(self, model_config) -> evaluation.Evaluator:
        if (
            self._evaluator is None
            or model_config.to_dict() != self._model_config.to_dict()
        ):
            self._evaluator = evaluation.Evaluator(
                build_model(model_config), self.mesh, self.batch_size
            )
            self._model_config = model_config
        return self._evaluator

    def evaluate(
        self,
        checkpoint: Restored,
        output_dir: str | None = None,
        batch_transform: BatchTransform | None = None,
    ) -> EvalResult:
        """Scores `checkpoint`; `batch_transform` (if given) rewrites each host batch
        before it reaches the devices (e.g. shuffling the frames of every view)."""
        data_config = eval_data_config(
            self.config,
            checkpoint.config,
            self.data_dir,
            checkpoint.metadata,
            self.config_overrides,
        )
        info = data_lib.dataset_info(data_config.data_dir, data_config.dataset)
        num_classes = checkpoint.config.num_classes
        if info.num_classes != num_classes:
            raise ValueError(
                f"dataset {data_config.dataset} in {data_config.data_dir!r} has "
                f"{info.num_classes} classes but the checkpoint {checkpoint.source} "
                f"predicts {num_classes}"
            )
        evaluator = self._evaluator_for(checkpoint.config)
        dataset = data_lib.make_eval_dataset(
            data_config,
            batch_size_per_process=self.batch_size // jax.process_count(),
            protocol=self.protocol,
        )
        start = time.perf_counter()
        views = evaluate_views(
            evaluator, checkpoint.variables, dataset, self.progress, batch_transform
        )
        seconds = time.perf_counter() - start
        stored_names = checkpoint.metadata.class_names
        if stored_names and list(stored_names) != list(info.class_names):
            logging.warning(
                "the checkpoint %s names its classes otherwise than dataset %s "
                "(first difference at label %d); scores use the dataset's labels",
                checkpoint.source,
                data_config.dataset,
                next(
                    i
                    for i, (a, b) in enumerate(zip(stored_names, info.class_names))
                    if a != b
                ),  # the lengths are equal: both are the model's classes
            )
        output = summarize(views, dataset, num_classes, info.class_names)
        output.metrics.update(
            {
                "checkpoint": checkpoint.source,
                "step": checkpoint.step,
                "dataset": data_config.dataset,
                "seconds": seconds,
                "views_per_second": output.metrics["num_views"] / max(seconds, 1e-9),
                "devices": jax.device_count(),
                "processes": jax.process_count(),
            }
        )
        if output_dir and jax.process_index() == 0:
            write_outputs(output_dir, output)
        return output


def default_output_dir(checkpoint: str, protocol: str | Mapping, step: int | None) -> str:
    name = protocol_name(protocol)
    checkpoint = files.absolute(checkpoint)
    if step is not None:  # a training workdir: results live next to its checkpoints
        return files.join(checkpoint, "eval", name, f"step_{step}")
    base = os.path.splitext(files.path(checkpoint).name)[0]
    return files.absolute(f"eval_{base}_{name}")


def evaluate_checkpoint(
    config: ml_collections.ConfigDict,
    checkpoint: str,
    *,
    protocol: str | Mapping = "test",
    data_dir: str | None = None,
    step: int | None = None,
    output_dir: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    batch_transform: BatchTransform | None = None,
    config_overrides: Iterable[str] = (),
) -> EvalResult:
    """Evaluates one checkpoint (workdir, converted directory, .pth or a released
    checkpoint's name) and writes results.

    `batch_transform` rewrites each batch before the model sees it (see
    `CheckpointEvaluator.evaluate`); the demo's shuffled-frames run is one.
    `config_overrides`: the dotted config keys set on the command line, which win over
    the clip settings stored with the checkpoint (see `eval_data_config`).
    """
    runner = CheckpointEvaluator(
        config,
        protocol=protocol,
        data_dir=data_dir,
        batch_size=batch_size,
        progress=progress,
        config_overrides=config_overrides,
    )
    restored = restore(checkpoint, step, mesh_lib.replicated(runner.mesh))
    output_dir = output_dir or default_output_dir(checkpoint, protocol, restored.step)
    output = runner.evaluate(restored, output_dir, batch_transform)
    output.metrics["output_dir"] = output_dir
    if jax.process_index() == 0:
        print(format_metrics(output.metrics), flush=True)
        print(
            f"wrote {files.join(output_dir, METRICS_FILE)} and {PREDICTIONS_FILE}",
            flush=True,
        )
    return output


# ---------------------------------------------------------------- watch


def final_step(train_config: Mapping[str, Any]) -> int | None:
    """The last step the training run will save, or None if it cannot be told."""
    data = train_config.get("data", {})
    try:
        if data.get("dataset") == RANDOM_DATASET:
            num_train = data.get("num_examples") or 1024
        elif train_config.get("total_steps") is None:
            info = data_lib.dataset_info(data.get("data_dir"), data.get("dataset"))
            num_train = info.num_examples[data["train"]["split"]]
        else:
            num_train = 0
        steps_per_epoch = max(num_train // int(train_config["batch_size"]), 1)
        return resolve_steps(train_config, "total", steps_per_epoch)
    except Exception as error:  # an unreadable dataset: rely on the timeout
        logging.warning(
            "cannot tell the final step (%s); stopping on the timeout only", error
        )
        return None


def _agree(values: list[int], stop: bool) -> tuple[list[int], bool]:
    """Process 0's view of the new steps and the stop decision, on every process."""
    if jax.process_count() == 1:
        return values, stop
    from jax.experimental import multihost_utils

    packed = np.full(65, -1, np.int64)
    packed[0] = int(stop)
    packed[1 : 1 + min(len(values), 64)] = values[:64]
    packed = np.asarray(multihost_utils.broadcast_one_to_all(packed))
    return [int(v) for v in packed[1:] if v >= 0], bool(packed[0])


def watch(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    protocol: str | Mapping = "val",
    data_dir: str | None = None,
    timeout: float = 3600.0,
    poll_seconds: float = 30.0,
    batch_size: int | None = None,
    output_root: str | None = None,
    progress: bool = True,
    config_overrides: Iterable[str] = (),
) -> dict[int, dict[str, Any]]:
    """Evaluates each new checkpoint of a training workdir as it appears.

    Stops after the final training step is evaluated, or when no new checkpoint
    appeared for `timeout` seconds. Metrics go to the workdir's metrics.jsonl and
    TensorBoard under `eval/<protocol>/`, and each step's outputs to
    `output_root/step_<N>` (default WORKDIR/eval/<protocol>). Returns {step: metrics}.
    """
    workdir = files.absolute(workdir)
    last = final_step(workdir_lib.read_config(workdir))
    name = protocol_name(protocol)
    output_root = output_root or files.join(workdir, "eval", name)
    runner = CheckpointEvaluator(
        config,
        protocol=protocol,
        data_dir=data_dir,
        batch_size=batch_size,
        progress=progress,
        config_overrides=config_overrides,
    )
    # A local workdir's metrics.jsonl takes the eval lines too (appends do not clash
    # with the trainer's). GCS objects are replaced whole, so on gs:// the trainer
    # owns WORKDIR/metrics.jsonl and the evaluations go to OUTPUT_ROOT/metrics.jsonl.
    writer = (
        MetricWriter(output_root, flush_seconds=0.0)
        if files.is_url(workdir)
        else MetricWriter(workdir)
    )
    results: dict[int, dict[str, Any]] = {}
    last_new = time.monotonic()
    try:
        while True:
            new = [s for s in workdir_lib.complete_steps(workdir) if s not in results]
            timed_out = not new and time.monotonic() - last_new > timeout
            new, timed_out = _agree(new, timed_out)
            if timed_out:
                logging.info("no new checkpoint in %.0f s; stopping", timeout)
                break
            if not new:
                time.sleep(poll_seconds)
                continue
            for step in new:
                try:
                    restored = restore(workdir, step, mesh_lib.replicated(runner.mesh))
                except Exception as error:  # deleted by max_to_keep since it was listed
                    logging.warning("skipping step %d: %s", step, error)
                    results[step] = {"error": str(error)}
                    continue
                output = runner.evaluate(restored, files.join(output_root, f"step_{step}"))
                results[step] = output.metrics
                scalars = {
                    k: output.metrics[k]
                    for k in (
                        "top1",
                        "top5",
                        "mean_class_accuracy",
                        "view_top1",
                        "view_top5",
                    )
                }
                writer.write(step, scalars, prefix=f"eval/{name}/")
                if jax.process_index() == 0:
                    print(format_metrics(output.metrics), flush=True)
            last_new = time.monotonic()
            # Read again: a run restarted with more steps rewrites its config.
            last = final_step(workdir_lib.read_config(workdir))
            if last is not None and max(results) >= last:
                break
    finally:
        writer.close()
    return results
