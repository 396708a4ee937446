"""Mobile export: PyTorch program, ExecuTorch (XNNPACK) and ONNX, each checked for parity.

From any checkpoint `squeezetime_jax.checkpoints.restore` reads, `export_checkpoint` writes

  squeezetime.pth               state_dict in the released layout (BatchNorm not folded)
  squeezetime.pt2               torch.export program (torch.export.load)
  squeezetime_xnnpack.pte       ExecuTorch program lowered to the XNNPACK backend
  squeezetime_xnnpack_int8.pte  the same, int8 (PT2E, XNNPACKQuantizer), when asked
  squeezetime.onnx              ONNX (torch.onnx dynamo exporter), weights inside
  squeezetime_export_info.json  input layout, normalization, classes and parity results

(`squeezetime_raw.*` with `raw_input`, except the .pth). Every program takes one clip, float32
(1, 3, T, H, W), and returns logits (1, num_classes). By default the clip is normalized
per RGB channel, (x - MEAN_RGB) / STD_RGB with pixels in 0..255; with `raw_input` it is
the 0..255 pixels themselves, the normalization being folded into the stem convolution.
BatchNorm is folded for inference in all programs.

Each file is verified right after it is written: loaded with its own runtime
(torch.export.load, ExecuTorch's Python runtime, onnxruntime) and run on a fixed clip
of smooth moving shapes; its logits are compared with the JAX model's. The relative
error is max|logits - jax| / max|jax|; float32 programs must stay within
`TOLERANCES`. int8 is not expected to match that closely: its check is the looser
`INT8_TOLERANCE` plus the same top-1 class on the clip. int8 is calibrated on real
clips when given (`calibration_data`: a prepared dataset or a video list,
squeezetime_jax.export.clips), else on synthetic ones; with `check_data` the int8
program's top-1 is compared with the float32 model's on held-out clips (agreement, and
accuracy of both when the clips are labelled), written to the export info.

torch, executorch, onnx and onnxruntime are imported only when called.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import tempfile
from typing import Callable, Iterable, Sequence

import numpy as np

from squeezetime_jax import files
from squeezetime_jax.data.config import MEAN_RGB, STD_RGB
from squeezetime_jax.data.normalize import normalize

FORMATS = ("pytorch", "executorch", "onnx")
INSTALL_HINT = "pip install -e '.[export]'"
# Python modules each format needs, and the extra that provides them.
_REQUIRED = {
    "pytorch": ("torch",),
    "executorch": ("torch", "executorch", "torchao"),
    "onnx": ("torch", "onnx", "onnxscript", "onnxruntime"),
}
# Relative logit error allowed against the JAX model (float32 everywhere). Measured
# on the K400 model: ~1e-6 for all three (BENCHMARKS.md). XNNPACK gets more margin
# because its kernels, and so their summation order, differ between CPUs (AVX2,
# AVX-512, NEON); a layout or folding bug (errors of order 1) still fails loudly.
TOLERANCES = {"pytorch": 1e-4, "executorch": 1e-3, "onnx": 1e-4}
# int8 changes the logits by a few percent of their range; more than this is a broken
# quantization (e.g. a calibration that saturates), not rounding.
INT8_TOLERANCE = 0.25
CALIBRATION_CLIPS = 4  # synthetic clips, when no calibration data is given
# Real clips: how many calibrate by default (per video, its centre clip).
CALIBRATION_DATA_CLIPS = 64


class MissingExtraError(ImportError):
    """A format's Python packages are not installed; names them and the install line."""


def require_extras(formats: Iterable[str]) -> None:
    missing = sorted(
        {m for f in formats for m in _REQUIRED[f] if importlib.util.find_spec(m) is None}
    )
    if missing:
        raise MissingExtraError(
            f"{', '.join(formats)} export needs {', '.join(missing)} (not installed): "
            f"install the export extra with `{INSTALL_HINT}` (or "
            "`pip install 'squeezetime_jax[export]'`)"
        )


# ---------------------------------------------------------------------------------
# Inputs


