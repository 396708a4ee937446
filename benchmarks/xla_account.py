"""An account of the compiled forward pass and train step from XLA itself.

  python benchmarks/xla_account.py [--batch 4] [--size 224] [--top 12] [--dump-dir DIR]

Compiles, for the K400 model at 16x224x224 float32: the inference forward, the train-mode
forward (BatchNorm on batch statistics), forward+backward of the loss, and the full
train step (`squeezetime_jax.training.step.train_step`: + clipping, SGD, BatchNorm
update). From XLA's cost analysis: FLOPs and bytes accessed per clip, arithmetic
intensity, the step/forward FLOP ratio (the goal: within 5% of 3x). From the optimized
HLO of the step: the largest fusions, and every transpose and copy left in it with the
op it came from. Then the throughput per chip these FLOPs imply on TPU v4, v5e and a
V100 at a given model FLOP utilization, next to the paper's 903 clips/s V100 inference.
Nothing is executed, so no accelerator is needed; the HLO is the CPU backend's (a TPU
compile fuses differently, but the FLOPs are the model's).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys

# name: (peak dense FLOP/s, memory bandwidth bytes/s, what the peak is)
CHIPS = {
    "TPU v4": (275e12, 1.2e12, "bf16"),
    "TPU v5e": (197e12, 0.819e12, "bf16"),
    "V100 (tensor cores)": (125e12, 0.9e12, "fp16 tensor core"),
    "V100 (fp32)": (15.7e12, 0.9e12, "fp32"),
}
PAPER_V100_CLIPS_PER_S = 903.0  # inference, 16x224x224, from the paper


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--top", type=int, default=12, help="largest fusions to list")
    parser.add_argument("--mfu", default="0.3,0.5", help="utilizations for the estimates")
    parser.add_argument(
        "--dump-dir", default=None, help="also write the optimized HLO here"
    )
    return parser


def cost(compiled) -> tuple[float, float]:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis["flops"]), float(analysis["bytes accessed"])


_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+|\([^=]*\)) ([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]+)"')
_DTYPE_BYTES = {
    "f32": 4,
    "bf16": 2,
    "f16": 2,
    "s32": 4,
    "u32": 4,
    "f64": 8,
    "pred": 1,
    "u8": 1,
    "s8": 1,
}


def hlo_shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string such as f32[3,3,64]{2,1,0} or a (tuple, ...)."""
    total = 0
    for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", shape):
        size = 1
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size * _DTYPE_BYTES.get(dtype, 4)
    return total


def entry_instructions(hlo_text: str) -> list[dict]:
    """Top-level instructions of the ENTRY computation: name, shape, opcode, kind, op_name."""
    found, inside = [], False
    for line in hlo_text.splitlines():
        if line.startswith("ENTRY"):
            inside = True
            continue
        if inside and line.startswith("}"):
            break
        match = _INSTRUCTION.match(line) if inside else None
        if match:
            kind = re.search(r"kind=(\w+)", line)
            custom = re.search(r'"kind":"(__\w+)"', line)
            op_name = _OP_NAME.search(line)
            found.append(
                {
                    "name": match.group(1),
                    "shape": match.group(2),
                    "opcode": match.group(3),
                    "bytes": hlo_shape_bytes(match.group(2)),
                    "kind": (custom.group(1) if custom else kind.group(1) if kind else ""),
                    "op_name": op_name.group(1) if op_name else "",
                }
            )
    return found


