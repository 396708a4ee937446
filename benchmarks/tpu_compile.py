"""The train and inference steps compiled for TPU topologies, on any host (CPU-only too).

  python benchmarks/tpu_compile.py --topology v5e:2x2 [--topology v6e:4x4 ...] \
      [--program train,inference] [--batch-per-chip 64,128] [--dtype bfloat16] \
      [--kernels auto|xla|cpu_tuned] [--shard-params] [--config configs/k400.py] \
      [--set model.depth=18 ...] [--top 15] [--json FILE] [--hlo-dir DIR]

The TPU compiler (libtpu, `pip install -e ".[tpu-compile]"`) compiles, ahead of time
and without a TPU, exactly the programs the trainer and the evaluator run: the mesh
is built over the topology's devices, the model, optimizer, state shardings
(`--shard-params`: FSDP-style) and jitted steps come from
`squeezetime_jax.training.programs`, so the kernels (`model.kernels`) and compiler
options are those of a TPU mesh. Per chip it reports, from the compiler itself:
FLOPs and HBM bytes accessed per clip, arithmetic intensity, peak HBM (arguments +
outputs - donated aliases + temporaries) against the chip's HBM, compile time,
a roofline estimate (time per clip = max(FLOPs / peak FLOP/s, bytes / HBM
bandwidth); MFU = the FLOP time over that), and the largest fusions of the optimized
HLO by the bytes they read and write, named back to the model's layers through the
op metadata (Flax module paths), with an estimate of the HBM part of the bytes from the
optimized HLO's layouts (`hbm_traffic_estimate`: tiled sizes, on-chip memory left out).
Nothing runs: these are the compiler's figures.

Topology names are libtpu's: v4:2x2x1, v5e:2x2, v5e:4x4 (4 hosts), v5p:2x2x1,
v6e:2x2, ... A topology's devices may be TensorCores rather than chips (v4 without
megacore); figures are converted to chips with the topology's chip coordinates.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
from typing import Any, Iterator

import numpy as np

# A CPU host compiling for TPU: JAX's own backend stays the CPU (no TPU probe, no
# libtpu lock held for the process), and libtpu may be loaded by several processes.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

LIBTPU_HINT = (
    'libtpu (the TPU compiler) is not installed: pip install -e ".[tpu-compile]" '
    "(libtpu==0.0.42.1, the version jax[tpu]==0.10.2 uses)"
)


@dataclasses.dataclass(frozen=True)
class Chip:
    """Public per-chip peaks (Google Cloud TPU documentation)."""

    name: str
    bf16_flops: float  # dense bf16 matmul FLOP/s (float32 matmuls at default precision
    # run as bf16 passes on the MXU: the same peak is used for float32 programs)
    hbm_bytes_per_s: float
    hbm_bytes: float


CHIPS = {
    "TPU v4": Chip("TPU v4", 275e12, 1228e9, 32 * 2**30),
    "TPU v5 lite": Chip("TPU v5e", 197e12, 819e9, 16 * 2**30),
    "TPU v5": Chip("TPU v5p", 459e12, 2765e9, 95 * 2**30),
    "TPU v6 lite": Chip("TPU v6e", 918e12, 1640e9, 32 * 2**30),
}
PAPER_V100_CLIPS_PER_S = 903.0  # the paper's inference figure, 16x224x224, one V100


class LibtpuMissingError(RuntimeError):
    pass


def libtpu_available(module: str = "libtpu") -> bool:
    """libtpu importable as `module`, or its library named by TPU_LIBRARY_PATH (how JAX
    finds it too; scripts/test.sh keeps it outside the environment's packages)."""
    if os.path.isfile(os.environ.get("TPU_LIBRARY_PATH", "")) and module == "libtpu":
        return True
    return importlib.util.find_spec(module) is not None


def require_libtpu(module: str = "libtpu") -> None:
    """Raises LibtpuMissingError (with the install command) if `module` is missing."""
    if not libtpu_available(module):
        raise LibtpuMissingError(LIBTPU_HINT)


def topology_devices(name: str):
    """The compile-only TPU devices of topology `name` (e.g. 'v5e:2x2')."""
    require_libtpu()
    from jax.experimental import topologies

    try:
        return list(topologies.get_topology_desc(name, platform="tpu").devices)
    except Exception as error:  # libtpu's errors do not name the topology
        raise ValueError(
            f"TPU topology {name!r} is not known to libtpu: {error}"
        ) from error


def chips_of(devices) -> int:
    coords = {tuple(getattr(d, "coords", (d.id,))) for d in devices}
    return len(coords)


# ----------------------------------------------------------------- the optimized HLO

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\([^=]*\)|\S+) ([\w\-]+)\((.*)$")
_OPERAND = re.compile(r"%([\w.\-]+)")
# libtpu numbers long tuples' elements in comments (/*index=5*/), "=" included.
_COMMENT = re.compile(r"/\*.*?\*/")
_OP_NAME = re.compile(r'op_name="([^"]+)"')
# Bookkeeping, and asynchronous copies and slices (prefetches between memory
# spaces, which libtpu splits into slices and joins again with a ConcatBitcast: the
# compiler's byte count has them; the list shows computations).
_NOT_LISTED = (
    "parameter",
    "constant",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "copy-start",
    "slice-start",
)
_NOT_LISTED_TARGETS = ('custom_call_target="ConcatBitcast"',)
_DTYPE_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2}
_DTYPE_BYTES.update({"f16": 2, "s16": 2, "u16": 2, "s8": 1, "u8": 1, "pred": 1})


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape such as bf16[8,56,56,64]{3,0,2,1:T(8,128)(2,1)} or a tuple."""
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shape):
        if dtype not in _DTYPE_BYTES:
            continue
        size = 1
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size * _DTYPE_BYTES[dtype]
    return total


_ARRAY = re.compile(r"\b([a-z]+\d*)\[([\d,]*)\](\{[^}]*\})?")


def hbm_arrays(shape: str) -> list[tuple[int, int, bool]]:
    """(logical bytes, tiled bytes, in HBM) for each array of an HLO shape.

    Tiled bytes round the two most minor dimensions up to the layout's first tile
    (T(8,128): the minor to 128, the next to 8), as TPU memory holds them; an array
    with a memory space S(n), n > 0 (on-chip memory), is not in HBM.
    """
    arrays = []
    for dtype, dims, layout in _ARRAY.findall(shape):
        if dtype not in _DTYPE_BYTES:
            continue
        sizes = [int(d) for d in dims.split(",") if d]
        padded = list(sizes)
        in_hbm = True
        match = re.fullmatch(r"\{([\d,]*)(?::(.*))?\}", layout or "")
        if match:
            minor_to_major = [int(d) for d in match.group(1).split(",") if d]
            rest = match.group(2) or ""
            in_hbm = not re.search(r"S\([1-9]\d*\)", rest)
            tile = re.match(r"T\(([\d,]+)\)", rest)
            if tile and minor_to_major:
                for dim, t in zip(minor_to_major, reversed(tile.group(1).split(","))):
                    padded[dim] = -(-padded[dim] // int(t)) * int(t)
        itemsize = _DTYPE_BYTES[dtype]
        arrays.append(
            (
                int(np.prod(sizes, dtype=np.int64)) * itemsize,
                int(np.prod(padded, dtype=np.int64)) * itemsize,
                in_hbm,
            )
        )
    return arrays


def entry_instructions(hlo_text: str) -> Iterator[tuple[str, tuple[str, str, str, str]]]:
    """(line, (name, shape, opcode, rest)) for each instruction of the ENTRY computation."""
    lines = hlo_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ENTRY")), None)
    if start is None:
        return
    for line in lines[start + 1 :]:
        if line.startswith("}"):
            return
        match = _INSTRUCTION.match(_COMMENT.sub("", line))
        if match:
            yield line, match.groups()


def listed(line: str, opcode: str) -> bool:
    """An op that moves data of its own (not a tuple, bitcast, -done half, ...)."""
    if opcode in _NOT_LISTED or opcode.endswith("-done"):
        return False
    if _ASYNC_DONE_FUSION.match(line):  # libtpu's -done half of a collective
        return False
    return not any(target in line for target in _NOT_LISTED_TARGETS)


# Asynchronous ops whose result tuple carries their operands along as element {0}
# (all-gather-start: (operand, result); async-start: ((operands), results, context)).
_OPERANDS_IN_RESULT = ("all-gather-start", "collective-permute-start", "async-start")
# libtpu wraps the halves of a parameter all-gather in fusions of their own
# (AsyncCollectiveStart / AsyncCollectiveDone custom calls) or merges them into a
# layer's fusion; their buffers pass through aliased (output_to_operand_aliasing).
_ASYNC_DONE_FUSION = re.compile(r"^\s*(?:ROOT )?%async-collective-done[\w.\-]* = ")
_ALIASED_OUTPUT = re.compile(r"\{([\d, ]*)\}: \(")
_SHAPE_TOKEN = re.compile(r"\(|\)|,|\b([a-z]+\d*)\[[\d,]*\](?:\{[^}]*\})?")


def leaf_indices(shape: str) -> list[tuple[int, ...]]:
    """The tuple index of each array of an HLO shape, in the order of `hbm_arrays`:
    () for an array, (1,) for a tuple's second element, (0, 2) nested."""
    indices, stack = [], []
    for token in _SHAPE_TOKEN.finditer(_COMMENT.sub("", shape)):
        text = token.group()
        if text == "(":
            stack.append(0)
        elif text == ")":
            stack.pop()
        elif text == ",":
            if stack:
                stack[-1] += 1
        elif token.group(1) in _DTYPE_BYTES:
            indices.append(tuple(stack))
    return indices


