"""Input pipeline throughput: clips per second per worker, train and test modes.

Generates real H.264 files (B-frames, 2 s GOP, textured moving content so the decoder
works as hard as on real footage), prepares them as the trainer would, then measures:
  * train: one TrainClip (decode 16x4 frames at a random offset + full augmentation)
    per clip, in-process, i.e. per worker;
  * test: one video -> 10 clips x 3 crops (decoded once), reported per view and per video;
  * scaling: make_train_dataset with N mp_prefetch workers, clips/s end to end, and the
    CPU per clip of the process that receives the batches (the trainer's side);
  * with --augment-on-device / --resize-on-device: XLA's cost analysis of the device side
    (`device_augment.augment_and_normalize`) per clip;
  * host-side float normalization cost, to compare with shipping uint8.

  python benchmarks/pipeline_benchmark.py [--resolutions 320,720] [--workers 1,2]
      [--reencode short_side=256,gop=32] [--augment-on-device] [--resize-on-device]
      [--repeated-augmentation R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from squeezetime_jax.data import (
    clips,
    default_data_config,
    make_train_dataset,
    pipeline,
    prepare,
)
from squeezetime_jax.data.video_encode import encode_video

SIZES = {320: (426, 320), 256: (340, 256), 480: (854, 480), 720: (1280, 720)}


def write_realistic_h264(path, width, height, num_frames, fps=25, seed=0, keyint=50):
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))[:height, :width]

    def frames():
        for i in range(num_frames):
            img = np.roll(texture, (i * 2, i * 3), axis=(0, 1)).copy()
            x = (i * 7) % max(1, width - 64)
            img[:, x : x + 64] = 255 - img[:, x : x + 64]
            yield img

    encode_video(
        path,
        frames(),
        fps=fps,
        options={
            "preset": "veryfast",
            "crf": "23",
            "x264-params": f"bframes=3:keyint={keyint}",
        },
    )


def make_dataset(tmp, resolution, num_videos, num_frames, args):
    root = os.path.join(tmp, f"v{resolution}")
    os.makedirs(root, exist_ok=True)
    w, h = SIZES[resolution]
    lines = []
    for i in range(num_videos):
        write_realistic_h264(os.path.join(root, f"{i}.mp4"), w, h, num_frames, seed=i)
        lines.append(f"{i}.mp4 {i % 3}")
    lst = os.path.join(tmp, f"train_{resolution}.txt")
    with open(lst, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = os.path.join(tmp, f"ds{resolution}")
    prepare.prepare_dataset(
        [f"train={lst}", f"test={lst}"], root, out, progress=False, reencode=args.reencode
    )
    cfg = default_data_config()
    cfg.dataset, cfg.data_dir = "squeezetime_video/custom", out
    cfg.train.augment_on_device = args.augment_on_device or args.resize_on_device
    cfg.train.resize_on_device = args.resize_on_device
    cfg.train.repeated_augmentation = args.repeated_augmentation
    return cfg


def rate(fn, n_items, min_seconds):
    """(items per wall second, items per CPU second of this process).

    CPU seconds make the per-worker figure robust to other load on the machine: one
    worker process uses one core (codec threads are set to 1).
    """
    fn()  # warm up
    count, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        count += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            return count * n_items / dt, count * n_items / (time.process_time() - c0)


def bench_resolution(tmp, resolution, args):
    cfg = make_dataset(tmp, resolution, args.num_videos, args.num_frames, args)
    source = pipeline.open_source(cfg, "train")
    records = [source[i] for i in range(len(source))]
    train = clips.TrainClip(cfg, source)
    rng = np.random.default_rng(0)
    state = {"i": 0}

    def one_train_clip():
        state["i"] += 1
        train.random_map((0, records[state["i"] % len(records)]), rng)

    test = clips.EvalViews(cfg, pipeline.eval_protocol(cfg, "test"))

    def one_test_video():
        state["i"] += 1
        test.map((0, records[state["i"] % len(records)]))

    res = {}
    for name, fn, n in (
        ("train_clips", one_train_clip, int(cfg.train.repeated_augmentation)),
        ("test_views", one_test_video, 30),
    ):
        wall, cpu = rate(fn, n, args.seconds)
        res[f"{name}_per_s_per_worker_wall"] = wall
        res[f"{name}_per_cpu_s"] = cpu
    for workers in args.workers:
        cfg.num_workers = workers
        it = iter(
            make_train_dataset(
                cfg,
                batch_size_per_process=args.batch,
                seed=0,
                process_index=0,
                process_count=1,
            )
        )
        next(it)  # start-up: worker spawn and first batches
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < args.seconds:
            next(it)
            n += args.batch
        res[f"train_clips_per_s_{workers}_workers"] = n / (time.perf_counter() - t0)
        res[f"receiving_process_cpu_ms_per_clip_{workers}_workers"] = (
            1e3 * (time.process_time() - c0) / n
        )
        if hasattr(it, "close"):
            it.close()
    if cfg.train.augment_on_device:
        res["device_side_per_clip"] = device_cost(
            train, records[0], args.batch, cfg.train.crop_size
        )
    return res


def device_cost(train, record, batch_size, crop_size) -> dict:
    """XLA cost analysis (this machine's backend) of the jitted device-side augmentation."""
    import jax

    from squeezetime_jax.data import device_augment

    element = train.random_map((0, record), np.random.default_rng(0))
    batch = {
        k: jax.ShapeDtypeStruct((batch_size,) + np.shape(v), np.asarray(v).dtype)
        for k, v in element.items()
        if k not in ("label", "decode_failed")
    }
    fn = lambda b: device_augment.augment_and_normalize(b, crop_size)
    analysis = jax.jit(fn).lower(batch).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return {
        "gflop": analysis["flops"] / batch_size / 1e9,
        "mbytes_accessed": analysis["bytes accessed"] / batch_size / 1e6,
    }


def normalization_cost(seconds):
    clip = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    _, per_cpu_s = rate(lambda: (clip.astype(np.float32) - mean) / std, 1, seconds)
    return {
        "host_normalize_cpu_ms_per_clip": 1000 / per_cpu_s,
        "bytes_per_clip_uint8": clip.nbytes,
        "bytes_per_clip_float32": clip.nbytes * 4,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolutions", default="320,720")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--num-videos", type=int, default=4)
    p.add_argument(
        "--num-frames", type=int, default=250, help="10 s at 25 fps, as Kinetics"
    )
    p.add_argument(
        "--seconds", type=float, default=8.0, help="minimum time per measurement"
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument(
        "--reencode", help="prepare with --reencode SPEC instead of the original bytes"
    )
    p.add_argument(
        "--augment-on-device",
        action="store_true",
        help="host draws augmentation parameters only (device_augment)",
    )
    p.add_argument(
        "--resize-on-device",
        action="store_true",
        help="ship YUV crops, scaled and converted on the device (device_yuv); "
        "implies --augment-on-device",
    )
    p.add_argument("--repeated-augmentation", type=int, default=1)
    args = p.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg(),
        "normalization": normalization_cost(2.0),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in (int(x) for x in args.resolutions.split(",")):
            results[f"{SIZES[r][0]}x{SIZES[r][1]}"] = bench_resolution(tmp, r, args)
            print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
