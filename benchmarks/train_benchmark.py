"""CPU training throughput and peak memory: the JAX train step against the PyTorch twin.

  python benchmarks/train_benchmark.py [--batches 4,8] [--threads 2] [--steps 6]
                                       [--xla-defaults] [--xla-gradients]
                                       [--heap-variants] [--json out.json]

A full step at 16x224x224 float32 on each side: uint8 clips normalized inside the step,
forward in train mode (BatchNorm batch statistics and running-average update, dropout),
cross-entropy, backward, global-norm clipping at 40, SGD with momentum 0.9 and coupled
weight decay 7e-5 (torch.optim.SGD, and the optax chain of squeezetime_jax.training).
JAX runs `train_step` jitted with the state donated, with glibc reusing freed memory
as train.py sets it up (squeezetime_jax.runtime.host_memory). Each framework runs in its own
worker subprocess, so that each one's peak resident memory (getrusage maxrss) is its
own, reported also as it was before the first step (runtime, state and, for JAX, what
compiling left resident). The parent drives the workers one step at a time in
interleaved rounds, so both see the same machine load, and reports median seconds per
step, clips/s and ratios, and each worker's median page faults and system CPU time
per step (getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REFERENCE_BATCH = 64
LABELS = {
    "jax": "JAX (jit, donated state)",
    "torch": "PyTorch eager",
    "jax-xla-defaults": "JAX, XLA default options",
    "jax-xla-gradients": "JAX, XLA's kernel gradients",
    "jax-default-heap": "JAX, glibc's default heap settings",
    "torch-reuse-heap": "PyTorch eager, heap reused as JAX's",
}


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="4,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--worker", choices=tuple(LABELS), default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--xla-defaults",
        action="store_true",
        help="also run JAX compiled with XLA's default options instead of "
        "squeezetime_jax.runtime.compile_options (YNNPACK convolutions on CPU)",
    )
    parser.add_argument(
        "--xla-gradients",
        action="store_true",
        help="also run JAX with XLA's own convolution kernel gradients "
        "instead of squeezetime_jax.models.convolution's (1x1 layers "
        "stay matmuls)",
    )
    parser.add_argument(
        "--heap-variants",
        action="store_true",
        help="also run JAX with glibc's default heap settings (freed large "
        "blocks unmapped) and PyTorch with the heap settings JAX uses",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser


def _pin(threads: int) -> None:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _random_batch(batch: int, frames: int, size: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "video": rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, 400, (batch,), dtype=np.int32),
    }


def _jax_worker(args):
    import functools

    from squeezetime_jax.runtime import host_memory

    if args.worker != "jax-default-heap":  # as train.py sets up the process
        host_memory.reuse_freed_memory()
        host_memory.run_cpu_computations_on_calling_thread()
    import jax

    from squeezetime_jax.models import build_model, model_config
    from squeezetime_jax.runtime.compile_options import compiler_options
    from squeezetime_jax.training import optim
    from squeezetime_jax.training.state import create_train_state, init_train_state
    from squeezetime_jax.training.step import train_step

    if args.worker == "jax-xla-gradients":
        # This worker's own process: swap the model's convolution for the 1x1-only form.
        from squeezetime_jax.models import convolution, squeezetime

        squeezetime.conv_general_dilated = convolution.conv_pointwise_as_matmul
    model = build_model(model_config())
    config = _optim_config(optim)
    schedule = optim.make_schedule(
        config, args.batch, total_steps=1000, steps_per_epoch=100
    )
    tx = optim.make_optimizer(config, schedule)
    init = functools.partial(
        create_train_state, model, tx, clip_shape=(1, args.frames, args.size, args.size, 3)
    )
    state = init_train_state(init, jax.random.key_data(jax.random.key(0)), None)
    step = jax.jit(
        functools.partial(train_step, model=model, tx=tx, schedule=schedule),
        donate_argnums=0,
        compiler_options=None if args.worker == "jax-xla-defaults" else compiler_options(),
    )
    batch = jax.device_put(_random_batch(args.batch, args.frames, args.size, 0))
    compiled = step.lower(state, batch).compile()
    host_memory.release_freed_memory()  # what compiling left, as the trainer's first step
    steps_run = 0

    def run():
        nonlocal state, steps_run
        state, metrics = compiled(state, batch)
        loss = float(metrics["loss"])  # waits for the step
        steps_run += 1
        if steps_run == 1:
            # As the trainer after its first step: the heap freed there goes back, so
            # that later steps settle into one reused temporary buffer.
            host_memory.release_freed_memory()
        return loss

    run.hlo_text = compiled.as_text  # for step_profile.py
    return run


def _optim_config(optim):
    import ml_collections

    return ml_collections.ConfigDict(
        {
            "optimizer": optim.optimizer_config(),
            "schedule": {"name": "constant"},
        }
    )


def _torch_worker(args):
    if args.worker == "torch-reuse-heap":
        from squeezetime_jax.runtime import host_memory

        host_memory.reuse_freed_memory()
    import torch
    import torch.nn.functional as F

    from squeezetime_jax.interop.torch_model import SqueezeTimeTorch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SqueezeTimeTorch().train()
    lr = 0.015 * args.batch / REFERENCE_BATCH
    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=7e-5)
    data = _random_batch(args.batch, args.frames, args.size, 0)
    video = torch.from_numpy(data["video"])
    labels = torch.from_numpy(data["label"]).long()
    mean = torch.tensor((123.675, 116.28, 103.53)).view(1, 3, 1, 1, 1)
    std = torch.tensor((58.395, 57.12, 57.375)).view(1, 3, 1, 1, 1)

    def run():
        # uint8 (N, T, H, W, C) -> normalized float (N, C, T, H, W), inside the step as in JAX.
        clip = (video.permute(0, 4, 1, 2, 3).float() - mean) / std
        loss = F.cross_entropy(model(clip), labels)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=40.0)
        sgd.step()
        return loss.item()

    return run


def worker(args) -> int:
    """Builds one framework's step, then runs one step per line read from stdin."""
    _pin(args.threads)
    run = (_jax_worker if args.worker.startswith("jax") else _torch_worker)(args)
    # Before any step: the runtime, the state and (JAX) what compiling left resident.
    built_gib = _maxrss_gib()
    for _ in range(args.warmup):
        run()
    print(json.dumps({"ready": True, "built_gib": built_gib}), flush=True)
    for line in sys.stdin:
        if line.strip() == "step":
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            loss = run()
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            print(
                json.dumps(
                    {
                        "seconds": seconds,
                        "loss": loss,
                        "page_faults": after.ru_minflt - before.ru_minflt,
                        "system_seconds": after.ru_stime - before.ru_stime,
                    }
                ),
                flush=True,
            )
        else:
            break
    print(json.dumps({"maxrss_gib": _maxrss_gib()}), flush=True)
    return 0


