"""Preparation cost: Beam's DirectRunner vs the local process pool, videos per CPU-second.

Writes N realistic H.264 files (the input benchmark's textured moving content), then
prepares the same list with `python -m squeezetime_jax.data.prepare` both ways, each
run a fresh process whose CPU time (user + system, all its descendant processes
included) is read from the OS:

  * local: the default process pool, --workers W;
  * beam: --runner=DirectRunner with --direct_num_workers W (W > 1 runs Beam's
    multi-processing mode: SDK worker processes fed over gRPC).

A command also pays a fixed start-up (imports; Beam's is larger), so each way is run
on one video too: the marginal rate, (N - 1) videos over the difference in CPU, is what
a job of many videos sees; the total rate includes the start-up once. Last, both ways
are called in rounds inside this process (imports done, one worker each), which
resolves the per-video cost best when it is small (original bytes).

  python benchmarks/prepare_beam_benchmark.py [--videos 32] [--size 340x256]
      [--seconds 10] [--workers 1,2] [--reencode short_side=256,gop=32] [--repeats 3]
      [--in_process_repeats 5]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline_benchmark import write_realistic_h264  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def become_subreaper() -> None:
    """Makes descendants whose parent exits without waiting for them (Beam's SDK workers
    are started through a shell and killed) our children, so that their CPU time is
    counted once we reap them (Linux; PR_SET_CHILD_SUBREAPER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_descendants(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            time.sleep(0.05)
    raise RuntimeError("descendants of the prepare command still run")


def run_prepare(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one prepare command in a fresh process."""
    reap_descendants()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "squeezetime_jax.data.prepare", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    reap_descendants()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"prepare {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def in_process_rates(args, root: str, list_path: str, tmp: str) -> dict | None:
    """Both ways called in this process, imports done: videos per CPU-second of the
    work itself (one worker; the DirectRunner runs its worker threads in-process)."""
    if not args.in_process_repeats:
        return None
    import tensorflow_datasets as tfds

    from squeezetime_jax.data import beam_prepare, prepare

    tfds.disable_progress_bar()
    out = os.path.join(tmp, "in_process")
    reencode = args.reencode or None

    def local():
        prepare.prepare_dataset(
            [list_path], root, out, overwrite=True, progress=False, reencode=reencode
        )

    def beam():
        beam_prepare.prepare_dataset_beam(
            [list_path],
            root,
            out,
            overwrite=True,
            reencode=reencode,
            videos_per_shard=args.videos_per_shard,
        )

    cpu = {"local": [], "beam": []}
    for repeat in range(args.in_process_repeats + 1):  # the first round warms up
        for way, call in (("local", local), ("beam", beam)):
            before = resource.getrusage(resource.RUSAGE_SELF)
            call()
            after = resource.getrusage(resource.RUSAGE_SELF)
            used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if repeat:
                cpu[way].append(round(used, 3))
    rates = {w: round(args.videos / statistics.median(c), 2) for w, c in cpu.items()}
    print(
        f"in one process, {args.videos} videos, median of {args.in_process_repeats}: "
        f"local {rates['local']} videos/CPU-s, beam {rates['beam']} videos/CPU-s, "
        f"Beam CPU overhead {rates['local'] / rates['beam'] - 1:+.1%}  (CPU s: {cpu})"
    )
    return {"videos_per_cpu_s": rates, "cpu_s": cpu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--size", default="340x256", help="WIDTHxHEIGHT of the sources")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each source")
    p.add_argument("--workers", default="1", help="comma-separated worker counts")
    p.add_argument(
        "--reencode", default="", help="prepare's --reencode ('' = original bytes)"
    )
    p.add_argument("--videos_per_shard", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="rounds of fresh commands")
    p.add_argument(
        "--in_process_repeats", type=int, default=5, help="rounds of in-process calls"
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    become_subreaper()
    width, height = (int(v) for v in args.size.split("x"))
    tmp = tempfile.mkdtemp(prefix="prepare_beam_bench_")
    root = os.path.join(tmp, "videos")
    os.makedirs(root)
    frames = int(round(args.seconds * 25))
    for i in range(args.videos):
        write_realistic_h264(
            os.path.join(root, f"v{i:04d}.mp4"), width, height, frames, seed=i
        )
    lists = {}
    for n in (1, args.videos):
        lists[n] = os.path.join(tmp, f"train_{n}.txt")
        with open(lists[n], "w") as f:
            f.writelines(f"v{i:04d}.mp4 {i % 3}\n" for i in range(n))

    def command(way: str, workers: int, n: int) -> list[str]:
        out = os.path.join(tmp, "out")
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["--list", lists[n], "--root", root, "--out", out]
        if args.reencode:
            cmd += ["--reencode", args.reencode]
        if way == "local":
            return cmd + ["--workers", str(workers)]
        cmd += ["--runner=DirectRunner", f"--videos_per_shard={args.videos_per_shard}"]
        cmd += [f"--direct_num_workers={workers}"]
        if workers > 1:
            cmd += ["--direct_running_mode=multi_processing"]
        return cmd

    results = []
    for workers in (int(w) for w in args.workers.split(",")) if args.repeats else ():
        runs = {(way, n): [] for way in ("local", "beam") for n in (1, args.videos)}
        for _ in range(args.repeats):  # interleaved, so drifting load hits every case
            for way, n in runs:
                runs[way, n].append(run_prepare(command(way, workers, n)))
        for way in ("local", "beam"):
            cpu1 = statistics.median(c for c, _ in runs[way, 1])
            cpu_n = statistics.median(c for c, _ in runs[way, args.videos])
            wall_n = statistics.median(w for _, w in runs[way, args.videos])
            row = {
                "way": way,
                "workers": workers,
                "startup_cpu_s": round(cpu1, 2),
                "cpu_s": round(cpu_n, 2),
                "wall_s": round(wall_n, 2),
                "videos_per_cpu_s": round(args.videos / cpu_n, 3),
                "marginal_videos_per_cpu_s": round((args.videos - 1) / (cpu_n - cpu1), 3),
                "runs": runs[way, args.videos],
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    if results:
        print(
            "\n| way | workers | CPU s, 1 video | CPU s, all | wall s | videos/CPU-s | "
            "marginal videos/CPU-s |\n|---|---:|---:|---:|---:|---:|---:|"
        )
    for r in results:
        print(
            f"| {r['way']} | {r['workers']} | {r['startup_cpu_s']} | {r['cpu_s']} | "
            f"{r['wall_s']} | {r['videos_per_cpu_s']} | {r['marginal_videos_per_cpu_s']} |"
        )
    for workers in sorted({r["workers"] for r in results}) if results else ():
        local, beam = (
            next(r for r in results if r["way"] == w and r["workers"] == workers)
            for w in ("local", "beam")
        )
        for key in ("videos_per_cpu_s", "marginal_videos_per_cpu_s"):
            overhead = local[key] / beam[key] - 1
            print(f"workers={workers}: Beam CPU overhead ({key}) {overhead:+.1%}")
    in_process = in_process_rates(args, root, lists[args.videos], tmp)
    meta = {
        "in_process": in_process,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "videos": args.videos,
        "size": args.size,
        "seconds": args.seconds,
        "reencode": args.reencode,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=2)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
