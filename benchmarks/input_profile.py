"""Per-stage CPU profile of one input worker, per training clip and per test view.

Generates K400-like H.264 files (30 fps, 10 s, x264 defaults: adaptive B-frames with
B-pyramid, a keyframe every `--keyint` frames), prepares them with the original bytes
and with each `--reencode` spec, then runs the real per-element functions
(clips.TrainClip / clips.EvalViews) in this process with every stage wrapped in a CPU
timer (time.process_time: the machine is shared, CPU time is what scales per core):

  read       ArrayRecord read of the record (source[i])
  open       container open (av.open on the bytes)
  index      demuxing every packet for the timestamp -> frame index map
  decode     seeking + decoding (what remains of decode_frames)
  convert    crop + scale + YUV->RGB in libswscale (train) / scale + RGB (test); with
             resize on device, the crop's plane copy (and a YUV scale for sources not
             stored at the short side)
  jitter, erase, aug params   host augmentation, or the parameter draw on device runs
  other      sampling, crop choice, flip view, stacking, retries (the rest of the map)
  batch      with --handoff slots (the default pipeline): writing the clip into its
             row of a batch slot; with --handoff grain: np.stack into a batch
  transfer   --handoff grain only: a pickle round trip of the batch (upper bound for
             the worker -> trainer hop of Grain's mp_prefetch, which moves batches
             through new shared-memory segments)

  python benchmarks/input_profile.py [--clips 120] [--reencode short_side=256,gop=32] \
      [--handoff slots|grain]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pickle
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_benchmark import write_realistic_h264  # noqa: E402

from squeezetime_jax.data import (  # noqa: E402
    clips,
    default_data_config,
    pipeline,
    prepare,
    transforms,
    video_decode,
)

try:
    from squeezetime_jax.data import device_augment
except ImportError:  # an older checkout, profiled with --baseline
    device_augment = None

SOURCES = {"340x256": (340, 256), "640x360": (640, 360)}


class StageTimer:
    """Wraps module attributes so each call adds its CPU time to a named stage."""

    def __init__(self):
        self.cpu = collections.Counter()
        self._stack = contextlib.ExitStack()

    def wrap(self, module, name, stage):
        fn = getattr(module, name, None) if module is not None else None
        if fn is None:  # an older checkout without this stage
            return

        def timed(*args, **kwargs):
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[stage] += time.process_time() - c0

        setattr(module, name, timed)
        self._stack.callback(setattr, module, name, fn)

    def __enter__(self):
        for module, name, stage in (
            (video_decode, "_open", "open"),
            (video_decode, "_packet_index", "index"),
            (video_decode, "_crop_resize_rgb", "convert"),
            (video_decode, "_to_rgb", "convert"),
            (video_decode, "_crop_yuv420", "convert"),
            (video_decode, "decode_frames", "decode_frames"),
            (video_decode, "decode_yuv420_crops", "decode_frames"),
            (transforms, "apply_color_jitter", "jitter"),
            (transforms, "random_erasing", "erase"),
            (device_augment, "host_params", "aug params"),
        ):
            self.wrap(module, name, stage)
        return self

    def __exit__(self, *exc):
        self._stack.close()


def make_source_dataset(tmp, name, args, reencode):
    root = os.path.join(tmp, name)
    if not os.path.isdir(root):
        os.makedirs(root)
        w, h = SOURCES[name]
        for i in range(args.num_videos):
            write_realistic_h264(
                os.path.join(root, f"{i}.mp4"),
                w,
                h,
                args.seconds_per_video * 30,
                fps=30,
                seed=i,
                keyint=args.keyint,
            )
    lst = os.path.join(tmp, f"{name}.txt")
    with open(lst, "w") as f:
        f.write("".join(f"{i}.mp4 {i % 3}\n" for i in range(args.num_videos)))
    out = os.path.join(
        tmp, f"ds_{name}_{reencode or 'orig'}".replace(",", "_").replace("=", "")
    )
    c0 = time.process_time()
    kwargs = {"reencode": reencode} if reencode else {}
    summary = prepare.prepare_dataset(
        [f"train={lst}", f"test={lst}"], root, out, progress=False, overwrite=True, **kwargs
    )
    prep_cpu = time.process_time() - c0
    sizes = summary.get("video_bytes") or {  # older checkouts: the original bytes
        "source": 2 * sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root))
    }
    sizes.setdefault("records", sizes["source"])
    cfg = default_data_config()
    cfg.dataset, cfg.data_dir = "squeezetime_video/custom", out
    n = summary["written"]  # two splits, the same videos
    return cfg, {
        "prepare_cpu_s_per_video": prep_cpu / n,
        "prepare_videos_per_cpu_s": n / prep_cpu,
        "source_bytes_per_video": sizes["source"] / n,
        "record_bytes_per_video": sizes["records"] / n,
    }


class SlotRows:
    """A batch slot's arrays (one preallocated batch): a worker writes each clip, or
    each stack of clips, into its rows, as data/batch_slots.FillSlot does."""

    def __init__(self):
        self._arrays = None

    def write(self, stacks: list[dict]) -> None:
        """The next batch: `stacks` of clips, each value an array with a leading row
        axis or a list of the clips' arrays."""
        rows = sum(len(next(iter(s.values()))) for s in stacks)
        if self._arrays is None:
            self._arrays = {
                k: np.empty((rows,) + np.shape(v[0]), np.asarray(v[0]).dtype)
                for k, v in stacks[0].items()
            }
        row = 0
        for stack in stacks:
            count = len(next(iter(stack.values())))
            for key, value in stack.items():
                if isinstance(value, list):
                    for offset, clip in enumerate(value):
                        self._arrays[key][row + offset] = clip
                else:
                    self._arrays[key][row : row + count] = value
            row += count


