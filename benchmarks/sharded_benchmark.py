"""The train step sharded over 8 simulated CPU devices against 1 device: same result, and at what cost.

  python benchmarks/sharded_benchmark.py [--batch 8] [--size 224] [--steps 3] [--shard-params]
                                         [--float64]

Runs one jitted `train_step` on a 1-device mesh and on an 8-device data-parallel mesh
(XLA's host platform split into 8 devices), from the same state and batch, and reports:
how far loss, parameters and BatchNorm statistics differ after the first step (the sharded step must compute the global-batch step: BatchNorm statistics
over all 8 shards, gradients summed across them); the collectives XLA inserted (count and
bytes of all-reduce and friends, from the optimized HLO); and the step time of each.
The 8 devices share this machine's cores, so the time ratio measures the overhead of
partitioning and collectives, not a speed-up. With --float64 the whole state and the
computation are float64: if partitioning is exact, the two meshes then agree to about
1e-12, and whatever float32 shows beyond that is float32 rounding, not the sharding.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import statistics
import sys
import time

from xla_account import hlo_shape_bytes  # benchmarks/ is on sys.path when run as a script

DEVICES = 8


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mesh")
    parser.add_argument(
        "--shard-params",
        action="store_true",
        help="FSDP-style parameter sharding instead of replication",
    )
    parser.add_argument(
        "--float64",
        action="store_true",
        help="state and computation in float64 (checks exactness)",
    )
    return parser


_COLLECTIVE = re.compile(
    r"= (.+?) (all-reduce|all-gather|reduce-scatter|all-to-all|"
    r"collective-permute)(?:-start)?\("
)


def collectives(hlo_text: str) -> dict[str, tuple[int, int]]:
    """{collective: (count, bytes)} in an optimized HLO module."""
    found: dict[str, tuple[int, int]] = {}
    for shape, op in _COLLECTIVE.findall(hlo_text):
        count, size = found.get(op, (0, 0))
        found[op] = (count + 1, size + hlo_shape_bytes(shape))
    return found


def compare(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> tuple[float, str, int, int]:
    """(worst max |a - b|, where, arrays outside rtol/atol, arrays) over two pytrees.

    Absolute differences with the tolerance of the tests: several arrays are close to
    zero after one step (BatchNorm biases, running means of channels that follow a
    normalized input), so a relative difference would only measure rounding noise.
    """
    import jax
    import numpy as np

    pairs = jax.tree_util.tree_leaves_with_path(
        jax.tree.map(
            lambda x, y: (np.asarray(x, np.float64), np.asarray(y, np.float64)), a, b
        ),
        is_leaf=lambda node: isinstance(node, tuple),
    )
    worst, where, failing = -1.0, "", 0
    for path, (x, y) in pairs:
        diff = float(np.abs(x - y).max())
        failing += not np.allclose(x, y, rtol=rtol, atol=atol)
        if diff > worst:
            worst, where = diff, jax.tree_util.keystr(path)
    return worst, where, failing, len(pairs)


def update_difference(before, after_one, after_many) -> tuple[float, float, str]:
    """max |change_8 - change_1| / max |change_1| per array: (median, worst, worst's path).

    Arrays whose gradient is zero in exact arithmetic (a BatchNorm bias whose every
    consumer is a conv followed by another BatchNorm, which removes any per-channel
    shift) change by rounding noise only, and their ratio is large on any two devices.
    """
    import jax
    import numpy as np

    ratios = jax.tree_util.tree_leaves_with_path(
        jax.tree.map(
            lambda p, a, b: float(
                np.abs(np.asarray(b, np.float64) - np.asarray(a, np.float64)).max()
                / max(
                    float(
                        np.abs(np.asarray(a, np.float64) - np.asarray(p, np.float64)).max()
                    ),
                    1e-30,
                )
            ),
            before,
            after_one,
            after_many,
        )
    )
    path, worst = max(ratios, key=lambda item: item[1])
    return (float(np.median([r for _, r in ratios])), worst, jax.tree_util.keystr(path))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={DEVICES}"
    import jax
    import ml_collections
    import numpy as np

    jax.config.update("jax_enable_x64", args.float64)
    dtype = "float64" if args.float64 else "float32"

    from squeezetime_jax.models import build_model, model_config
    from squeezetime_jax.training import mesh as mesh_lib
    from squeezetime_jax.training import optim
    from squeezetime_jax.training.state import create_train_state, init_train_state
    from squeezetime_jax.training.step import train_step

    model = build_model(model_config(depth=args.depth, num_frames=args.frames, dtype=dtype))
    config = ml_collections.ConfigDict(
        {"optimizer": optim.optimizer_config(), "schedule": {"name": "constant"}}
    )
    schedule = optim.make_schedule(
        config, args.batch, total_steps=1000, steps_per_epoch=100
    )
    tx = optim.make_optimizer(config, schedule)
    init = functools.partial(
        create_train_state, model, tx, clip_shape=(1, args.frames, args.size, args.size, 3)
    )
    state = jax.device_get(
        init_train_state(init, jax.random.key_data(jax.random.key(0)), None)
    )
    if args.float64:
        state = jax.tree.map(
            lambda x: x.astype(np.float64) if x.dtype == np.float32 else x, state
        )
    rng = np.random.default_rng(0)
    batch = {
        "video": rng.integers(
            0, 256, (args.batch, args.frames, args.size, args.size, 3), dtype=np.uint8
        ),
        "label": rng.integers(0, 400, (args.batch,), dtype=np.int32),
    }

    results = {}
    for devices in (jax.devices()[:1], jax.devices()[:DEVICES]):
        mesh = mesh_lib.make_mesh((-1,), devices=devices)
        shardings = mesh_lib.state_shardings(
            mesh, jax.eval_shape(lambda: state), args.shard_params
        )
        step = jax.jit(
            functools.partial(train_step, model=model, tx=tx, schedule=schedule),
            in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
            out_shardings=(shardings, mesh_lib.replicated(mesh)),
        )
        placed = jax.device_put(state, shardings)
        global_batch = mesh_lib.global_batch(batch, mesh)
        print(f"{len(devices)} device(s): compiling ...", file=sys.stderr)
        start = time.perf_counter()
        compiled = step.lower(placed, global_batch).compile()
        compile_s = time.perf_counter() - start
        first_state, metrics = compiled(placed, global_batch)
        first = jax.device_get(
            (first_state.params, first_state.batch_stats, metrics["loss"])
        )
        times, current = [], first_state
        for _ in range(args.steps):
            start = time.perf_counter()
            current, metrics = compiled(current, global_batch)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
        results[len(devices)] = {
            "first": first,
            "times": times,
            "compile_s": compile_s,
            "collectives": collectives(compiled.as_text()),
        }

    one, many = results[1], results[DEVICES]
    print(
        f"\nSqueezeTime depth {args.depth} train step, batch {args.batch}, "
        f"{args.frames}x{args.size}x{args.size} {dtype}, parameters "
        f"{'sharded (FSDP)' if args.shard_params else 'replicated'}; {platform.machine()}, "
        f"{os.cpu_count()} cores shared by all devices; load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print(
        "Correctness after one step, 8 devices vs 1 (float32 tolerance of the tests: "
        "rtol 1e-4, atol 1e-5):"
    )
    print(
        f"- loss: relative difference "
        f"{abs(many['first'][2] - one['first'][2]) / abs(one['first'][2]):.1e}"
    )
    for label, index in (("parameters", 0), ("BatchNorm statistics", 1)):
        worst, where, failing, count = compare(many["first"][index], one["first"][index])
        print(
            f"- {label}: largest |difference| {worst:.1e} (at {where}); "
            f"{failing} of {count} arrays outside the tolerance"
        )
    median, worst, where = update_difference(
        state.params, one["first"][0], many["first"][0]
    )
    print(
        f"- the step's change of each parameter array, 8 devices vs 1, as a share of the "
        f"change: median {median:.1e}, worst {worst:.1e} (at {where})"
    )
    print()
    print("| devices | median s/step | min s/step | compile s | collectives in the step |")
    print("|---:|---:|---:|---:|---|")
    for count, r in results.items():
        coll = (
            ", ".join(
                f"{n} {op} ({b / 2**20:.1f} MiB)"
                for op, (n, b) in sorted(r["collectives"].items())
            )
            or "none"
        )
        print(
            f"| {count} | {statistics.median(r['times']):.2f} | {min(r['times']):.2f} | "
            f"{r['compile_s']:.0f} | {coll} |"
        )
    print(
        f"\noverhead of 8 simulated devices: "
        f"{statistics.median(many['times']) / statistics.median(one['times']):.2f}x the "
        f"1-device step time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
