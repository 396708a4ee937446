"""One layer1 bottleneck block's forward and backward compiled for one TPU chip,
channel-packed (models.packing) or not: the compiler's FLOPs and bytes, the HBM
estimate of tpu_compile.py, temporaries.

  python benchmarks/tpu_compile_block.py [--topology v5e:2x2] [--clips 64] \
      [--block layer1_0|layer1_1] [--dtype bfloat16] [--top 10]

layer1_0 takes the stem's 64 channels (with the shortcut convolution), layer1_1 the
256 of the stage. The block trains (batch statistics, one group); its input and the
output's cotangent are in the layout the model holds them in (packed: (N, 56, 28,
2C)), so what is compared is the block's own traffic. Nothing runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tpu_compile import (  # noqa: E402 (sets the environment before JAX loads)
    hbm_traffic_estimate,
    top_level_ops,
    topology_devices,
)


def compile_block(device, packed: bool, block: str, clips: int, dtype) -> dict:
    import jax

    from squeezetime_jax.models.packing import packed_conv_factory
    from squeezetime_jax.models.squeezetime import BottleneckBlock, make_conv, make_norm

    conv = make_conv(dtype, None, "xla")
    norm = make_norm(True, dtype, None, "xla", clips)
    cin = {"layer1_0": 64, "layer1_1": 256}[block]
    if packed:
        module = BottleneckBlock(
            width=64,
            stride=1,
            pos_dim=56,
            conv=packed_conv_factory(conv),
            norm=functools.partial(norm, phases=2),
            phases=2,
        )
        x_shape, y_shape = (clips, 56, 28, 2 * cin), (clips, 56, 28, 512)
    else:
        module = BottleneckBlock(width=64, stride=1, pos_dim=56, conv=conv, norm=norm)
        x_shape, y_shape = (clips, 56, 56, cin), (clips, 56, 56, 256)
    variables = jax.eval_shape(
        lambda x: module.init(jax.random.key(0), x), jax.ShapeDtypeStruct(x_shape, dtype)
    )

    def step(variables, x, cotangent):
        def apply(params, x):
            return module.apply({**variables, "params": params}, x, mutable=["batch_stats"])

        _, vjp, updates = jax.vjp(apply, variables["params"], x, has_aux=True)
        return vjp(cotangent), updates

    sharding = jax.sharding.SingleDeviceSharding(device)

    def spec(leaf):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    args = (
        jax.tree.map(spec, variables),
        spec(jax.ShapeDtypeStruct(x_shape, dtype)),
        spec(jax.ShapeDtypeStruct(y_shape, dtype)),
    )
    start = time.perf_counter()
    compiled = jax.jit(step).trace(*args).lower(lowering_platforms=("tpu",)).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = compiled.as_text()
    estimate = hbm_traffic_estimate(hlo)
    return {
        "packed": packed,
        "block": block,
        "gflops_per_clip": cost["flops"] / clips / 1e9,
        "mb_per_clip": cost["bytes accessed"] / clips / 1e6,
        "hlo_mb_per_clip": (estimate["ops"] + estimate["prefetch"]) / clips / 1e6,
        "hlo_padding": estimate["ops"] / max(estimate["ops_logical"], 1) - 1,
        "temp_gib": compiled.memory_analysis().temp_size_in_bytes / 2**30,
        "compile_s": compile_s,
        "ops": sorted(top_level_ops(hlo), key=lambda o: -o["bytes"]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="v5e:2x2")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--block", default="layer1_1", choices=("layer1_0", "layer1_1"))
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import jax.numpy as jnp

    device = topology_devices(args.topology)[0]
    results = []
    for packed in (False, True):
        r = compile_block(device, packed, args.block, args.clips, getattr(jnp, args.dtype))
        print(
            f"\n{args.block}, {'packed' if packed else 'unpacked'}: "
            f"{r['gflops_per_clip']:.2f} GFLOPs, {r['mb_per_clip']:.1f} MB per clip "
            f"(compiler), HLO estimate {r['hlo_mb_per_clip']:.1f} MB (padding "
            f"{r['hlo_padding']:.0%}), temporaries {r['temp_gib']:.3f} GiB, "
            f"compile {r['compile_s']:.0f} s"
        )
        for o in r["ops"][: args.top]:
            print(
                f"  {o['bytes'] / 2**20:7.0f} MiB  {o['opcode']:16s} "
                f"{o['shape'][:36]:36s} {o['layer'][:70]}"
            )
        r["ops"] = r["ops"][: args.top]
        results.append(r)
    base, packed = results
    print(
        f"\npacked vs unpacked: compiler bytes {packed['mb_per_clip'] / base['mb_per_clip'] - 1:+.1%}, "
        f"HLO estimate {packed['hlo_mb_per_clip'] / base['hlo_mb_per_clip'] - 1:+.1%}, "
        f"temporaries {packed['temp_gib'] / base['temp_gib'] - 1:+.1%}, compiler FLOPs "
        f"{packed['gflops_per_clip'] / base['gflops_per_clip'] - 1:+.1%}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