def _short(op_name: str) -> str:
    return re.sub(r"^jit\([^)]*\)/", "", op_name)[-110:]


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    import jax
    import jax.numpy as jnp
    import ml_collections

    from squeezetime_jax.models import build_model, model_config
    from squeezetime_jax.runtime.compile_options import compiler_options
    from squeezetime_jax.training import optim
    from squeezetime_jax.training.state import create_train_state
    from squeezetime_jax.training.step import cross_entropy, train_step

    model = build_model(model_config())
    config = ml_collections.ConfigDict(
        {"optimizer": optim.optimizer_config(), "schedule": {"name": "constant"}}
    )
    schedule = optim.make_schedule(
        config, args.batch, total_steps=1000, steps_per_epoch=100
    )
    tx = optim.make_optimizer(config, schedule)
    clip = (args.batch, args.frames, args.size, args.size, 3)
    state = jax.eval_shape(
        functools.partial(create_train_state, model, tx, clip_shape=clip),
        jax.ShapeDtypeStruct((2,), jnp.uint32),
    )
    video = jax.ShapeDtypeStruct(clip, jnp.float32)
    batch = {
        "video": jax.ShapeDtypeStruct(clip, jnp.uint8),
        "label": jax.ShapeDtypeStruct((args.batch,), jnp.int32),
    }
    rngs = {"dropout": jax.random.key(0)}

    def forward_train(variables, x):
        return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs)[0]

    def forward_backward(variables, x, labels):
        def loss(params):
            logits = forward_train(
                {"params": params, "batch_stats": variables["batch_stats"]}, x
            )
            return cross_entropy(logits, labels).mean()

        return jax.value_and_grad(loss)(variables["params"])

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    programs = {
        "forward (inference)": jax.jit(lambda v, x: model.apply(v, x)).lower(
            variables, video
        ),
        "forward (train mode)": jax.jit(forward_train).lower(variables, video),
        "forward + backward": jax.jit(forward_backward).lower(
            variables, video, batch["label"]
        ),
        "train step": jax.jit(
            functools.partial(train_step, model=model, tx=tx, schedule=schedule),
            donate_argnums=0,
        ).lower(state, batch),
    }
    costs, texts = {}, {}
    for name, lowered in programs.items():
        print(f"compiling {name} ...", file=sys.stderr)
        compiled = lowered.compile(compiler_options=compiler_options())  # as the trainer
        costs[name] = cost(compiled)
        texts[name] = compiled.as_text()
        if args.dump_dir:
            os.makedirs(args.dump_dir, exist_ok=True)
            with open(
                os.path.join(
                    args.dump_dir,
                    name.split()[0] + name.split()[-1].strip("()") + ".hlo.txt",
                ),
                "w",
            ) as f:
                f.write(texts[name])

    b = args.batch
    print(
        f"\nSqueezeTime K400 (depth 50), batch {b}, {args.frames}x{args.size}x{args.size} "
        f"float32, XLA CPU (jax {jax.__version__})\n"
    )
    print(
        "| program | GFLOPs per clip | GB accessed per clip | FLOPs per byte | "
        "x inference forward |"
    )
    print("|---|---:|---:|---:|---:|")
    base = costs["forward (inference)"][0]
    for name, (flops, nbytes) in costs.items():
        print(
            f"| {name} | {flops / b / 1e9:.2f} | {nbytes / b / 1e9:.3f} | "
            f"{flops / nbytes:.1f} | {flops / base:.3f} |"
        )
    step, fwd_train = costs["train step"][0], costs["forward (train mode)"][0]
    ratio = step / base
    print(
        f"\ntrain step / inference forward = {ratio:.3f} (goal: within 5% of 3, i.e. "
        f"2.85-3.15: {'met' if abs(ratio - 3) <= 0.15 else 'NOT met'}); "
        f"train step / train-mode forward = {step / fwd_train:.3f}"
    )

    instructions = entry_instructions(texts["train step"])
    fusions = sorted(
        (i for i in instructions if i["opcode"] in ("fusion", "convolution")),
        key=lambda i: -i["bytes"],
    )
    print(
        f"\nLargest fusions and convolutions of the train step by output size "
        f"({len(fusions)} in all):\n"
    )
    print("| output MiB | kind | shape | from |")
    print("|---:|---|---|---|")
    for i in fusions[: args.top]:
        print(
            f"| {i['bytes'] / 2**20:.1f} | {i['kind'] or i['opcode']} | "
            f"{i['shape'].split('{')[0]} | {_short(i['op_name'])} |"
        )
    kinds = {}
    for i in fusions:
        kinds[i["kind"] or i["opcode"]] = kinds.get(i["kind"] or i["opcode"], 0) + 1
    print(f"\nfusion kinds: {kinds}")
    moves = [
        i
        for i in instructions
        if i["opcode"] in ("transpose", "copy") or re.search(r"(transpose|copy)", i["name"])
    ]
    print(
        f"\nTransposes and copies at the top level of the train step ({len(moves)}, "
        f"{sum(i['bytes'] for i in moves) / 2**20:.1f} MiB written):\n"
    )
    for i in moves:
        print(
            f"- {i['name']} {i['shape'].split('{')[0]} ({i['bytes'] / 2**20:.2f} MiB) "
            f"from {_short(i['op_name']) or '?'}"
        )

    mfus = [float(m) for m in args.mfu.split(",")]
    fwd_clip, step_clip = base / b, step / b
    fwd_bytes, step_bytes = costs["forward (inference)"][1] / b, costs["train step"][1] / b
    print(
        "\nPer-chip throughput these FLOPs imply (clips/s = MFU x peak / FLOPs per clip; "
        "bandwidth bound = bandwidth / bytes per clip, with the CPU compile's bytes as a "
        "rough proxy):\n"
    )
    header = " | ".join(f"inference @ MFU {m:.0%}" for m in mfus)
    header2 = " | ".join(f"train @ MFU {m:.0%}" for m in mfus)
    print(
        f"| chip | peak TFLOP/s | {header} | {header2} | inference bandwidth bound | "
        f"train bandwidth bound |"
    )
    print("|---|---:|" + "---:|" * (2 * len(mfus) + 2))
    for chip, (peak, bandwidth, kind) in CHIPS.items():
        inf = " | ".join(f"{m * peak / fwd_clip:,.0f}" for m in mfus)
        train = " | ".join(f"{m * peak / step_clip:,.0f}" for m in mfus)
        print(
            f"| {chip} | {peak / 1e12:.1f} ({kind}) | {inf} | {train} | "
            f"{bandwidth / fwd_bytes:,.0f} | {bandwidth / step_bytes:,.0f} |"
        )
    v100_mfu = PAPER_V100_CLIPS_PER_S * fwd_clip / CHIPS["V100 (tensor cores)"][0]
    v5e_peak = CHIPS["TPU v5e"][0]
    print(
        f"\nThe paper's 903 clips/s on a V100 is {PAPER_V100_CLIPS_PER_S * fwd_clip / 1e12:.1f} "
        f"TFLOP/s: MFU {v100_mfu:.1%} of the tensor-core peak "
        f"({PAPER_V100_CLIPS_PER_S * fwd_clip / CHIPS['V100 (fp32)'][0]:.0%} of fp32 peak). "
        f"A v5e chip matches it at MFU {PAPER_V100_CLIPS_PER_S * fwd_clip / v5e_peak:.1%}; "
        f"at MFU 30% it would serve {0.3 * v5e_peak / fwd_clip / PAPER_V100_CLIPS_PER_S:.1f}x "
        f"the paper's V100 figure."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