def reference_clip(num_frames: int, size: int, seed: int = 0) -> np.ndarray:
    """A real-looking clip, float32 (T, H, W, 3) pixels in 0..255, deterministic.

    Smooth shapes, not noise: a colour gradient background, drifting stripes and a
    soft blob moving across the frame, so activations look like those of video (noise
    drives the gate's pooled statistics to atypical values). `seed` varies colours,
    directions and speeds, giving distinct clips for calibration and agreement tests.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64)[:, None, None]
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    yy, xx = yy[None], xx[None]
    base = rng.uniform(40, 200, size=3)
    tilt = rng.uniform(-60, 60, size=(3, 2))
    angle = rng.uniform(0, np.pi)
    freq, speed = rng.uniform(3, 8), rng.uniform(0.05, 0.2)
    phase = 2 * np.pi * (freq * (np.cos(angle) * xx + np.sin(angle) * yy) - speed * t)
    stripes = np.sin(phase)
    start, velocity = rng.uniform(0.2, 0.8, size=2), rng.uniform(-0.6, 0.6, size=2)
    centre = start + velocity * t[..., None] / max(num_frames, 1)
    blob = np.exp(-((xx - centre[..., 0]) ** 2 + (yy - centre[..., 1]) ** 2) / 0.02)
    blob_colour = rng.uniform(-100, 100, size=3)
    channels = [
        base[c] + tilt[c, 0] * xx + tilt[c, 1] * yy + 25 * stripes + blob_colour[c] * blob
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.float32)


def to_program_input(clip: np.ndarray, raw_input: bool = False) -> np.ndarray:
    """(T, H, W, 3) 0..255 pixels -> the exported programs' float32 (1, 3, T, H, W)."""
    x = clip if raw_input else normalize(clip)
    return np.ascontiguousarray(np.transpose(x, (3, 0, 1, 2))[None], dtype=np.float32)


def jax_logits(conversion, clips: np.ndarray) -> np.ndarray:
    """The JAX model's logits for pixel clips (N, T, H, W, 3) in 0..255."""
    from squeezetime_jax.inference.model import LoadedModel

    return LoadedModel(conversion).pixel_logits(np.asarray(clips, np.float32))


# ---------------------------------------------------------------------------------
# The PyTorch model to export


def torch_twin(conversion):
    """The plain PyTorch SqueezeTime with the conversion's weights, in eval mode."""
    import torch

    from squeezetime_jax.interop.conversion import to_torch
    from squeezetime_jax.interop.torch_model import SqueezeTimeTorch

    model = SqueezeTimeTorch.from_config(conversion.config)
    state = {
        k: torch.from_numpy(np.asarray(v))
        for k, v in to_torch(conversion.variables, conversion.config).items()
    }
    model.load_state_dict(state, strict=True)
    return model.eval()


def inference_model(twin, num_frames: int, size: int, raw_input: bool = False):
    """A copy of the twin ready for export at (num_frames, size, size): BatchNorm
    folded, positional embeddings resized once, a head XNNPACK lowers whole, and the
    normalization folded into the stem if `raw_input`."""
    import torch

    from squeezetime_jax.export.folding import (
        bake_positional_embeddings_,
        fold_batchnorm_,
        fold_input_normalization_,
        pool_head_for_export_,
    )

    model = pool_head_for_export_(fold_batchnorm_(copy.deepcopy(twin).eval()))
    bake_positional_embeddings_(model, torch.zeros(1, 3, num_frames, size, size))
    if raw_input:
        fold_input_normalization_(model, MEAN_RGB, STD_RGB, (size, size))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------
# Writers


def export_program(model, example: np.ndarray):
    """torch.export of the inference model on a static (1, 3, T, H, W) input."""
    import torch

    with torch.no_grad():
        return torch.export.export(model, (torch.from_numpy(example),), strict=False)


def write_state_dict(path: str, twin) -> str:
    """The released-layout state_dict (BatchNorm kept), loadable with strict=True."""
    import torch

    torch.save(twin.state_dict(), path)
    return path


def write_pt2(path: str, program) -> str:
    import torch

    torch.export.save(program, path)
    return path


