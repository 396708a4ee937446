"""Features of video files under a SqueezeTime checkpoint, for detection and localization.

    python -m squeezetime_jax.features --checkpoint CKPT [--views 16x1] \
        [--stages layer3,layer4 [--spatial]] --out features.npz VIDEO [VIDEO ...]

Each video is cut into views exactly as predict does: the checkpoint's test protocol
(clips evenly spread over the video, crops, short side, crop size, frame interval),
unless --views, --short_side or --crop_size say otherwise. For each view the last
stage's feature map is averaged over space: the vector the classifier sees. The
output (.npz) holds, for the N videos that could be read, V views each:

  videos           (N,)        the video paths
  features         (N, C)      the views' pooled features averaged: one per video
  clip_features    (N, V, C)   pooled features of each view, in clip order
  logits           (N, V, K)   the classifier's logits of each view
  clip_index       (V,)        which clip (in time) and which crop each view is
  crop_index       (V,)
  <stage>          (N, V, C_s) with --stages: that stage's map averaged over space
                   (stem, layer1 ... layer4), or (N, V, H_s, W_s, C_s) with --spatial
  class_names      (K,)        and the view settings: num_frames, frame_interval,
                               short_side, crop_size, num_clips, num_crops

A video that cannot be read is reported on stderr and left out; the exit status is 1.
"""

from __future__ import annotations

import functools
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from squeezetime_jax import cli, files
from squeezetime_jax.data.normalize import normalize_on_device
from squeezetime_jax.inference.videos import Predictor, parse_views
from squeezetime_jax.predict import define_view_flags
from squeezetime_jax.runtime.compile_options import compiler_options

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def feature_step(variables, batch, *, model, stages: Sequence[str], spatial: bool):
    """Logits, pooled last-stage features and the requested stages of uint8 clips."""
    logits, maps = model.apply(
        variables, normalize_on_device(batch["video"]), train=False, return_features=True
    )
    out = {
        "logits": logits,
        "clip_features": jnp.mean(maps["layer4"].astype(jnp.float32), axis=(1, 2)),
    }
    for stage in stages:
        feature_map = maps[stage].astype(jnp.float32)
        out[stage] = feature_map if spatial else jnp.mean(feature_map, axis=(1, 2))
    return out


def parse_stages(text: str | None) -> list[str]:
    stages = [s.strip() for s in (text or "").split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"--stages {text!r}: unknown {unknown}; choose from {STAGES}")
    return list(dict.fromkeys(stages))


class FeatureExtractor:
    """Per-view features of video files: the views and the loaded model of `Predictor`
    (squeezetime_jax.inference.model), run with `return_features`."""

    def __init__(
        self,
        checkpoint: str,
        *,
        stages: Sequence[str] = (),
        spatial: bool = False,
        **view_options,
    ):
        self.predictor = Predictor(checkpoint, **view_options)
        self.model = self.predictor.model
        self.stages = list(stages)
        self._step = jax.jit(
            functools.partial(
                feature_step,
                model=self.model.module,
                stages=tuple(self.stages),
                spatial=spatial,
            ),
            compiler_options=compiler_options(self.model.device.platform),
        )

    def view_features(self, video: np.ndarray) -> dict[str, np.ndarray]:
        """{name: (V, ...) float32} of (V, T, C, C, 3) uint8 views, in fixed-size
        batches (one compile)."""
        size = self.predictor.batch_size
        parts = []
        for start in range(0, len(video), size):
            chunk = video[start : start + size]
            padded = np.zeros((size,) + chunk.shape[1:], chunk.dtype)
            padded[: len(chunk)] = chunk
            out = self._step(
                self.model.variables, {"video": jax.device_put(padded, self.model.device)}
            )
            parts.append(
                {k: np.asarray(v, np.float32)[: len(chunk)] for k, v in out.items()}
            )
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def video_features(self, path: str) -> dict[str, np.ndarray]:
        """{name: (V, ...)} for one file; VideoDecodeError if it cannot be read."""
        views = self.predictor.read_views(path)
        out = self.view_features(views["video"])
        out["clip_index"] = views["clip_index"]
        out["crop_index"] = views["crop_index"]
        return out

    def settings(self) -> dict[str, np.ndarray]:
        p = self.predictor.protocol
        data = self.predictor.data_config
        return {
            "class_names": np.asarray(self.predictor.class_names, dtype=str),
            "num_frames": np.int32(data.num_frames),
            "frame_interval": np.int32(data.frame_interval),
            "short_side": np.int32(p.short_side),
            "crop_size": np.int32(p.crop_size),
            "num_clips": np.int32(p.num_clips),
            "num_crops": np.int32(p.num_crops),
        }


FLAGS = cli.Flags("python -m squeezetime_jax.features", __doc__)
CHECKPOINT, VIEWS, SHORT_SIDE, CROP_SIZE, BATCH_SIZE = define_view_flags(FLAGS)
OUT = FLAGS.string("out", None, "Output .npz file (local or gs://).", required=True)
STAGES_FLAG = FLAGS.string(
    "stages", "", f"Also save these stages, comma-separated: {', '.join(STAGES)}."
)
SPATIAL = FLAGS.boolean(
    "spatial", False, "Keep the --stages maps' H x W instead of averaging over space."
)


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    videos = FLAGS.parse(argv)
    if not videos:
        raise cli.UsageError("no VIDEO given")
    try:
        stages = parse_stages(STAGES_FLAG.value)
        views = parse_views(VIEWS.value) if VIEWS.value else None
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    try:
        extractor = FeatureExtractor(
            CHECKPOINT.value,
            stages=stages,
            spatial=SPATIAL.value,
            views=views,
            short_side=SHORT_SIDE.value,
            crop_size=CROP_SIZE.value,
            batch_size=BATCH_SIZE.value,
        )
    except Exception as error:  # checkpoint errors name the file
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2

    per_video, paths, failures = [], [], 0
    for path in videos:
        try:
            per_video.append(extractor.video_features(path))
        except Exception as error:  # one bad file must not stop the others
            failures += 1
            print(f"{path}: error: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        paths.append(path)
        print(f"{path}: {len(per_video[-1]['clip_features'])} views", flush=True)
    if not per_video:
        print("error: no video could be read; nothing written", file=sys.stderr)
        return 1
    arrays = {
        name: np.stack([v[name] for v in per_video])
        for name in ("clip_features", "logits", *extractor.stages)
    }
    arrays["features"] = arrays["clip_features"].mean(axis=1)
    arrays["clip_index"] = per_video[0]["clip_index"]
    arrays["crop_index"] = per_video[0]["crop_index"]
    arrays["videos"] = np.asarray(paths, dtype=str)
    arrays.update(extractor.settings())
    with files.open_file(OUT.value, "wb") as f:
        np.savez(f, **arrays)
    print(
        f"wrote {OUT.value}: {len(paths)} videos x {arrays['clip_features'].shape[1]} "
        f"views, features {arrays['features'].shape}"
    )
    if failures:
        print(f"{failures} of {len(videos)} videos could not be read", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