def passed_through(line: str, opcode: str, shape: str) -> list[bool]:
    """For each array of an op's result: True where it is one of its operands' buffers
    (aliased, or carried along by an asynchronous start), not data the op writes."""
    aliased = []
    match = re.search(r"output_to_operand_aliasing=\{(.*?)\}(?:, |$)", line)
    if match:
        aliased = [
            tuple(int(i) for i in index.split(",") if i.strip())
            for index in _ALIASED_OUTPUT.findall(match.group(1))
        ]
    if opcode in _OPERANDS_IN_RESULT and shape.startswith("("):
        aliased.append((0,))
    return [
        any(index[: len(prefix)] == prefix for prefix in aliased)
        for index in leaf_indices(shape)
    ]


def hbm_traffic_estimate(hlo_text: str) -> dict[str, int]:
    """Bytes the ENTRY computation moves to and from HBM, estimated from its layouts.

    Each op's operands and results that live in HBM count once, at their tiled size
    ('ops'; 'ops_logical' without tile padding); a prefetch (copy-start, the slices
    libtpu joins with ConcatBitcast) counts its HBM side ('prefetch'). Operands and
    results in on-chip memory (S(1)) do not count, nor do results that are an operand's
    buffer passed through (output_to_operand_aliasing, the operand element of an
    asynchronous start's tuple) and the -done halves of asynchronous collectives (also
    libtpu's async-collective-done fusions). The compiler's own 'bytes accessed'
    is larger: it counts operands in on-chip memory too, each prefetch three or four
    times and a convolution at about twice its operands and result (BENCHMARKS.md,
    "TPU programs"); this is a rough read-once estimate of HBM traffic.
    """
    totals = {"ops": 0, "ops_logical": 0, "prefetch": 0}
    arrays: dict[str, list[tuple[int, int, bool]]] = {}
    for line, (name, shape, opcode, rest) in entry_instructions(hlo_text):
        arrays[name] = hbm_arrays(shape)
        if opcode in ("slice-start", "copy-start"):
            # ((operand), destination, ...): what is in HBM is read or written once;
            # a slice reads its destination's worth of its operand.
            source, destination = arrays[name][0], arrays[name][1]
            if opcode == "slice-start":
                source = (source[0], destination[1], source[2])
            totals["prefetch"] += sum(a[1] for a in (source, destination) if a[2])
            continue
        if not listed(line, opcode):
            continue
        operands = _OPERAND.findall(rest.split("),", 1)[0])
        # A result array that is an operand's buffer passed through is counted once,
        # as the operand.
        skip = passed_through(line, opcode, shape)
        written = [a for a, s in zip(arrays[name], skip) if not s]
        for logical, tiled, in_hbm in [
            a for o in operands for a in arrays.get(o, ())
        ] + written:
            if in_hbm:
                totals["ops"] += tiled
                totals["ops_logical"] += logical
    return totals


