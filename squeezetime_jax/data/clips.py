"""Record -> clip(s): sampling, decoding and augmentation of one video.

These are the per-element functions the Grain pipelines map over. Every random choice
comes from the generator passed in, so a clip is a pure function of (record, rng).
"""

from __future__ import annotations

from typing import Mapping

import grain
import numpy as np

from squeezetime_jax.data import (
    device_augment,
    device_yuv,
    sampling,
    transforms,
    video_decode,
)


def _decode_clips(
    data: bytes,
    total_frames: int,
    cfg,
    *,
    num_clips: int,
    train: bool,
    rng: np.random.Generator | None,
    short_side: int,
    crop_resize=None,
    crop_resizes=None,
    packets=None,
) -> np.ndarray:
    """(num_clips, T, H, W, 3) at the given short side; re-samples if the stream is short."""
    inds, frames = _sample_and_decode(
        total_frames,
        cfg,
        num_clips=num_clips,
        train=train,
        rng=rng,
        decode=lambda inds: video_decode.decode_frames(
            data,
            inds,
            short_side=short_side,
            crop_resize=crop_resize,
            threads=cfg.decode_threads,
            crop_resizes=crop_resizes,
            packets=packets,
        ),
    )
    return frames.reshape(inds.shape + frames.shape[1:])


def _sample_and_decode(
    total_frames: int,
    cfg,
    *,
    num_clips: int,
    train: bool,
    rng: np.random.Generator | None,
    decode,
):
    """(indices, decode(indices)) for sampled frame indices.

    A stream that ends before the frame count stored at preparation time (corrupt
    tail) is sampled again over the frames that did decode.
    """
    for _ in range(2):
        inds = sampling.sample_frame_indices(
            total_frames,
            cfg.num_frames,
            cfg.frame_interval,
            num_clips,
            train=train,
            rng=rng,
        )
        try:
            return inds, decode(inds)
        except video_decode.ShortVideoError as e:
            total_frames = e.num_decoded
    raise video_decode.VideoDecodeError("frame count changed between decodes")


def packets_of(record: Mapping) -> video_decode.PacketTable | None:
    """The record's packet table; None for records prepared without one."""
    if "packets" not in record or not len(record["packets"]):
        return None
    codec = record["codec"]
    return video_decode.PacketTable(
        codec.decode() if isinstance(codec, bytes) else str(codec),
        bytes(record["extradata"]),
        np.asarray(record["packets"], np.int64),
    )


