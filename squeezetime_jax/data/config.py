"""Input pipeline configuration: the released K400 recipe as defaults."""

from __future__ import annotations

import ml_collections

from squeezetime_jax.data import tfds_builder

# ImageNet mean/std in 0-255 units, as the released mmaction2 configs normalize.
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)


def default_data_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = f"{tfds_builder.NAME}/kinetics400"  # tfds name/config
    c.data_dir = ""  # the --out directory of squeezetime_jax.data.prepare
    c.num_frames = 16
    c.frame_interval = 4
    c.decode_threads = 1  # codec threads per worker process; workers give parallelism
    c.num_workers = 8  # mp_prefetch worker processes per host
    c.worker_buffer_size = 2  # batches buffered per worker
    c.read_threads = 1  # threads per worker process reading/decoding records
    # Workers write training and evaluation batches into reusable shared-memory slots
    # that go to the devices without a copy (data/batch_slots.py); False: Grain's own
    # hand-off (a new shared-memory segment per array and batch). Evaluation uses slots
    # when a process's batch holds at least one video's views.
    c.batch_slots = True
    c.seed = 0
    c.output_dtype = "uint8"  # normalize on device with normalize_on_device
    c.max_decode_retries = 10  # replacement samples tried for a corrupt training video

    c.train = ml_collections.ConfigDict()
    c.train.split = "train"
    c.train.short_side = 256
    c.train.crop_size = 224
    c.train.multiscale_crop = True
    c.train.scales = (1.0, 0.875, 0.75, 0.66, 0.5)
    c.train.max_aspect_gap = 1
    # The release sets random_crop=True (uniform offsets); False: mmaction2's default of
    # 5 fixed positions.
    c.train.random_crop = True
    c.train.flip_prob = 0.5
    c.train.color_jitter = True
    c.train.brightness = 0.5
    c.train.contrast = 0.5
    c.train.saturation = 0.5
    c.train.hue = 0.1
    # "per_run": one order of brightness/contrast/saturation/hue for the whole run,
    # drawn from the pipeline seed (mmaction2 draws it once, when the transform is
    # built); "per_clip": a new order for every clip (torchvision's behaviour).
    c.train.jitter_order = "per_run"
    c.train.random_erasing_prob = 0.25
    c.train.erasing_area = (0.02, 1 / 3)
    c.train.erasing_aspect = (0.3, 10 / 3)
    # Input-throughput options (docs in BENCHMARKS.md, "Input throughput"):
    # flip/jitter/erasing parameters drawn on the host, applied in the jitted step with
    # device_augment.augment_and_normalize (same distribution; the trainer must call it).
    c.train.augment_on_device = False
    # R > 1: R clips (own crop, flip, jitter, erasing) from each decoded window, in the
    # same batch. A change to the recipe (fewer distinct windows per batch); batch size
    # must be a multiple of R.
    c.train.repeated_augmentation = 1
    # Ship the crop as YUV 4:2:0 planes at the short-side scale; scaling to crop_size and
    # the RGB conversion run in the jitted step (device_yuv). Needs augment_on_device and
    # R = 1; pays off with records re-encoded at short_side (a plane copy per frame).
    c.train.resize_on_device = False

    c.val = ml_collections.ConfigDict()
    c.val.split = "validation"
    c.val.num_clips = 1
    c.val.num_crops = 1
    c.val.short_side = 256
    c.val.crop_size = 224

    c.test = ml_collections.ConfigDict()
    # The release tests Kinetics and HMDB51 on their validation lists (there is no
    # separate labelled test list).
    c.test.split = "validation"
    c.test.num_clips = 10
    c.test.num_crops = 3
    c.test.short_side = 224
    c.test.crop_size = 224
    return c