def layer_of(op_name: str) -> str:
    """The model layer of an op_name: the Flax module path, without jit/transform
    wrappers, e.g. 'backbone/layer2_0/conv2/spatial_conv/glo_conv_3 (conv)'."""
    parts = [p for p in op_name.split("/") if p]
    parts = [re.sub(r"^(?:\w+\()+([^()]*)\)+$", r"\1", p) for p in parts]
    parts = [p for p in parts if not p.startswith("jit") and p not in ("SqueezeTime",)]
    modules = [p for p in parts[:-1] if re.fullmatch(r"[A-Za-z_]\w*", p)]
    return "/".join(modules) + (f" ({parts[-1]})" if parts else "")


def top_level_ops(hlo_text: str) -> list[dict[str, Any]]:
    """The ENTRY computation's fusions, convolutions, dots, copies and collectives,
    each with the bytes it reads and writes (operands + result) and its layer."""
    sizes: dict[str, int] = {}
    found = []
    for line, (name, shape, opcode, rest) in entry_instructions(hlo_text):
        sizes[name] = shape_bytes(shape)
        if not listed(line, opcode):
            continue
        args = rest.split("),", 1)[0]
        read = sum(sizes.get(o, 0) for o in _OPERAND.findall(args))
        op_name = _OP_NAME.search(line)
        kind = re.search(r"kind=(\w+)", line)
        found.append(
            {
                "name": name,
                "opcode": opcode + (f":{kind.group(1)}" if kind else ""),
                "shape": shape.split("{")[0],
                "bytes": read + sizes[name],
                "layer": layer_of(op_name.group(1)) if op_name else "",
            }
        )
    return found


