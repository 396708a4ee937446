"""Host colour jitter of one clip: OpenCV's 8-bit HSV conversions against NumPy's.

  python benchmarks/jitter_benchmark.py [--frames 16] [--size 224] [--repeats 20]

`transforms.apply_color_jitter` with all four operations (brightness, contrast,
saturation, hue), timed in CPU time, alternating between the two conversions so that
both see the same machine load: OpenCV (the default where its build passes the
start-up check in `transforms._opencv`) and the NumPy reference
(`rgb_to_hsv_u8` / `hsv_to_rgb_u8`, which the device path mirrors). Reports the
median milliseconds per clip and whether the two outputs are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from squeezetime_jax.data import transforms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    opencv = transforms._opencv()
    if opencv is None:
        print("OpenCV is not installed or failed the start-up check", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (args.frames, args.size, args.size, 3), np.uint8)
    order = np.arange(4)
    factors = np.array([1.1, 0.9, 1.2, 0.05], np.float32)
    forms = {"opencv": lambda: opencv, "numpy": lambda: None}
    seconds = {name: [] for name in forms}
    outputs = {}
    real = transforms._opencv
    try:
        for _ in range(args.repeats + 1):  # the first round warms up
            for name, choose in forms.items():
                transforms._opencv = choose
                start = time.process_time()
                outputs[name] = transforms.apply_color_jitter(clip, order, factors)
                seconds[name].append(time.process_time() - start)
    finally:
        transforms._opencv = real
    medians = {name: 1e3 * statistics.median(s[1:]) for name, s in seconds.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "clip": list(clip.shape),
        "median_ms": {name: round(ms, 2) for name, ms in medians.items()},
        "speedup": round(medians["numpy"] / medians["opencv"], 2),
        "equal": bool(np.array_equal(outputs["opencv"], outputs["numpy"])),
    }
    print(json.dumps(result))
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