@dataclasses.dataclass
class Delegation:
    """How much of a lowered program XNNPACK runs; the rest falls to portable kernels."""

    subgraphs: int
    delegated_ops: int
    portable_ops: dict[str, int]  # op name -> count, outside XNNPACK

    def line(self) -> str:
        rest = (
            ", outside XNNPACK: "
            + ", ".join(f"{k} x{v}" for k, v in self.portable_ops.items())
            if self.portable_ops
            else ", nothing outside XNNPACK"
        )
        return (
            f"XNNPACK runs {self.delegated_ops} ops in {self.subgraphs} "
            f"subgraph{'s' if self.subgraphs != 1 else ''}{rest}"
        )


def lower_to_xnnpack(program) -> tuple[bytes, Delegation]:
    """An ExecuTorch program (.pte bytes) with every op XNNPACK supports delegated."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program().graph_module)
    # getitem only unpacks a delegate's outputs; it is not work left on the CPU.
    portable = {
        name: stats.non_delegated
        for name, stats in info.delegation_by_operator.items()
        if stats.non_delegated and name != "getitem"
    }
    delegation = Delegation(
        info.num_delegated_subgraphs, info.num_delegated_nodes, portable
    )
    return edge.to_executorch().buffer, delegation


def write_pte(path: str, program, log: Callable[[str], None] = lambda line: None) -> str:
    buffer, delegation = lower_to_xnnpack(program)
    with open(path, "wb") as f:
        f.write(buffer)
    log(f"{os.path.basename(path)}: {delegation.line()}")
    return path


def quantize_int8(model, example: np.ndarray, calibration: Sequence[np.ndarray]):
    """PT2E static int8 (per-channel weights, XNNPACK scheme), calibrated on clips;
    returns the exported program of the quantized model."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
    with torch.no_grad():
        graph = export_program(model, example).module()
        prepared = prepare_pt2e(graph, quantizer)
        for clip in calibration:
            prepared(torch.from_numpy(clip))
        quantized = convert_pt2e(prepared)
        return torch.export.export(quantized, (torch.from_numpy(example),), strict=False)