def _as_stack(example: dict, stacked: bool) -> dict:
    return example if stacked else {k: np.asarray(v)[None] for k, v in example.items()}


def profile_train(cfg, n_clips, handoff="slots"):
    source = pipeline.open_source(cfg, "train")
    train = clips.TrainClip(cfg, source)
    rng = np.random.default_rng(0)
    repeats = int(cfg.train.repeated_augmentation)
    train.random_map((0, source[0]), rng)  # warm up
    slot = SlotRows()
    with StageTimer() as st:
        outs, total = [], 0.0
        for i in range(n_clips // repeats):
            c0 = time.process_time()
            record = source[i % len(source)]
            st.cpu["read"] += time.process_time() - c0
            outs.append(train.random_map((0, record), rng))
            total += time.process_time() - c0
            if len(outs) == 8:
                c1 = time.process_time()
                if handoff == "slots":
                    slot.write([_as_stack(o, repeats > 1) for o in outs])
                    c2 = c3 = time.process_time()
                else:
                    stacked = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
                    c2 = time.process_time()
                    pickle.loads(pickle.dumps(stacked, protocol=5))
                    c3 = time.process_time()
                st.cpu["batch"] += c2 - c1
                st.cpu["transfer"] += c3 - c2
                total += c3 - c1
                outs = []
    return _per_item(st.cpu, total, (n_clips // repeats) * repeats)


def profile_test(cfg, n_videos, handoff="slots"):
    source = pipeline.open_source(cfg, "test")
    protocol = pipeline.eval_protocol(cfg, "test")
    # Through slots the views are written into the batch as they are, not stacked.
    try:
        test = clips.EvalViews(cfg, protocol, stacked=handoff != "slots")
    except TypeError:  # an older checkout: always stacked
        test = clips.EvalViews(cfg, protocol)
    test.map((0, source[0]))
    slot = SlotRows()
    with StageTimer() as st:
        total = 0.0
        for i in range(n_videos):
            c0 = time.process_time()
            record = source[i % len(source)]
            st.cpu["read"] += time.process_time() - c0
            out = test.map((0, record))
            c1 = time.process_time()
            if handoff == "slots":  # the video's views into its rows of the batch
                slot.write([out])
                st.cpu["batch"] += time.process_time() - c1
            else:
                pickle.loads(pickle.dumps(out, protocol=5))
                st.cpu["transfer"] += time.process_time() - c1
            total += time.process_time() - c0
    views = n_videos * cfg.test.num_clips * cfg.test.num_crops
    return _per_item(st.cpu, total, views)


def _per_item(cpu, total, n):
    cpu = dict(cpu)
    df = cpu.pop("decode_frames", 0.0)
    inner = sum(cpu.get(k, 0.0) for k in ("open", "index", "convert"))
    cpu["decode"] = df - inner
    cpu["other"] = (
        total
        - df
        - sum(v for k, v in cpu.items() if k not in ("open", "index", "convert", "decode"))
    )
    ms = {k: round(1000 * v / n, 3) for k, v in sorted(cpu.items())}
    return {
        "ms_per_item": ms,
        "total_ms_per_item": round(1000 * total / n, 3),
        "items_per_cpu_s": round(n / total, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", default="340x256,640x360")
    p.add_argument(
        "--reencode",
        action="append",
        help="re-encode specs to compare with the original bytes (repeatable)",
    )
    p.add_argument("--keyint", type=int, default=250, help="source keyframe interval")
    p.add_argument("--num-videos", type=int, default=4)
    p.add_argument("--seconds-per-video", type=int, default=10)
    p.add_argument("--clips", type=int, default=120, help="train clips per measurement")
    p.add_argument("--test-videos", type=int, default=4)
    p.add_argument("--repeats", default="2", help="repeated_augmentation values to add")
    p.add_argument(
        "--handoff",
        default="slots",
        choices=("slots", "grain"),
        help="how a worker hands its batch on: batch slots (the default pipeline) "
        "or Grain's own (data.batch_slots=False)",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--skip-original", action="store_true", help="profile re-encodes only")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="original bytes and host augmentation only (runs on older checkouts)",
    )
    args = p.parse_args()
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    specs = [] if args.skip_original else [None]
    specs += [] if args.baseline else (args.reencode or ["short_side=256,gop=32"])
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg(),
        "handoff": args.handoff,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sources.split(","):
            for spec in specs:
                cfg, prep = make_source_dataset(tmp, name, args, spec)
                has_resize = "resize_on_device" in cfg.train  # absent in older checkouts
                variants = [("host aug", False, 1, False)]
                if not args.baseline:
                    variants.append(("device aug", True, 1, False))
                    variants += [
                        (f"device aug, R={r}", True, int(r), False)
                        for r in args.repeats.split(",")
                        if r
                    ]
                    if has_resize:
                        variants.append(("device aug + resize", True, 1, True))
                for label, on_device, repeats, resize in variants:
                    cfg.train.augment_on_device, cfg.train.repeated_augmentation = (
                        on_device,
                        repeats,
                    )
                    if has_resize:
                        cfg.train.resize_on_device = resize
                    run = {
                        "source": name,
                        "records": spec or "original bytes",
                        "mode": f"train, {label}",
                        **profile_train(cfg, args.clips, args.handoff),
                    }
                    results["runs"].append(run)
                    print(json.dumps(run), flush=True)
                run = {
                    "source": name,
                    "records": spec or "original bytes",
                    "mode": "test (per view)",
                    **profile_test(cfg, args.test_videos, args.handoff),
                    "prepare": prep,
                }
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
