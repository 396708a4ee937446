"""Where the CPU train step's time goes: a jax.profiler trace summed by op kind.

  python benchmarks/step_profile.py [--batch 4] [--size 224] [--top 12] [--cores N]
                                    [--framework jax|torch]

Compiles the K400 train step (as train_benchmark.py builds it), runs it twice to warm
up, then traces one step and sums the duration of every XLA op event by kind (the
fusion name without its number: ynn_fusion, transpose_copy_fusion, ...). YNNPACK
fusions are split further using the optimized HLO: convolutions whose window spans the
feature map (weight gradients, which XLA CPU writes as convolutions with the batch as
the contracted axis), other convolutions by window size, and matmuls. Durations are
summed over XLA's threads, so their total exceeds the step's wall time when ops overlap.

Convolutions on Eigen (what `squeezetime_jax.runtime.compile_options` selects on CPU) run on
the intra-op thread pool after their op event has ended, so with several threads the
trace shows little of their time. `--cores 1` pins the process to one core, where
every op runs in its own event: a per-op CPU account rather than a timeline.

`--framework torch` profiles the PyTorch twin's step instead (torch.profiler, self
CPU time per aten op, on `--cores` threads, default 2), for the same account of the
other side.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _called_computations(hlo: str) -> tuple[dict[str, str], dict[str, str]]:
    """(instruction name -> its definition, computation name -> its body)."""
    lines = {}
    for line in hlo.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
        if match:
            lines.setdefault(match.group(1), match.group(2))
    bodies = {
        m.group(1): m.group(2)
        for m in re.finditer(r"\n%?([\w.\-]+) \([^\n]*\{\n(.*?)\n\}", hlo, re.S)
    }
    return lines, bodies


def ynn_kind(name: str, lines: dict, bodies: dict) -> str:
    call = re.search(r"calls=%?([\w.\-]+)", lines.get(name, ""))
    body = bodies.get(call.group(1), "") if call else ""
    conv = re.search(
        r"ROOT \S+ = \w+\[(\d+),(\d+),(\d+),\d+\]\S* convolution\("
        r"%?([\w.\-]+), [^)]*\), window=\{size=(\d+)x\d+([^}]*)\}",
        body,
    )
    if conv:
        out_h, size, extra = int(conv.group(2)), int(conv.group(5)), conv.group(6)
        lhs = re.search(rf"%?{re.escape(conv.group(4))} = \w+\[\d+,(\d+),", body)
        lhs_h = int(lhs.group(1)) if lhs else 0
        # A weight gradient slides the output gradient over the whole input: its window
        # is the feature map and its output the (small) kernel.
        if "rhs_dilate" in extra or (size >= lhs_h and out_h < lhs_h):
            return "convolution, weight gradient"
        return f"convolution {size}x{size}, forward or input gradient"
    return "matmul" if "dot(" in body else "other YNNPACK fusion"


def torch_profile(args) -> int:
    import train_benchmark
    from torch.profiler import ProfilerActivity, profile

    worker_args = train_benchmark._parser().parse_args(
        [
            "--worker",
            "torch",
            "--batch",
            str(args.batch),
            "--size",
            str(args.size),
            "--threads",
            str(args.cores or 2),
        ]
    )
    run = train_benchmark._torch_worker(worker_args)
    run(), run()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) / 1e3
    print(
        f"PyTorch train step, batch {args.batch}, 16x{args.size}x{args.size} float32, "
        f"{args.cores or 2} threads: {wall * 1e3:.0f} ms wall; {total:.0f} ms of ops "
        f"(self CPU time of the calling thread)\n"
    )
    print("| op | calls | self ms |\n|---|---:|---:|")
    for event in ops[: args.top]:
        print(f"| {event.key} | {event.count} | {event.self_cpu_time_total / 1e3:.1f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--cores",
        type=int,
        default=None,
        help="pin to this many cores before XLA starts (default: all)",
    )
    parser.add_argument("--framework", choices=("jax", "torch"), default="jax")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    if args.framework == "torch":
        return torch_profile(args)

    import jax
    import train_benchmark

    worker_args = train_benchmark._parser().parse_args(
        ["--worker", "jax", "--batch", str(args.batch), "--size", str(args.size)]
    )
    run = train_benchmark._jax_worker(worker_args)
    run(), run()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    hlo = run.hlo_text()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            run()
        path = sorted(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True))[-1]
        trace = json.load(gzip.open(path))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    lines, bodies = _called_computations(hlo)
    kinds, ynn = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name not in lines:
            continue  # Python frames, executor and thread-pool bookkeeping
        kind = re.sub(r"\.\d+$", "", name)
        kinds[kind] += event.get("dur", 0) / 1e3
        if kind == "ynn_fusion":
            ynn[ynn_kind(name, lines, bodies)] += event.get("dur", 0) / 1e3
    print(
        f"train step, batch {args.batch}, 16x{args.size}x{args.size} float32: "
        f"{wall * 1e3:.0f} ms wall; {sum(kinds.values()):.0f} ms of XLA ops "
        f"(summed over threads)\n"
    )
    print("| op kind | ms |\n|---|---:|")
    for kind, ms in kinds.most_common(args.top):
        print(f"| {kind} | {ms:.1f} |")
    print("\n| YNNPACK fusions | ms |\n|---|---:|")
    for kind, ms in ynn.most_common():
        print(f"| {kind} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