def _maxrss_gib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _spawn(framework: str, batch: int, args) -> subprocess.Popen:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        framework,
        "--batch",
        str(batch),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--frames",
        str(args.frames),
        "--size",
        str(args.size),
    ]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _read(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {proc.args[3]} exited with {proc.wait()}")
    return json.loads(line)


def measure(batch: int, args) -> dict:
    """The workers for one batch size, driven in interleaved rounds."""
    names = (
        ("jax", "torch")
        + (("jax-xla-defaults",) if args.xla_defaults else ())
        + (("jax-xla-gradients",) if args.xla_gradients else ())
        + (("jax-default-heap", "torch-reuse-heap") if args.heap_variants else ())
    )
    workers = {name: _spawn(name, batch, args) for name in names}
    # Compiling/warming up one at a time keeps them from slowing each other down.
    built = {name: _read(proc)["built_gib"] for name, proc in workers.items()}
    seconds = {name: [] for name in workers}
    faults = {name: [] for name in workers}
    system = {name: [] for name in workers}
    losses = {name: [] for name in workers}
    for _ in range(args.steps):
        for name, proc in workers.items():
            proc.stdin.write("step\n")
            proc.stdin.flush()
            result = _read(proc)
            seconds[name].append(result["seconds"])
            faults[name].append(result["page_faults"])
            system[name].append(result["system_seconds"])
            losses[name].append(result["loss"])
    rss = {}
    for name, proc in workers.items():
        proc.stdin.write("done\n")
        proc.stdin.flush()
        rss[name] = _read(proc)["maxrss_gib"]
        proc.wait()
    return {
        "seconds": seconds,
        "losses": losses,
        "maxrss_gib": rss,
        "built_gib": built,
        "page_faults": faults,
        "system_seconds": system,
    }


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        return worker(args)
    load_before = os.getloadavg()
    results = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        print(
            f"batch {batch}: starting workers (JAX compiles for a few minutes) ...",
            file=sys.stderr,
        )
        results[batch] = measure(batch, args)
    load_after = os.getloadavg()
    print(
        f"\nSqueezeTime K400 (depth 50) train step, {args.frames}x{args.size}x{args.size} "
        f"float32, {args.threads} threads; {platform.machine()}, {os.cpu_count()} cores; "
        f"{args.steps} interleaved steps after {args.warmup} warm-up; load average "
        f"{load_before[0]:.1f}/{load_before[1]:.1f} before, "
        f"{load_after[0]:.1f}/{load_after[1]:.1f} after\n"
    )
    print(
        "| batch | framework | median s/step | min s/step | clips/s (median) "
        "| speed vs PyTorch | peak RSS GiB | of which before the first step GiB "
        "| page faults per step | system CPU s per step |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch, r in results.items():
        medians = {k: statistics.median(v) for k, v in r["seconds"].items()}
        for name in r["seconds"]:
            label, speedup = LABELS[name], medians["torch"] / medians[name]
            print(
                f"| {batch} | {label} | {medians[name]:.2f} | {min(r['seconds'][name]):.2f} | "
                f"{batch / medians[name]:.2f} | {speedup:.2f}x | {r['maxrss_gib'][name]:.2f} | "
                f"{r['built_gib'][name]:.2f} | {statistics.median(r['page_faults'][name]):,.0f} "
                f"| {statistics.median(r['system_seconds'][name]):.2f} |"
            )
    for batch, r in results.items():
        print(
            f"batch {batch}: losses JAX {[round(x, 3) for x in r['losses']['jax']]}, "
            f"PyTorch {[round(x, 3) for x in r['losses']['torch']]}"
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