def write_onnx(path: str, program) -> str:
    import torch

    # One self-contained file (the weights are far below protobuf's 2 GB limit), which
    # is what mobile runtimes load most simply.
    torch.onnx.export(
        program,
        f=path,
        input_names=["video"],
        output_names=["logits"],
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return path


# ---------------------------------------------------------------------------------
# Runtimes: each returns a function numpy (1, 3, T, H, W) -> numpy logits.


def load_pt2(path: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    module = torch.export.load(path).module()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def load_pte(path: str) -> Callable[[np.ndarray], np.ndarray]:
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return lambda x: method.execute([torch.from_numpy(x)])[0].numpy()


def load_onnx(path: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


# ---------------------------------------------------------------------------------
# Verification


@dataclasses.dataclass
class Check:
    """One exported file compared with the JAX model on the reference clip."""

    format: str
    path: str
    max_abs: float
    relative: float
    tolerance: float
    same_top1: bool

    @property
    def passed(self) -> bool:
        return (
            bool(np.isfinite(self.relative))
            and self.relative <= self.tolerance
            and (self.same_top1 or "int8" not in self.format)
        )

    def line(self) -> str:
        verdict = "OK" if self.passed else "FAILED"
        return (
            f"{self.format:<16} {os.path.basename(self.path):<30} max abs err "
            f"{self.max_abs:.3e}  relative {self.relative:.3e}  (tolerance "
            f"{self.tolerance:g}, same top-1: {self.same_top1})  {verdict}"
        )


def compare(
    fmt: str, path: str, logits: np.ndarray, reference: np.ndarray, tolerance: float
) -> Check:
    logits = np.asarray(logits, np.float64).reshape(reference.shape)
    reference = np.asarray(reference, np.float64)
    max_abs = float(np.max(np.abs(logits - reference)))
    relative = max_abs / max(float(np.max(np.abs(reference))), 1e-12)
    same = bool(np.array_equal(logits.argmax(-1), reference.argmax(-1)))
    return Check(fmt, path, max_abs, relative, tolerance, same)


class ParityError(RuntimeError):
    """An exported file's logits differ from the JAX model's beyond the tolerance."""


@dataclasses.dataclass
class HeldOutCheck:
    """A program's top-1 against the float32 model's on held-out clips."""

    format: str
    path: str
    source: str
    clips: int
    agreement: float  # share of clips with the float32 model's top-1
    top1: float | None  # accuracy against the labels (None: unlabelled clips)
    float32_top1: float | None
    max_accuracy_drop: float | None = None  # fail beyond this (None: report only)

    @property
    def accuracy_drop(self) -> float | None:
        if self.top1 is None or self.float32_top1 is None:
            return None
        return self.float32_top1 - self.top1

    @property
    def passed(self) -> bool:
        drop = self.accuracy_drop
        return (
            self.max_accuracy_drop is None or drop is None or drop <= self.max_accuracy_drop
        )

    def line(self) -> str:
        accuracy = (
            f", top-1 {self.top1:.2%} vs float32 {self.float32_top1:.2%}"
            if self.top1 is not None
            else ""
        )
        gate = (
            f" (allowed drop {self.max_accuracy_drop:.2%})"
            if self.max_accuracy_drop is not None
            else ""
        )
        return (
            f"{self.format:<16} {os.path.basename(self.path):<30} on {self.clips} held-out "
            f"clips: top-1 agreement with float32 {self.agreement:.2%}{accuracy}{gate}  "
            f"{'OK' if self.passed else 'FAILED'}"
        )


def held_out_agreement(
    logits: np.ndarray, float_logits: np.ndarray, labels: np.ndarray | None
) -> dict:
    """agreement, top1 and float32_top1 of (N, classes) logits; labels None or -1: none."""
    ours, theirs = np.argmax(logits, -1), np.argmax(float_logits, -1)
    result = {
        "agreement": float(np.mean(ours == theirs)),
        "top1": None,
        "float32_top1": None,
    }
    if labels is not None and len(labels) and np.all(np.asarray(labels) >= 0):
        result["top1"] = float(np.mean(ours == labels))
        result["float32_top1"] = float(np.mean(theirs == labels))
    return result


def jax_logits_batched(conversion, clips: np.ndarray, batch: int = 8) -> np.ndarray:
    """`jax_logits` over many clips, `batch` at a time (one compile)."""
    from squeezetime_jax.inference.model import LoadedModel

    return LoadedModel(conversion).pixel_logits(np.asarray(clips, np.float32), batch)


def run_program(run: Callable[[np.ndarray], np.ndarray], clips, raw_input: bool):
    """A loaded program's logits (N, classes) for pixel clips (N, T, H, W, 3)."""
    return np.concatenate(
        [
            np.asarray(run(to_program_input(np.asarray(c, np.float32), raw_input)))
            for c in clips
        ]
    )


# ---------------------------------------------------------------------------------
# The whole export


# mmaction2's and the release's sampling stride, for checkpoints that do not say theirs.
DEFAULT_FRAME_INTERVAL = 4


def real_clip_settings(
    metadata, size: int, frame_interval: int | None, short_side: int | None
) -> tuple[int, int]:
    """(frame_interval, short_side) for real calibration and check clips.

    Unset values come from the checkpoint's metadata: its frame interval, and its test
    protocol's short side when that protocol crops `size` (scaled in proportion for
    another size); else 4 and `size`.
    """
    if frame_interval is None:
        frame_interval = metadata.frame_interval or DEFAULT_FRAME_INTERVAL
    if short_side is None:
        test = metadata.protocols.get("test", {})
        if test.get("short_side") and test.get("crop_size"):
            short_side = round(size * test["short_side"] / test["crop_size"])
        else:
            short_side = size
    return int(frame_interval), int(short_side)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    formats: Sequence[str] = FORMATS,
    *,
    frames: int | None = None,
    size: int | None = None,
    raw_input: bool = False,
    int8: bool = False,
    calibration_data: str | None = None,
    calibration_clips: int = CALIBRATION_DATA_CLIPS,
    calibration_split: str = "train",
    check_data: str | None = None,
    check_clips: int | None = None,
    check_split: str = "test",
    frame_interval: int | None = None,
    short_side: int | None = None,
    max_int8_accuracy_drop: float | None = None,
    log: Callable[[str], None] = print,
) -> list[Check | HeldOutCheck]:
    """Writes and verifies the requested formats; returns one Check per file (and a
    HeldOutCheck for int8 with `check_data`).

    Real clips (`calibration_data`, `check_data`: a prepared dataset directory or a
    video list; see squeezetime_jax.export.clips) are sampled with `frame_interval`
    and scaled to `short_side` before a centre crop; by default both are the
    checkpoint's own (`real_clip_settings`).

    Raises ParityError (after writing and checking every file) when any check fails,
    MissingExtraError when a format's packages are missing, and CheckpointError /
    ValueError for unusable checkpoints or sizes.
    """
    if files.is_url(out_dir):
        return _export_then_upload(dict(locals()))
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if int8 and "executorch" not in formats:
        raise ValueError("int8 applies to the ExecuTorch export: add the executorch format")
    if (calibration_data or check_data) and not int8:
        raise ValueError("calibration and check data apply to the int8 export: add int8")
    require_extras(formats)
    from squeezetime_jax.checkpoints.restore import restore

    conversion = restore(checkpoint)
    config = conversion.config
    frames = config.num_frames if frames is None else int(frames)
    if frames != config.num_frames:
        raise ValueError(
            f"{checkpoint}: the model takes {config.num_frames} frames (its stem "
            f"has {3 * config.num_frames} input channels), not --frames {frames}"
        )
    if size is None:  # the checkpoint's eval crop, else the model's image size
        stored = conversion.metadata.protocols.get("test", {}).get("crop_size")
        size = stored or config.get("image_size", 224)
    size = int(size)
    if size < 32:
        raise ValueError(f"size {size} is too small: the network downsamples by 32")
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(
        os.fspath(out_dir), "squeezetime_raw" if raw_input else "squeezetime"
    )

    clip = reference_clip(frames, size)
    reference = jax_logits(conversion, clip[None])
    example = to_program_input(clip, raw_input)
    twin = torch_twin(conversion)
    model = inference_model(twin, frames, size, raw_input)
    log(
        f"exporting {checkpoint}: depth {config.depth}, {config.num_classes} classes, input "
        f"(1, 3, {frames}, {size}, {size}) float32, "
        f"{'raw 0..255 pixels' if raw_input else 'normalized'}"
    )
    program = export_program(model, example)
    checks: list[Check] = []

    def verify(fmt, path, run, tolerance):
        check = compare(fmt, path, run(example), reference, tolerance)
        log(check.line())
        checks.append(check)

    if "pytorch" in formats:
        # The same with or without raw_input: the released layout knows no folding.
        state_path = write_state_dict(
            os.path.join(os.fspath(out_dir), "squeezetime.pth"), twin
        )
        log(f"wrote {state_path} (state_dict, released layout, normalized input)")
        verify(
            "pytorch",
            write_pt2(stem + ".pt2", program),
            load_pt2(stem + ".pt2"),
            TOLERANCES["pytorch"],
        )
    if "executorch" in formats:
        path = write_pte(stem + "_xnnpack.pte", program, log)
        verify("executorch", path, load_pte(path), TOLERANCES["executorch"])
        if int8:
            frame_interval, short_side = real_clip_settings(
                conversion.metadata, size, frame_interval, short_side
            )
            log(
                f"real clips: every {frame_interval}th frame, short side {short_side}, "
                f"centre crop {size}"
            )
            real = dict(
                num_frames=frames,
                size=size,
                frame_interval=frame_interval,
                short_side=short_side,
            )
            if calibration_data:
                from squeezetime_jax.export.clips import read_clips

                chosen = read_clips(
                    calibration_data,
                    count=calibration_clips,
                    split=calibration_split,
                    **real,
                )
                log(f"int8 calibration: {len(chosen)} clips of {chosen.source}")
                pixels = chosen.clips.astype(np.float32)
            else:
                log(
                    f"int8 calibration: {CALIBRATION_CLIPS} synthetic clips (give "
                    "calibration data for an int8 model that keeps its accuracy)"
                )
                pixels = [
                    reference_clip(frames, size, s) for s in range(1, CALIBRATION_CLIPS + 1)
                ]
            calibration = [to_program_input(c, raw_input) for c in pixels]
            quantized = quantize_int8(model, example, calibration)
            path = write_pte(stem + "_xnnpack_int8.pte", quantized, log)
            run_int8 = load_pte(path)
            verify("executorch-int8", path, run_int8, INT8_TOLERANCE)
            if check_data:
                from squeezetime_jax.export.clips import read_clips

                held_out = read_clips(
                    check_data, count=check_clips, split=check_split, **real
                )
                numbers = held_out_agreement(
                    run_program(run_int8, held_out.clips, raw_input),
                    jax_logits_batched(conversion, held_out.clips.astype(np.float32)),
                    held_out.labels if held_out.labelled else None,
                )
                held = HeldOutCheck(
                    "executorch-int8",
                    path,
                    held_out.source,
                    len(held_out),
                    max_accuracy_drop=max_int8_accuracy_drop,
                    **numbers,
                )
                log(held.line())
                checks.append(held)
    if "onnx" in formats:
        path = write_onnx(stem + ".onnx", program)
        verify("onnx", path, load_onnx(path), TOLERANCES["onnx"])

    write_info(stem, config, frames, size, raw_input, checks, conversion.metadata)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ParityError(
            "parity check failed for "
            + ", ".join(
                f"{c.path} (relative error {c.relative:.3e} > {c.tolerance:g}"
                f"{'' if c.same_top1 else ', top-1 differs'})"
                if isinstance(c, Check)
                else f"{c.path} (top-1 {c.top1:.2%} on {c.clips} held-out clips, "
                f"{c.accuracy_drop:.2%} below float32 > {c.max_accuracy_drop:.2%})"
                for c in failed
            )
        )
    return checks


def _export_then_upload(arguments: dict) -> list[Check | HeldOutCheck]:
    """export_checkpoint to a gs:// (or other URL) out_dir.

    The runtimes that check each file read local paths, so the files are written and
    checked in a local directory, then uploaded (also when a check fails: the files
    are kept for inspection, as locally).
    """
    out_dir = os.fspath(arguments["out_dir"])
    with tempfile.TemporaryDirectory(prefix="squeezetime-export-") as local:

        def upload() -> None:
            for path in files.walk_files(local):
                relative = os.path.relpath(path, local).replace(os.sep, "/")
                files.write_bytes(files.join(out_dir, relative), files.read_bytes(path))

        try:
            checks = export_checkpoint(**{**arguments, "out_dir": local})
        except ParityError as error:
            upload()
            raise ParityError(str(error).replace(local, out_dir)) from None
        upload()
    prefix = out_dir.rstrip("/") + "/"
    return [
        dataclasses.replace(c, path=c.path.replace(local + os.sep, prefix)) for c in checks
    ]


def write_info(
    stem: str,
    config,
    frames: int,
    size: int,
    raw_input: bool,
    checks: Sequence[Check | HeldOutCheck],
    metadata=None,
) -> str:
    """Writes <stem>_export_info.json: what an app must feed the programs, the class
    names and clip settings of the checkpoint, and parity."""
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    record = metadata_lib.export_record(
        metadata or metadata_lib.Metadata(), int(config.num_classes)
    )
    info = {
        "input": {
            "name": "video",
            "shape": [1, 3, frames, size, size],
            "dtype": "float32",
            "layout": "N, C (RGB), T, H, W",
            "values": "RGB pixels 0..255"
            if raw_input
            else "(pixel - mean) / std per RGB channel, pixels 0..255",
            "mean_rgb": list(MEAN_RGB),
            "std_rgb": list(STD_RGB),
            "normalization_folded_into_model": raw_input,
        },
        "output": {
            "name": "logits",
            "shape": [1, int(config.num_classes)],
            "dtype": "float32",
            "softmax_applied": False,
        },
        "class_names": record["class_names"],
        "metadata": record,
        "model_config": json.loads(config.to_json()),
        "batchnorm_folded": True,
        "parity_vs_jax": [  # files named relative to this one: the directory may move
            dataclasses.asdict(c) | {"path": os.path.basename(c.path), "passed": c.passed}
            for c in checks
            if isinstance(c, Check)
        ],
    }
    held_out = [c for c in checks if isinstance(c, HeldOutCheck)]
    if held_out:
        info["int8_vs_float32_held_out"] = [
            dataclasses.asdict(c)
            | {
                "path": os.path.basename(c.path),
                "accuracy_drop": c.accuracy_drop,
                "passed": c.passed,
            }
            for c in held_out
        ]
    path = stem + "_export_info.json"
    with open(path, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return path