# ----------------------------------------------------------------- the programs


def make_config(args) -> Any:
    """The training config (configs/k400.py by default) with --set overrides."""
    spec, _, arg = args.config.partition(":")
    path = spec if spec.endswith(".py") else spec.replace(".", "/") + ".py"
    module_spec = importlib.util.spec_from_file_location("_tpu_compile_config", path)
    if module_spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"--config {args.config}: no such file {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for item in args.set or ():
        key, _, value = item.partition("=")
        *parents, last = key.split(".")
        target = config
        for part in parents:
            target = target[part]
        if last not in target:
            raise KeyError(f"--set {item}: the config has no {key!r}")
        try:
            target[last] = json.loads(value)
        except json.JSONDecodeError:
            target[last] = value  # a plain string
    config.model.dtype = args.dtype
    config.model.kernels = args.kernels
    config.shard_params = bool(args.shard_params)
    return config


def compile_program(config, devices, program: str, per_chip_batch: int) -> dict[str, Any]:
    """Compiles `program` ('train' or 'inference') for `devices`; the compiler's figures."""
    import jax
    import jax.numpy as jnp

    from squeezetime_jax.training import mesh as mesh_lib
    from squeezetime_jax.training import programs

    chips = chips_of(devices)
    global_batch = per_chip_batch * chips
    config.batch_size = global_batch
    mesh = mesh_lib.make_mesh(config.mesh_shape, config.mesh_axes, devices=devices)
    mesh_lib.check_batch_divides(global_batch, mesh)
    built = programs.train_program(config, mesh, total_steps=10**6, steps_per_epoch=10**3)
    size = config.data.train.crop_size
    clip = (global_batch, config.model.num_frames, size, size, 3)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    video = jax.ShapeDtypeStruct(clip, jnp.uint8, sharding=batch_sharding)
    state = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(
            leaf.shape, leaf.dtype, sharding=sharding
        ),
        built.abstract_state,
        built.state_shardings,
    )
    if program == "train":
        label = jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=batch_sharding)
        jitted, args = built.step, (state, {"video": video, "label": label})
    elif program == "inference":
        jitted = programs.predict_program(built.model, mesh)
        args = (
            {"params": state.params, "batch_stats": state.batch_stats},
            {"video": video},
        )
    else:
        raise ValueError(f"--program must be 'train' or 'inference', got {program!r}")
    start = time.perf_counter()
    lowered = jitted.trace(*args).lower(lowering_platforms=("tpu",))
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    memory = compiled.memory_analysis()
    per_chip = len(devices) // chips  # devices (TensorCores) per chip
    hlo = compiled.as_text()
    return {
        "program": program,
        "kernels": built.model.kernels,
        "dtype": config.model.dtype,
        "devices": len(devices),
        "chips": chips,
        "processes": len({d.process_index for d in devices}),
        "device_kind": devices[0].device_kind,
        "per_chip_batch": per_chip_batch,
        "shard_params": bool(config.shard_params),
        # The compiler's figures are per device; per chip = per device x devices per chip.
        "flops_per_chip": float(cost["flops"]) * per_chip,
        "bytes_per_chip": float(cost["bytes accessed"]) * per_chip,
        "argument_bytes": memory.argument_size_in_bytes * per_chip,
        "output_bytes": memory.output_size_in_bytes * per_chip,
        "alias_bytes": memory.alias_size_in_bytes * per_chip,
        "temp_bytes": memory.temp_size_in_bytes * per_chip,
        "code_bytes": memory.generated_code_size_in_bytes,
        "lower_s": lower_s,
        "compile_s": compile_s,
        "ops": top_level_ops(hlo),
        "hbm_estimate": {k: v * per_chip for k, v in hbm_traffic_estimate(hlo).items()},
        "hlo": hlo,
    }


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per-clip figures, peak HBM and the roofline estimate for one compiled program."""
    chip = CHIPS.get(result["device_kind"])
    b = result["per_chip_batch"]
    flops, nbytes = result["flops_per_chip"] / b, result["bytes_per_chip"] / b
    peak_hbm = (
        result["argument_bytes"]
        + result["output_bytes"]
        - result["alias_bytes"]
        + result["temp_bytes"]
    )
    out = {
        "gflops_per_clip": flops / 1e9,
        "gb_per_clip": nbytes / 1e9,
        "flops_per_byte": flops / nbytes,
        "peak_hbm_gib": peak_hbm / 2**30,
        "temp_gib": result["temp_bytes"] / 2**30,
    }
    estimate = result.get("hbm_estimate")
    if estimate:
        hlo_bytes = (estimate["ops"] + estimate["prefetch"]) / b
        out.update(
            hlo_gb_per_clip=hlo_bytes / 1e9,
            hlo_flops_per_byte=flops / hlo_bytes,
            hlo_padding=estimate["ops"] / max(estimate["ops_logical"], 1) - 1,
        )
    if chip is not None:
        flop_s, byte_s = flops / chip.bf16_flops, nbytes / chip.hbm_bytes_per_s
        roofline = max(flop_s, byte_s)
        out.update(
            chip=chip.name,
            hbm_gib=chip.hbm_bytes / 2**30,
            fits=peak_hbm <= chip.hbm_bytes,
            clips_per_s=1.0 / roofline,
            mfu=flop_s / roofline,
            bound="memory" if byte_s > flop_s else "compute",
        )
        if estimate:
            hlo_s = max(flop_s, hlo_bytes / chip.hbm_bytes_per_s)
            out.update(hlo_clips_per_s=1.0 / hlo_s, hlo_mfu=flop_s / hlo_s)
    return out


def report(result: dict[str, Any], top: int, out=sys.stdout) -> None:
    s = summarize(result)
    print(
        f"\n## {result['program']} step, {result['topology']} ({result['chips']} chips, "
        f"{result['processes']} hosts), {result['per_chip_batch']} clips/chip, "
        f"{result['dtype']}, kernels={result['kernels']}"
        f"{', shard_params' if result['shard_params'] else ''}",
        file=out,
    )
    print(
        f"per chip: {s['gflops_per_clip']:.2f} GFLOPs and {s['gb_per_clip']:.3f} GB of HBM "
        f"traffic per clip ({s['flops_per_byte']:.1f} FLOPs/byte); temporaries "
        f"{s['temp_gib']:.2f} GiB, peak HBM {s['peak_hbm_gib']:.2f} GiB"
        + (
            f" of {s['hbm_gib']:.0f} GiB ({'fits' if s['fits'] else 'does NOT fit'})"
            if "chip" in s
            else ""
        )
        + f"; compile {result['compile_s']:.0f} s (lowering {result['lower_s']:.0f} s)",
        file=out,
    )
    if "chip" in s:
        chip = CHIPS[result["device_kind"]]
        print(
            f"roofline on {s['chip']} ({chip.bf16_flops / 1e12:.0f} TFLOP/s bf16, "
            f"{chip.hbm_bytes_per_s / 1e9:.0f} GB/s HBM): {s['bound']}-bound, "
            f"{s['clips_per_s']:,.0f} clips/s per chip at most, MFU {s['mfu']:.0%}"
            + (
                f"; {s['clips_per_s'] / PAPER_V100_CLIPS_PER_S:.1f}x the paper's "
                f"{PAPER_V100_CLIPS_PER_S:.0f} clips/s on a V100"
                if result["program"] == "inference"
                else ""
            ),
            file=out,
        )
    if "hlo_gb_per_clip" in s:
        print(
            f"HBM traffic estimated from the optimized HLO's layouts (ENTRY ops' HBM "
            f"operands and results at tiled size, and prefetches): "
            f"{s['hlo_gb_per_clip']:.3f} GB per clip ({s['hlo_flops_per_byte']:.1f} "
            f"FLOPs/byte; tile padding adds {s['hlo_padding']:.0%})"
            + (
                f"; roofline on it {s['hlo_clips_per_s']:,.0f} clips/s, MFU "
                f"{s['hlo_mfu']:.0%}"
                if "hlo_clips_per_s" in s
                else ""
            ),
            file=out,
        )
    ops = sorted(result["ops"], key=lambda o: -o["bytes"])
    total = sum(o["bytes"] for o in ops) or 1
    print(
        f"\nlargest of {len(ops)} top-level ops by bytes read + written "
        f"(per device; {total / 2**30:.2f} GiB in all):\n",
        file=out,
    )
    print("| MiB | share | op | shape | layer |\n|---:|---:|---|---|---|", file=out)
    for o in ops[:top]:
        print(
            f"| {o['bytes'] / 2**20:.0f} | {o['bytes'] / total:.1%} | {o['opcode']} | "
            f"{o['shape'][:40]} | {o['layer'][:100]} |",
            file=out,
        )


def _parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", action="append", help="e.g. v5e:2x2 (repeatable)")
    parser.add_argument("--program", default="train,inference")
    parser.add_argument("--batch-per-chip", default="64")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--kernels", default="auto", choices=("auto", "xla", "cpu_tuned"))
    parser.add_argument("--shard-params", action="store_true")
    parser.add_argument("--config", default="configs/k400.py")
    parser.add_argument("--set", action="append", help="config override key=value")
    parser.add_argument("--top", type=int, default=15, help="largest ops to list")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--hlo-dir", default=None, help="also write the optimized HLO")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        require_libtpu()
    except LibtpuMissingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import jax

    results = []
    for topology in args.topology or ["v5e:2x2"]:
        devices = topology_devices(topology)
        for program in args.program.split(","):
            for batch in (int(b) for b in args.batch_per_chip.split(",")):
                config = make_config(args)
                print(f"compiling {program} for {topology} at {batch}/chip ...", flush=True)
                result = compile_program(config, devices, program, batch)
                result["topology"] = topology
                report(result, args.top)
                if args.hlo_dir:
                    os.makedirs(args.hlo_dir, exist_ok=True)
                    name = f"{program}-{topology.replace(':', '_')}-{batch}-{result['kernels']}"
                    with open(os.path.join(args.hlo_dir, name + ".hlo.txt"), "w") as f:
                        f.write(result["hlo"])
                result.pop("hlo")
                result["summary"] = summarize(result)
                result["ops"] = sorted(result["ops"], key=lambda o: -o["bytes"])[: args.top]
                results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
