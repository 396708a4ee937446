"""Forward + gradient cost of single layers on XLA CPU, in the forms the model could use.

  python benchmarks/gradient_ops_benchmark.py [--batch 4] [--repeats 20] [--sections a,b]

Times, jitted and warm, the median of `--repeats` calls of:
  * 1x1 convolutions as `lax.conv_general_dilated`, as a channel matmul of the 4D
    activation, and as the model's 2D (N*H*W, C) matmul
    (`squeezetime_jax.models.convolution.conv_pointwise_as_matmul`), forward plus the
    gradients of input and kernel, at the bottleneck shapes of the K400 model;
  * BatchNorm + ReLU in training mode, forward plus gradients, with flax's
    nn.BatchNorm and the model's `BatchNorm` (written-out gradient);
  * the stem's BatchNorm + ReLU + 3x3/2 max-pool, forward plus gradients, with
    `nn.max_pool` (reduce_window), a plain maximum of nine strided slices, and
    `max_pool_3x3_stride2` (the model's custom gradient);
  * 3x3 weight gradients from XLA vs as nine shifted matmuls;
  * the model's convolutions (forward, input gradient, kernel gradient) compiled with
    XLA's defaults (YNNPACK) and with `squeezetime_jax.runtime.compile_options` (Eigen);
  * kernel gradients of the stem and the IOI convolutions from XLA and from the
    model's `conv_kernel_gradient` (space to depth, shifted matrix products), compiled
    with the trainer's options, and the stem's for batches 1 to `--batch`.
`--sections` runs some of these (default: all).
Each comparison also reports the largest relative difference between the forms.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from squeezetime_jax.models.batch_norm import BatchNorm
from squeezetime_jax.models.convolution import (
    conv_kernel_gradient,
    conv_pointwise_as_matmul,
    space_to_depth_kernel_gradient,
)
from squeezetime_jax.models.squeezetime import _pool_windows, max_pool_3x3_stride2
from squeezetime_jax.runtime.compile_options import compiler_options

DN = ("NHWC", "HWIO", "NHWC")


def timed(fn, *args, repeats: int, options=None) -> tuple[float, object]:
    """(median ms of `repeats` warm calls of jit(fn), its output)."""
    return timed_interleaved((fn,), *args, repeats=repeats, options=options)[0]


def timed_interleaved(fns, *args, repeats: int, options=None) -> list[tuple[float, object]]:
    """`timed` for several functions, calling them in turn so they share the load."""
    fns = [jax.jit(fn, compiler_options=options) for fn in fns]
    outs = [jax.block_until_ready(fn(*args)) for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, series in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            series.append(time.perf_counter() - start)
    return [(1e3 * statistics.median(series), out) for series, out in zip(times, outs)]


def rel_diff(a, b) -> float:
    return max(
        float(jnp.abs(x - y).max() / (jnp.abs(y).max() + 1e-30))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def forward_and_grads(op):
    def run(x, w, dy):
        y, vjp = jax.vjp(op, x, w)
        return y, vjp(dy)

    return run


def _matmul_4d(x, w, *args, **kwargs):
    """The channel matmul on the 4D activation (contracting N, H, W in its gradient)."""
    return lax.dot_general(x, w[0, 0], (((3,), (0,)), ((), ())))


def pointwise(batch: int, repeats: int) -> None:
    print(
        "| 1x1 layer | as conv ms | 4D matmul ms | 2D matmul (model) ms | rel. diff |\n"
        "|---|---:|---:|---:|---:|"
    )
    dims = lax.conv_dimension_numbers((1,) * 4, (1,) * 4, DN)
    conv = lambda x, w: lax.conv_general_dilated(
        x, w, (1, 1), "VALID", dimension_numbers=dims
    )
    matmul = lambda x, w: conv_pointwise_as_matmul(
        x, w, (1, 1), "VALID", dimension_numbers=dims
    )
    for size, cin, cout in (
        (56, 256, 64),
        (56, 64, 256),
        (28, 512, 128),
        (14, 1024, 256),
        (7, 512, 2048),
    ):
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, size, size, cin))
        w = 0.05 * jax.random.normal(keys[1], (1, 1, cin, cout))
        dy = jax.random.normal(keys[2], (batch, size, size, cout))
        t_conv, ref = timed(forward_and_grads(conv), x, w, dy, repeats=repeats)
        t_4d, out_4d = timed(forward_and_grads(_matmul_4d), x, w, dy, repeats=repeats)
        t_mm, out = timed(forward_and_grads(matmul), x, w, dy, repeats=repeats)
        print(
            f"| {size}x{size}, {cin} -> {cout} | {t_conv:.1f} | {t_4d:.1f} | {t_mm:.1f} | "
            f"{max(rel_diff(out, ref), rel_diff(out_4d, ref)):.1e} |"
        )


def batch_norm(batch: int, repeats: int) -> None:
    print(
        "\n| BatchNorm + ReLU, training, forward and gradients | nn.BatchNorm ms "
        "| model BatchNorm ms | rel. diff |\n|---|---:|---:|---:|"
    )
    for size, channels in ((112, 64), (56, 64), (56, 256), (28, 512), (14, 1024)):
        x = 2.0 + 3.0 * jax.random.normal(jax.random.key(0), (batch, size, size, channels))
        dy = jax.random.normal(jax.random.key(1), x.shape)
        times, outputs = [], []
        for cls in (nn.BatchNorm, BatchNorm):
            module = cls(use_running_average=False, momentum=0.9, epsilon=1e-5)
            variables = module.init(jax.random.key(2), x)

            def run(x, params, dy, module=module, stats=variables["batch_stats"]):
                def forward(x, params):
                    y, updates = module.apply(
                        {"params": params, "batch_stats": stats}, x, mutable=["batch_stats"]
                    )
                    return jax.nn.relu(y), updates

                y, vjp, updates = jax.vjp(forward, x, params, has_aux=True)
                return y, updates, vjp(dy)

            ms, out = timed(run, x, variables["params"], dy, repeats=repeats)
            times.append(ms)
            outputs.append(out)
        print(
            f"| {size}x{size}x{channels} | {times[0]:.1f} | {times[1]:.1f} | "
            f"{rel_diff(outputs[1], outputs[0]):.1e} |"
        )


def _nine_slice_pool(x):
    return functools.reduce(jnp.maximum, _pool_windows(x))


def stem_pool(batch: int, repeats: int) -> None:
    print(
        "\n| stem BN + ReLU + max-pool, forward and gradients | ms | rel. diff |\n|---|---:|---:|"
    )
    reduce_window = lambda z: nn.max_pool(
        z, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
    )

    def stem(pool, x, scale, bias):
        y = (x - x.mean((0, 1, 2))) * scale + bias
        return pool(jax.nn.relu(y))

    x = jax.random.normal(jax.random.key(0), (batch, 112, 112, 64))
    scale, bias = jnp.full((64,), 1.3), jnp.full((64,), 0.1)
    dy = jax.random.normal(jax.random.key(1), (batch, 56, 56, 64))
    ref = None
    for name, pool in (
        ("nn.max_pool (reduce_window)", reduce_window),
        ("maximum of nine strided slices", _nine_slice_pool),
        ("max_pool_3x3_stride2 (custom gradient)", max_pool_3x3_stride2),
    ):
        run = lambda x, s, b, d, pool=pool: jax.vjp(functools.partial(stem, pool), x, s, b)[
            1
        ](d)
        ms, out = timed(run, x, scale, bias, dy, repeats=repeats)
        ref = out if ref is None else ref
        print(f"| {name} | {ms:.1f} | {rel_diff(out, ref):.1e} |")


def shifted_matmul_weight_grad(x, dy, k: int):
    padded = jnp.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    n, h, w, _ = dy.shape
    return jnp.stack(
        [
            jnp.stack(
                [
                    jnp.einsum("nhwc,nhwd->cd", padded[:, i : i + h, j : j + w], dy)
                    for j in range(k)
                ]
            )
            for i in range(k)
        ]
    )


def weight_grads(batch: int, repeats: int) -> None:
    print(
        "\n| 3x3 weight gradient | XLA ms | nine shifted matmuls ms | rel. diff |\n"
        "|---|---:|---:|---:|"
    )
    dims = lax.conv_dimension_numbers((1,) * 4, (1,) * 4, DN)
    for size, channels in ((56, 64), (28, 512)):
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, size, size, channels))
        w = 0.05 * jax.random.normal(keys[1], (3, 3, channels, channels))
        dy = jax.random.normal(keys[2], (batch, size, size, channels))
        xla = lambda x, w, dy: jax.vjp(
            lambda w: lax.conv_general_dilated(
                x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims
            ),
            w,
        )[1](dy)[0]
        t_xla, ref = timed(xla, x, w, dy, repeats=repeats)
        t_mm, out = timed(
            lambda x, dy: shifted_matmul_weight_grad(x, dy, 3), x, dy, repeats=repeats
        )
        print(
            f"| {size}x{size}, {channels} -> {channels} | {t_xla:.1f} | {t_mm:.1f} | "
            f"{rel_diff(out, ref):.1e} |"
        )


def convolution_backends(batch: int, repeats: int) -> None:
    print(
        "\n| convolution | YNNPACK fwd / input grad / kernel grad ms "
        "| Eigen fwd / input grad / kernel grad ms | YNNPACK / Eigen total |\n"
        "|---|---:|---:|---:|"
    )
    layers = (
        ("stem 5x5/2, 224x224, 48 -> 64", 224, 48, 64, 5, 2),
        ("3x3, 56x56, 64 -> 64", 56, 64, 64, 3, 1),
        ("3x3, 28x28, 128 -> 128", 28, 128, 128, 3, 1),
        ("3x3, 14x14, 256 -> 256", 14, 256, 256, 3, 1),
        ("3x3, 7x7, 512 -> 512", 7, 512, 512, 3, 1),
        ("IOI 3x3, 56x56, 64 -> 16", 56, 64, 16, 3, 1),
        ("IOI 7x7, 56x56, 16 -> 16", 56, 16, 16, 7, 1),
    )
    for name, size, cin, cout, k, stride in layers:
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, size, size, cin))
        w = 0.05 * jax.random.normal(keys[1], (k, k, cin, cout))
        out_size = (size - 1) // stride + 1
        dy = jax.random.normal(keys[2], (batch, out_size, out_size, cout))
        conv = lambda x, w: lax.conv_general_dilated(
            x, w, (stride, stride), ((k // 2, k // 2),) * 2, dimension_numbers=DN
        )
        parts = (
            conv,
            lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy),
            lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy),
        )
        cells = []
        for options in (None, compiler_options("cpu")):
            ms = [
                timed(
                    part,
                    *((x, w) if i == 0 else (x, w, dy)),
                    repeats=repeats,
                    options=options,
                )[0]
                for i, part in enumerate(parts)
            ]
            cells.append(ms)
        print(
            f"| {name} | {' / '.join(f'{m:.1f}' for m in cells[0])} | "
            f"{' / '.join(f'{m:.1f}' for m in cells[1])} | "
            f"{sum(cells[0]) / sum(cells[1]):.2f} |"
        )


def kernel_gradients(batch: int, repeats: int) -> None:
    """XLA's kernel gradients against the model's (`conv_kernel_gradient`), trainer's options."""
    print(
        "\n| kernel gradient | XLA ms | model ms | XLA / model | rel. diff |\n"
        "|---|---:|---:|---:|---:|"
    )
    layers = [("stem 5x5/2, 224x224, 48 -> 64", 224, 48, 64, 5, 2, 1)]
    for size, width, blocks in ((56, 64, 3), (28, 128, 4), (14, 256, 6), (7, 512, 3)):
        layers += [
            (f"IOI 3x3, {size}x{size}, {width} -> 16", size, width, 16, 3, 1, blocks),
            (f"IOI 7x7, {size}x{size}, 16 -> 16", size, 16, 16, 7, 1, blocks),
            (f"IOI 3x3, {size}x{size}, 16 -> {width}", size, 16, width, 3, 1, blocks),
        ]
    options = compiler_options("cpu")
    totals = [0.0, 0.0]
    for name, size, cin, cout, k, stride, count in layers:
        keys = jax.random.split(jax.random.key(0), 2)
        x = jax.random.normal(keys[0], (batch, size, size, cin))
        out_size = (size - 1) // stride + 1
        dy = jax.random.normal(keys[1], (batch, out_size, out_size, cout))
        kernel = jax.ShapeDtypeStruct((k, k, cin, cout), jnp.float32)
        pads = ((k // 2, k // 2),) * 2
        xla = lambda x, dy: jax.linear_transpose(
            lambda w: lax.conv_general_dilated(
                x, w, (stride, stride), pads, dimension_numbers=DN
            ),
            kernel,
        )(dy)[0]
        model = lambda x, dy: conv_kernel_gradient(
            x, dy, kernel.shape, (stride, stride), pads
        )
        (t_xla, ref), (t_model, out) = timed_interleaved(
            (xla, model), x, dy, repeats=repeats, options=options
        )
        totals[0] += count * t_xla
        totals[1] += count * t_model
        print(
            f"| {name} | {t_xla:.1f} | {t_model:.1f} | {t_xla / t_model:.2f} | "
            f"{rel_diff(out, ref):.1e} |"
        )
    print(
        f"| all of these in the K400 model (x blocks) | {totals[0]:.0f} | {totals[1]:.0f} | "
        f"{totals[0] / totals[1]:.2f} | |"
    )


def stem_batches(batch: int, repeats: int) -> None:
    """The stem's kernel gradient, XLA's against space to depth, for batches 1 to `batch`."""
    print(
        "\n| stem kernel gradient, batch | XLA ms | space to depth ms | XLA / space to depth |"
        "\n|---:|---:|---:|---:|"
    )
    kernel = jax.ShapeDtypeStruct((5, 5, 48, 64), jnp.float32)
    pads = ((2, 2), (2, 2))
    xla = lambda x, dy: jax.linear_transpose(
        lambda w: lax.conv_general_dilated(x, w, (2, 2), pads, dimension_numbers=DN), kernel
    )(dy)[0]
    blocks = lambda x, dy: space_to_depth_kernel_gradient(
        x, dy, kernel.shape, (2, 2), pads, None
    )
    for n in range(1, batch + 1):
        keys = jax.random.split(jax.random.key(n), 2)
        x = jax.random.normal(keys[0], (n, 224, 224, 48))
        dy = jax.random.normal(keys[1], (n, 112, 112, 64))
        (t_xla, _), (t_blocks, _) = timed_interleaved(
            (xla, blocks), x, dy, repeats=repeats, options=compiler_options("cpu")
        )
        print(f"| {n} | {t_xla:.1f} | {t_blocks:.1f} | {t_xla / t_blocks:.2f} |")


SECTIONS = {
    "pointwise": pointwise,
    "batch_norm": batch_norm,
    "stem_pool": stem_pool,
    "weight_grads": weight_grads,
    "convolution_backends": convolution_backends,
    "kernel_gradients": kernel_gradients,
    "stem_batches": stem_batches,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, from {', '.join(SECTIONS)}",
    )
    args = parser.parse_args()
    print(f"batch {args.batch}, float32, jax {jax.__version__}, median of {args.repeats}\n")
    for name in args.sections.split(","):
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        SECTIONS[name](args.batch, args.repeats)


if __name__ == "__main__":
    main()
