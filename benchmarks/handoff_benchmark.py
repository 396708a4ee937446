"""The hand-off of training and evaluation batches from the worker processes to the devices.

Measures the CPU that the receiving process (the trainer, the evaluator) spends per
clip to take a batch from the worker processes and put it on its devices
(`mesh.global_batch`):

  * grain: Grain's mp_prefetch hand-off (`data.batch_slots = False`): every batch
    array crosses in a new shared-memory segment;
  * slots: the default (`data/batch_slots.py`): the workers write into reusable
    shared-memory slots and the devices take the slot's memory without a copy where
    the backend can (XLA CPU).

The workers make synthetic examples (one fixed clip, written into the batch as a
decoding worker writes its output), so only the hand-off is measured: the receiving
process's CPU per clip and the clips per CPU-second that leaves it. The wall rate is
the workers' (they copy every clip once) and is printed for reference only.

`--task eval` measures evaluation batches instead (`pipeline.eval_batches`): a worker
makes all `--views` views of a video at once; through Grain's hand-off the receiving
process then re-batches them (one more copy), through slots a batch holds whole
videos and ends in masked padding. Figures there are per real (unmasked) view.

  python benchmarks/handoff_benchmark.py [--task train,eval] [--batch 64,256] \
      [--clip rgb,yuv420] [--views 30] [--workers 2] [--host-devices 8] \
      [--seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import grain


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", default="64,256", help="clips per process batch")
    parser.add_argument(
        "--clip",
        default="rgb,yuv420",
        help="rgb: 16x224x224x3 uint8; "
        "yuv420: the 4:2:0 planes of the same crop (half the bytes)",
    )
    parser.add_argument("--mode", default="grain,slots")
    parser.add_argument("--task", default="train", help="train, eval or both")
    parser.add_argument(
        "--views", type=int, default=30, help="eval: views per video (10 clips x 3 crops)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--host-devices",
        type=int,
        default=8,
        help="simulated CPU devices of this process (a v5e host has 8 chips)",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    return parser


CLIP_SHAPES = {"rgb": (16, 224, 224, 3), "yuv420": (16, 224 * 224 * 3 // 2)}


class SyntheticExamples:
    """batch -> its examples: one fixed clip and the per-clip keys of a device-augmented
    training batch, as the video pipeline yields them."""

    def __init__(self, clip: str, per_batch: int):
        self._shape, self._per_batch, self._clip = CLIP_SHAPES[clip], per_batch, None

    def example(self, index: int) -> dict:
        import numpy as np

        if self._clip is None:
            self._clip = np.random.default_rng(0).integers(0, 256, self._shape, np.uint8)
        return {
            "video": self._clip,
            "label": np.int32(index % 400),
            "decode_failed": np.bool_(False),
            "aug_flip": np.bool_(index % 2),
            "aug_jitter_order": np.arange(4, dtype=np.int32),
            "aug_jitter_factors": np.ones(4, np.float32),
            "aug_erase_box": np.zeros(4, np.int32),
            "aug_erase_seed": np.uint32(index),
        }

    def __call__(self, batch: int):
        for row in range(self._per_batch):
            yield self.example(batch * self._per_batch + row)


class _Example:
    """Grain Map form of SyntheticExamples.example, for the Grain hand-off."""

    def __init__(self, examples: SyntheticExamples):
        self._examples = examples

    def __call__(self, index):
        return self._examples.example(int(index))


class SyntheticViews(grain.transforms.Map):
    """Local video -> its views, stacked, as clips.EvalViews gives them: a new array of
    `views` copies of one fixed clip and the per-view keys of an evaluation batch."""

    def __init__(self, clip: str, views: int):
        self._shape, self._views, self._clip = CLIP_SHAPES[clip], views, None

    def map(self, video):
        import numpy as np

        if self._clip is None:
            self._clip = np.random.default_rng(0).integers(0, 256, self._shape, np.uint8)
        n, views = self._views, np.arange(self._views, dtype=np.int32)
        return {
            "video": np.repeat(self._clip[None], n, axis=0),
            "label": np.full(n, int(video) % 400, np.int32),
            "video_index": np.full(n, int(video), np.int32),
            "clip_index": views // 3,
            "crop_index": views % 3,
            "mask": np.ones(n, bool),
            "decode_failed": np.zeros(n, bool),
        }


def dataset(task: str, mode: str, clip: str, batch: int, data_config, views: int):
    import numpy as np

    from squeezetime_jax.data import batch_slots, pipeline

    stop = 10**9
    if task == "eval":
        data_config.batch_slots = mode == "slots"
        pad = {
            key: np.zeros_like(value[0])
            for key, value in SyntheticViews(clip, 1).map(0).items()
        }
        pad["video_index"] = np.int32(-1)
        ds, _ = pipeline.eval_batches(
            data_config,
            SyntheticViews(clip, views),
            num_videos=stop,
            max_videos=stop,
            views=views,
            batch_size=batch,
            pad=pad,
        )
        return ds
    examples = SyntheticExamples(clip, batch)
    if mode == "slots":
        layout = batch_slots.SlotLayout.of_example(examples.example(0), batch)
        return pipeline.slot_batches(
            data_config, examples, layout=layout, start_batch=0, stop=stop
        )
    ds = (
        grain.MapDataset.range(stop)
        .map(_Example(examples))
        .batch(batch, drop_remainder=True)
    )
    ds = ds.to_iter_dataset(pipeline.read_options(data_config))
    return pipeline.prefetch_with_workers(ds, data_config)


def measure(task: str, mode: str, clip: str, batch: int, args, mesh) -> dict:
    from squeezetime_jax.data import default_data_config
    from squeezetime_jax.training import mesh as mesh_lib

    cfg = default_data_config()
    cfg.num_workers = args.workers
    it = iter(dataset(task, mode, clip, batch, cfg, args.views))
    # Warm-up: the workers start, and every slot (or Grain buffer) has been written
    # once, so first-touch page faults are not in the figures.
    held = []
    for _ in range(cfg.num_workers * (2 * cfg.worker_buffer_size + 2) + 8):
        held = held[-2:] + [mesh_lib.global_batch(next(it), mesh)]
    wait_cpu = take_cpu = 0.0
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        c0 = time.process_time()
        local = next(it)
        c1 = time.process_time()
        held = held[1:] + [mesh_lib.global_batch(local, mesh)]  # as a trainer holds a few
        c2 = time.process_time()
        n += int(local["mask"].sum()) if task == "eval" else batch
        del local
        wait_cpu, take_cpu = wait_cpu + c1 - c0, take_cpu + c2 - c1
    wall = time.perf_counter() - t0
    del held
    if hasattr(it, "close"):
        it.close()
    cpu = wait_cpu + take_cpu
    return {
        "task": task,
        "mode": mode,
        "clip": clip,
        "batch": batch,
        **({"views_per_video": args.views} if task == "eval" else {}),
        "clip_mb": round(_clip_bytes(clip) / 1e6, 3),
        "clips": n,
        "receiving_cpu_us_per_clip": round(1e6 * cpu / n, 2),
        "of_which_next_us": round(1e6 * wait_cpu / n, 2),
        "of_which_global_batch_us": round(1e6 * take_cpu / n, 2),
        "clips_per_receiving_cpu_s": round(n / cpu),
        "wall_clips_per_s": round(n / wall),
    }


def _clip_bytes(clip: str) -> int:
    import math

    return math.prod(CLIP_SHAPES[clip])


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    flag = f"--xla_force_host_platform_device_count={args.host_devices}"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from squeezetime_jax.training import mesh as mesh_lib

    mesh = mesh_lib.make_mesh()
    rows = []
    for task in args.task.split(","):
        for clip in args.clip.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                for mode in args.mode.split(","):
                    row = measure(task, mode, clip, batch, args, mesh)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "argv": sys.argv[1:],
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
