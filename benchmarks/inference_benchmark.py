"""CPU inference latency: the JAX model (jit, warm) against the PyTorch twin, side by side.

  python benchmarks/inference_benchmark.py [--batches 1,8] [--threads 2] [--repeats 10]
                                           [--torch-compile] [--xla-defaults]
                                           [--reuse-freed-memory] [--json out.json]

One process, one randomly initialized K400 model (depth 50, random well-conditioned
BatchNorm statistics) converted from the PyTorch twin, 16x224x224 float32 clips. Every
runtime gets the same CPU threads: the process is pinned to `--threads` cores before
JAX starts (XLA sizes its thread pool from the cores it may run on) and
torch.set_num_threads(threads). Runtimes run in interleaved rounds, so drift in machine
load hits them alike; the table gives medians, minima, the CPU time per call (both
threads together: the work done, which load barely changes) and ratios from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time torch.compile (inductor; compiles for minutes on CPU)",
    )
    parser.add_argument(
        "--xla-defaults",
        action="store_true",
        help="also time JAX compiled with XLA's default options instead of "
        "squeezetime_jax.runtime.compile_options (YNNPACK convolutions on CPU)",
    )
    parser.add_argument(
        "--reuse-freed-memory",
        action="store_true",
        help="set up the process as eval.py does (squeezetime_jax.runtime.host_memory:"
        " freed heap memory kept for reuse, which PyTorch gets too, and "
        "CPU computations on the calling thread)",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser


def pin_threads(threads: int) -> None:
    """Same cores for XLA and PyTorch; call before jax or torch is imported."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cores)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def time_interleaved(runners: dict, repeats: int, warmup: int) -> dict:
    """{name: (wall ms list, cpu ms list)} from `repeats` interleaved rounds."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples = {name: ([], []) for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            samples[name][0].append((time.perf_counter() - wall) * 1e3)
            samples[name][1].append((time.process_time() - cpu) * 1e3)
    return samples


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    pin_threads(args.threads)
    if args.reuse_freed_memory:
        from squeezetime_jax.runtime import host_memory

        host_memory.reuse_freed_memory()
        host_memory.run_cpu_computations_on_calling_thread()
    import jax
    import numpy as np
    import torch

    from squeezetime_jax.interop.conversion import from_torch
    from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
    from squeezetime_jax.models import build_model
    from squeezetime_jax.runtime.compile_options import compiler_options

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    twin = randomize_batchnorm_(SqueezeTimeTorch(), seed=0).eval()
    conversion = from_torch(
        {k: v.numpy() for k, v in twin.state_dict().items()}, source="random K400 model"
    )
    model = build_model(conversion.config)
    variables = jax.device_put(conversion.variables)
    apply = lambda v, clip: model.apply(v, clip, train=False)
    forward = jax.jit(apply, compiler_options=compiler_options())
    forward_xla_defaults = jax.jit(apply) if args.xla_defaults else None
    compiled_twin = None
    if args.torch_compile:
        compiled_twin = torch.compile(twin)

    results = {}
    load_before = os.getloadavg()
    for batch in [int(b) for b in args.batches.split(",")]:
        rng = np.random.default_rng(batch)
        ncthw = rng.standard_normal(
            (batch, 3, args.frames, args.size, args.size), np.float32
        )
        clip = jax.device_put(np.ascontiguousarray(np.transpose(ncthw, (0, 2, 3, 4, 1))))
        tensor = torch.from_numpy(ncthw)
        print(f"batch {batch}: compiling ...", file=sys.stderr)
        jax_logits = np.asarray(forward(variables, clip))

        def eager(module):
            def run():
                with torch.inference_mode():
                    return module(tensor)

            return run

        runners = {
            "JAX jit (XLA CPU)": lambda: forward(variables, clip).block_until_ready(),
            "PyTorch eager": eager(twin),
        }
        if forward_xla_defaults is not None:
            runners["JAX jit, XLA default options"] = lambda: forward_xla_defaults(
                variables, clip
            ).block_until_ready()
        with torch.inference_mode():
            torch_logits = twin(tensor).numpy()
        agreement = float(
            np.abs(jax_logits - torch_logits).max() / np.abs(torch_logits).max()
        )
        if compiled_twin is not None:
            try:
                eager(compiled_twin)()
                runners["PyTorch torch.compile"] = eager(compiled_twin)
            except Exception as error:  # inductor needs a working C++ toolchain
                print(f"torch.compile failed: {error!r}", file=sys.stderr)
        print(
            f"batch {batch}: timing {args.repeats} interleaved rounds ...", file=sys.stderr
        )
        samples = time_interleaved(runners, args.repeats, args.warmup)
        results[batch] = {
            "agreement_rel": agreement,
            "median_ms": {k: statistics.median(w) for k, (w, _) in samples.items()},
            "min_ms": {k: min(w) for k, (w, _) in samples.items()},
            "cpu_ms": {k: statistics.median(c) for k, (_, c) in samples.items()},
        }
    load_after = os.getloadavg()

    print(
        f"\nSqueezeTime K400 (depth 50), {args.frames}x{args.size}x{args.size} float32, "
        f"{args.threads} threads; {platform.machine()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__}, torch {torch.__version__}; {args.repeats} interleaved rounds; "
        f"load average {load_before[0]:.1f}/{load_before[1]:.1f} before, "
        f"{load_after[0]:.1f}/{load_after[1]:.1f} after\n"
    )
    print(
        "| batch | runtime | median ms | min ms | CPU ms per call | clips/s (median) "
        "| median vs PyTorch eager | CPU vs PyTorch eager |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for batch, r in results.items():
        base, base_cpu = r["median_ms"]["PyTorch eager"], r["cpu_ms"]["PyTorch eager"]
        for name, ms in r["median_ms"].items():
            print(
                f"| {batch} | {name} | {ms:.1f} | {r['min_ms'][name]:.1f} | "
                f"{r['cpu_ms'][name]:.1f} | {batch * 1e3 / ms:.2f} | {ms / base:.2f}x | "
                f"{r['cpu_ms'][name] / base_cpu:.2f}x |"
            )
    for batch, r in results.items():
        print(
            f"batch {batch}: JAX vs PyTorch logits, max |diff| / max |logit| = "
            f"{r['agreement_rel']:.1e}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "results": results,
                    "threads": args.threads,
                    "load_before": load_before,
                    "load_after": load_after,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
