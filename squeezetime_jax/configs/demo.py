"""The built-in demo: a small SqueezeTime learning temporal order on generated videos.

    python -m squeezetime_jax.demo            # generates, prepares, trains, evaluates
    python train.py --config configs/demo.py --workdir DIR \
        --config.data.data_dir=PREPARED_DIR   # the training stage alone

Model: depth 10, widen 0.25 (stage widths 16/32/64/128), 8 frames at 56x56:
637,602 parameters and 19.6M multiply-adds per clip (`python -m squeezetime_jax.summary
--config configs/demo.py`).
The dataset (squeezetime_jax.demo.scenes) has 2 classes, a disc moving left or right
(with a square moving up or down at random, and jittering distractors); a single frame
or the frames shuffled carry no label, and every training scene also appears played
backwards with the other label, so backgrounds cannot be memorized. Clips: 8 frames,
4 apart (the project's default interval, so `python -m squeezetime_jax.predict`
samples them the same way).

Augmentation differs from the K400 recipe on purpose:
- no horizontal flip: flipping reverses the disc's direction, i.e. turns a video into
  another class;
- centre crops, no colour jitter, no random erasing, no dropout: colours, sizes and
  positions are random in the data already, and with those augmentations this small
  network stayed at chance for 1000 steps; without them it learns the motion.

Variants: `configs/demo.py:quick=true` is the short smoke version the demo's --quick
and the tests run.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from squeezetime_jax.config_utils import parse_arg
from squeezetime_jax.data import default_data_config
from squeezetime_jax.demo.scenes import CLASSES
from squeezetime_jax.models import model_config
from squeezetime_jax.training.optim import optimizer_config


def get_config(arg=None):
    variant = parse_arg(arg, quick=False)
    config = ml_collections.ConfigDict()
    config.seed = 0

    size = 32 if variant.quick else 56
    config.model = model_config(
        depth=10,
        widen_factor=0.25,
        num_frames=8,
        num_classes=len(CLASSES),
        image_size=size,
        # Feature sizes of the 4 stages at 56x56 input.
        pos_dims=(14, 7, 4, 2),
        dropout_rate=0.0,
    )

    config.data = default_data_config()
    config.data.dataset = "squeezetime_video/custom"
    config.data.num_frames = 8
    config.data.frame_interval = 4
    config.data.num_workers = 1  # one decoding process next to training on 2 cores
    config.data.train.short_side = size * 8 // 7
    config.data.train.crop_size = size
    config.data.train.multiscale_crop = False
    config.data.train.color_jitter = False
    config.data.train.flip_prob = 0.0
    config.data.train.random_erasing_prob = 0.0
    config.data.test.split = "test"  # the demo generates a held-out test list
    for protocol in (config.data.val, config.data.test):
        protocol.short_side = size
        protocol.crop_size = size

    config.batch_size = 32
    config.eval_batch_size = 120  # 4 videos of 10 clips x 3 crops; divisible by 8 devices
    config.total_epochs = placeholder(float)
    config.total_steps = placeholder(int)
    # The network starts reading the motion after 300-900 steps, and when depends on
    # float32 rounding (the gradient is ill-conditioned at initialization): 1,500
    # steps leave margin (BENCHMARKS.md, "Demo").
    config.total_steps = 6 if variant.quick else 1500

    config.optimizer = optimizer_config()
    config.optimizer.base_lr = 0.05  # per 64 clips: 0.025 at batch 32
    config.optimizer.weight_decay = 5e-5
    config.schedule = ml_collections.ConfigDict(
        dict(
            name="warmup_cosine",
            warmup_epochs=placeholder(float),
            warmup_steps=placeholder(int),
            warmup_start_factor=0.1,
            end_lr=1e-4,
            decay_epochs=(),
            decay_factor=0.1,
        )
    )
    config.schedule.warmup_steps = 2 if variant.quick else 30

    config.log_every_steps = 2 if variant.quick else 25
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 1
    # "START,COUNT": a jax.profiler trace of steps START+1..START+COUNT in WORKDIR/profile.
    config.profile_steps = ""
    config.async_checkpointing = False
    config.eval_every_epochs = placeholder(float)
    config.eval_every_steps = placeholder(int)
    config.eval_every_steps = 6 if variant.quick else 250
    config.eval_protocol = "val"

    config.mesh_shape = (-1,)
    config.mesh_axes = ("data",)
    config.shard_params = False

    config.init_from = ""
    config.init_batch_stats = False
    config.init_reinit_head = False
    return config
