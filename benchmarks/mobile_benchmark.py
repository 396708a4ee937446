"""Batch-1 CPU latency of every way to run SqueezeTime, side by side, and what int8 costs.

  python benchmarks/mobile_benchmark.py [--checkpoint PATH] [--threads 2] [--repeats 20]

Times one 16x224x224 clip through: the JAX model (jit), the PyTorch twin (eager, as
loaded, and with BatchNorm folded), the torch.export program (.pt2), the ExecuTorch
XNNPACK program in float32 and int8 (PT2E, static, per-channel weights), and
onnxruntime; then compares int8 and float32 logits on generated clips (relative error,
cosine similarity, top-1 and top-5 agreement with the JAX model). Without --checkpoint it
uses a randomly initialized K400 model with random, well-conditioned BatchNorm
statistics: latency does not depend on the weights, but agreement figures do (see the
notes printed at the end). Prints a Markdown table; --json also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

PAPER_PHONE_MS = 139.0  # the paper's phone CPU latency, 16x224x224
RELEASED_TORCH_MS = 124.0  # the released PyTorch model measured on this machine, 2 threads


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default=None,
        help=".pth or converted directory (default: random K400 model)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--agreement-clips", type=int, default=16)
    parser.add_argument("--workdir", default=None, help="where to write the exported files")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the files already in --workdir (from an earlier run with "
        "the same --checkpoint) instead of exporting again",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser


def _set_threads(threads: int) -> None:
    # Before torch is imported. XLA's CPU client has no thread-count setting of its own:
    # it uses every core, so run on a machine (or under taskset) with `threads` cores.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _time(run, x, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _conversion(checkpoint):
    import torch

    from squeezetime_jax.checkpoints.restore import restore
    from squeezetime_jax.interop.conversion import from_torch
    from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_

    if checkpoint:
        return restore(checkpoint)
    torch.manual_seed(0)
    twin = randomize_batchnorm_(SqueezeTimeTorch(), seed=0)
    return from_torch(
        {k: v.numpy() for k, v in twin.state_dict().items()}, source="random K400 model"
    )


def _agreement(candidate, reference):
    import numpy as np

    rel = np.abs(candidate - reference).max(-1) / np.abs(reference).max(-1)
    cos = (candidate * reference).sum(-1) / (
        np.linalg.norm(candidate, axis=-1) * np.linalg.norm(reference, axis=-1)
    )
    top5 = [
        len(set(np.argsort(-c)[:5]) & set(np.argsort(-r)[:5])) / 5
        for c, r in zip(candidate, reference)
    ]
    return {
        "median_relative_error": float(np.median(rel)),
        "max_relative_error": float(rel.max()),
        "min_cosine": float(cos.min()),
        "top1_agreement": float((candidate.argmax(-1) == reference.argmax(-1)).mean()),
        "top5_overlap": float(np.mean(top5)),
    }


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _set_threads(args.threads)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from squeezetime_jax.export import mobile as export
    from squeezetime_jax.models import build_model

    export.require_extras(export.FORMATS)
    torch.set_num_threads(args.threads)
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(args.threads)  # XNNPACK's worker threads

    workdir = args.workdir or tempfile.mkdtemp(prefix="squeezetime_mobile_")
    os.makedirs(workdir, exist_ok=True)
    conversion = _conversion(args.checkpoint)
    frames, size = args.frames, args.size
    clip = export.reference_clip(frames, size)
    x = export.to_program_input(clip)

    print(f"exporting to {workdir} (unless --reuse) ...", file=sys.stderr)
    module = build_model(conversion.config)
    jax_apply = jax.jit(lambda v, c: module.apply(v, c, train=False))
    nthwc = jnp.asarray(np.transpose(x, (0, 2, 3, 4, 1)))
    run_jax = lambda _: jax_apply(conversion.variables, nthwc).block_until_ready()
    twin = export.torch_twin(conversion)
    folded = export.inference_model(twin, frames, size)
    program = export.export_program(folded, x)
    path = lambda name: os.path.join(workdir, name)
    pt2, pte, onnx_path, pte_int8 = (
        path("squeezetime.pt2"),
        path("squeezetime_xnnpack.pte"),
        path("squeezetime.onnx"),
        path("squeezetime_xnnpack_int8.pte"),
    )
    if not args.reuse or not all(map(os.path.isfile, (pt2, pte, onnx_path, pte_int8))):
        export.write_pt2(pt2, program)
        export.write_pte(pte, program, log=lambda line: print(line, file=sys.stderr))
        export.write_onnx(onnx_path, program)
        calibration = [
            export.to_program_input(export.reference_clip(frames, size, seed))
            for seed in range(1, export.CALIBRATION_CLIPS + 1)
        ]
        export.write_pte(
            pte_int8,
            export.quantize_int8(folded, x, calibration),
            log=lambda line: print(line, file=sys.stderr),
        )

    def eager(model):
        def run(inp):
            with torch.inference_mode():
                return model(torch.from_numpy(inp)).numpy()

        return run

    runners = {
        "JAX (jit, XLA CPU)": run_jax,
        "PyTorch eager (as loaded)": eager(twin),
        "PyTorch eager (BN folded)": eager(folded),
        "torch.export program (.pt2)": export.load_pt2(pt2),
        "ExecuTorch XNNPACK fp32 (.pte)": export.load_pte(pte),
        "ExecuTorch XNNPACK int8 (.pte)": export.load_pte(pte_int8),
        "onnxruntime (.onnx)": export.load_onnx(onnx_path, threads=args.threads),
    }
    print(f"timing {len(runners)} runtimes, {args.repeats} runs each ...", file=sys.stderr)
    load_before = os.getloadavg()[0]
    medians, spreads, minima = {}, {}, {}
    # Interleaved rounds, so that drift in machine load hits every runtime alike.
    samples = {name: [] for name in runners}
    for name, run in runners.items():
        _time(run, x, 0, args.warmup)
    for _ in range(args.repeats):
        for name, run in runners.items():
            samples[name] += _time(run, x, 1, 0)
    for name, times in samples.items():
        medians[name] = statistics.median(times)
        minima[name] = min(times)
        q = statistics.quantiles(times, n=10)
        spreads[name] = (q[0], q[-1])

    print("agreement on generated clips ...", file=sys.stderr)
    clips = [
        export.reference_clip(frames, size, seed)
        for seed in range(100, 100 + args.agreement_clips)
    ]
    reference = np.concatenate(
        [
            np.asarray(
                jax_apply(conversion.variables, jnp.asarray(export.normalize(c)[None]))
            )
            for c in clips
        ]
    )
    outputs = {
        name: np.concatenate([runners[name](export.to_program_input(c)) for c in clips])
        for name in (
            "ExecuTorch XNNPACK fp32 (.pte)",
            "ExecuTorch XNNPACK int8 (.pte)",
            "onnxruntime (.onnx)",
        )
    }
    agreement = {name: _agreement(out, reference) for name, out in outputs.items()}

    base = medians["JAX (jit, XLA CPU)"]
    print(
        f"\nSqueezeTime K400 (depth 50), batch 1, {frames}x{size}x{size}, {args.threads} "
        f"threads; {platform.machine()}, {os.cpu_count()} cores; {args.repeats} interleaved "
        f"rounds; 1-min load average {load_before:.2f} before timing, "
        f"{os.getloadavg()[0]:.2f} after\n"
    )
    print(
        "| runtime | median ms | min ms | p10-p90 ms | vs JAX | vs released PyTorch 124 ms "
        "| vs paper phone 139 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ms in medians.items():
        lo, hi = spreads[name]
        print(
            f"| {name} | {ms:.1f} | {minima[name]:.1f} | {lo:.1f}-{hi:.1f} | "
            f"{ms / base:.2f}x | {ms / RELEASED_TORCH_MS:.2f}x | {ms / PAPER_PHONE_MS:.2f}x |"
        )
    print(f"\nLogit agreement with the JAX float32 model on {len(clips)} generated clips\n")
    print(
        "| program | median rel. err | max rel. err | min cosine | top-1 agree | "
        "top-5 overlap |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, a in agreement.items():
        print(
            f"| {name} | {a['median_relative_error']:.2e} | {a['max_relative_error']:.2e} "
            f"| {a['min_cosine']:.5f} | {a['top1_agreement']:.0%} | {a['top5_overlap']:.0%} |"
        )
    sizes = {
        os.path.basename(p): os.path.getsize(p) / 2**20
        for p in (pt2, pte, pte_int8, onnx_path)
    }
    print("\nfile sizes (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    if not args.checkpoint:
        print(
            "note: random weights; a trained model's logits are more peaked, so its top-1 "
            "agreement under int8 is typically higher than a random model's."
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "median_ms": medians,
                    "min_ms": minima,
                    "p10_p90_ms": spreads,
                    "agreement": agreement,
                    "file_mib": sizes,
                    "threads": args.threads,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