class TrainClip(grain.transforms.RandomMap):
    """(index, record) -> dict(video uint8 (T, S, S, 3), label, decode_failed).

    A video that fails to decode is replaced by another record drawn from the same
    generator (deterministic), and flagged so the failure can be counted.

    With `train.augment_on_device`, the clip is shipped cropped but unflipped and
    unjittered, with the drawn parameters (device_augment.PARAM_KEYS) added.
    With `train.repeated_augmentation` = R > 1, one decoded window gives R clips with
    their own crop, flip, jitter and erasing: every array gains a leading axis R.
    """

    def __init__(self, data_config, source, *, seed: int | None = None):
        t = data_config.train
        mode = t.get("jitter_order", "per_run")
        if mode not in ("per_run", "per_clip"):
            raise ValueError(
                f"data.train.jitter_order must be 'per_run' or 'per_clip', got {mode!r}"
            )
        # mmaction2 fixes the jitter order once per run; ours comes from the seed.
        seed = data_config.get("seed", 0) if seed is None else seed
        self._jitter_order = transforms.jitter_order(seed) if mode == "per_run" else None
        self._resize_on_device = bool(t.get("resize_on_device", False))
        if self._resize_on_device:
            if not t.get("augment_on_device", False):
                raise ValueError(
                    "data.train.resize_on_device needs data.train.augment_on_device"
                )
            if t.short_side % 4:
                raise ValueError(
                    "data.train.resize_on_device packs 4:2:0 planes and needs "
                    f"data.train.short_side divisible by 4, got {t.short_side}"
                )
            if int(t.get("repeated_augmentation", 1)) != 1:
                raise ValueError(
                    "data.train.resize_on_device works with repeated_augmentation = 1, "
                    f"got {t.repeated_augmentation}"
                )
        self._cfg = data_config
        self._source = source

    def random_map(self, element, rng: np.random.Generator) -> dict:
        _, record = element
        cfg, t = self._cfg, self._cfg.train
        repeats = int(t.get("repeated_augmentation", 1))
        for attempt in range(cfg.max_decode_retries + 1):
            try:
                outs = self._clips(record, rng, repeats)
                failed = np.bool_(attempt > 0)
                break
            except video_decode.VideoDecodeError:
                record = self._source[int(rng.integers(len(self._source)))]
        else:
            # Every retry failed (a mostly corrupt dataset): emit blank clips, flagged.
            blank = np.zeros((cfg.num_frames, t.crop_size, t.crop_size, 3), np.uint8)
            out = self._finish(blank, None)
            if self._resize_on_device:
                del out["video"]
                out.update(device_yuv.blank(cfg.num_frames, t.short_side))
            outs, failed = [out] * repeats, np.bool_(True)
        for out in outs:
            out["label"] = np.int32(record["label"])
            out["decode_failed"] = failed
        if repeats == 1:
            return outs[0]
        return {k: np.stack([o[k] for o in outs]) for k in outs[0]}

    def _clips(self, record: Mapping, rng: np.random.Generator, repeats: int) -> list[dict]:
        cfg, t = self._cfg, self._cfg.train
        # Crops are chosen on the short-side-resized frame size (known from the record),
        # then cut and scaled while decoding: one resampling per frame, not two.
        h, w = video_decode.short_side_size(
            int(record["height"]), int(record["width"]), t.short_side
        )
        boxes = []
        for _ in range(repeats):
            if t.multiscale_crop:
                boxes.append(
                    transforms.multiscale_crop_box(
                        h,
                        w,
                        rng,
                        scales=t.scales,
                        max_aspect_gap=t.max_aspect_gap,
                        input_size=t.crop_size,
                        random_crop=t.random_crop,
                    )
                )
            else:
                boxes.append(transforms.center_crop_box(h, w, t.crop_size))
        if self._resize_on_device:
            return [self._yuv_clip(record, boxes[0], rng)]
        crops = [(b, t.crop_size, t.crop_size) for b in boxes]
        if repeats == 1:
            videos = _decode_clips(
                record["video"],
                int(record["num_frames"]),
                cfg,
                num_clips=1,
                train=True,
                rng=rng,
                short_side=t.short_side,
                crop_resize=crops[0],
                packets=packets_of(record),
            )[:, :, None]  # (1, T, 1, S, S, 3), as with several crops
        else:
            videos = _decode_clips(
                record["video"],
                int(record["num_frames"]),
                cfg,
                num_clips=1,
                train=True,
                rng=rng,
                short_side=t.short_side,
                crop_resizes=crops,
                packets=packets_of(record),
            )
        return [self._finish(videos[0, :, r], rng) for r in range(repeats)]

    def _yuv_clip(self, record: Mapping, box, rng: np.random.Generator) -> dict:
        """The crop's YUV planes and colour matrix, plus the augmentation parameters."""
        cfg, t = self._cfg, self._cfg.train
        packets = packets_of(record)
        _, (planes, matrix) = _sample_and_decode(
            int(record["num_frames"]),
            cfg,
            num_clips=1,
            train=True,
            rng=rng,
            decode=lambda inds: video_decode.decode_yuv420_crops(
                record["video"],
                inds,
                short_side=t.short_side,
                box=box,
                buffer=t.short_side,
                threads=cfg.decode_threads,
                packets=packets,
            ),
        )
        out = {
            "video_yuv420": planes,
            "yuv_crop_size": np.array(video_decode.yuv_crop_size(box), np.int32),
            "yuv_to_rgb": matrix,
        }
        out.update(
            device_augment.host_params(
                rng,
                t,
                height=t.crop_size,
                width=t.crop_size,
                num_frames=cfg.num_frames,
                jitter_order=self._jitter_order,
            )
        )
        return out

    def _finish(self, video: np.ndarray, rng: np.random.Generator | None) -> dict:
        """Flip, jitter and erase `video` on the host, or draw their parameters."""
        t = self._cfg.train
        on_device = t.get("augment_on_device", False)
        if rng is None:  # blank replacement clip: no augmentation
            out = {"video": video}
            if on_device:
                out.update(
                    {k: v[0] for k, v in device_augment.no_augment_params(1).items()}
                )
            return out
        if on_device:
            out = {"video": np.ascontiguousarray(video)}
            out.update(
                device_augment.host_params(
                    rng,
                    t,
                    height=video.shape[1],
                    width=video.shape[2],
                    num_frames=video.shape[0],
                    jitter_order=self._jitter_order,
                )
            )
            return out
        return {"video": self._augment_on_host(video, rng)}

    def _augment_on_host(self, video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t = self._cfg.train
        if rng.random() < t.flip_prob:
            video = transforms.flip(video)
        if t.color_jitter:
            video = transforms.color_jitter(
                video,
                rng,
                brightness=t.brightness,
                contrast=t.contrast,
                saturation=t.saturation,
                hue=t.hue,
                order=self._jitter_order,
            )
        if rng.random() < t.random_erasing_prob:
            video = transforms.random_erasing(
                video, rng, area=tuple(t.erasing_area), aspect=tuple(t.erasing_aspect)
            )
        return np.ascontiguousarray(video)


class EvalViews(grain.transforms.Map):
    """(global video index, record) -> all views of that video, stacked on axis 0.

    The video is decoded once for all its clips; views are ordered clip-major
    (view = clip * num_crops + crop). An undecodable video gives blank views flagged
    `decode_failed`, keeping its label so it still counts in the metrics.

    With `stacked=False`, "video" is instead a list of the views, each a crop of the
    decoded frames that is not copied: a batch slot takes them row by row
    (batch_slots.FillSlot). Stacking 30 views first would allocate and fill 72 MB
    of fresh memory per K400 video, most of an evaluation worker's CPU time.
    """

    def __init__(self, data_config, protocol, stacked: bool = True):
        self._cfg = data_config
        self._p = protocol
        self._stacked = stacked

    def map(self, element) -> dict:
        index, record = element
        p, cfg = self._p, self._cfg
        views = p.num_clips * p.num_crops
        failed = False
        try:
            clips = _decode_clips(
                record["video"],
                int(record["num_frames"]),
                cfg,
                num_clips=p.num_clips,
                train=False,
                rng=None,
                short_side=p.short_side,
                packets=packets_of(record),
            )
            _, _, h, w, _ = clips.shape
            boxes = (
                [transforms.center_crop_box(h, w, p.crop_size)]
                if p.num_crops == 1
                else transforms.three_crop_boxes(h, w, p.crop_size)
            )
            video = [transforms.crop(c, b) for c in clips for b in boxes]
        except video_decode.VideoDecodeError:
            failed = True
            blank = np.zeros((cfg.num_frames, p.crop_size, p.crop_size, 3), np.uint8)
            video = [blank] * views
        return {
            "video": np.stack(video) if self._stacked else video,
            "label": np.full(views, record["label"], np.int32),
            "video_index": np.full(views, index, np.int32),
            "clip_index": np.repeat(np.arange(p.num_clips, dtype=np.int32), p.num_crops),
            "crop_index": np.tile(np.arange(p.num_crops, dtype=np.int32), p.num_clips),
            "mask": np.ones(views, bool),
            "decode_failed": np.full(views, failed),
        }
