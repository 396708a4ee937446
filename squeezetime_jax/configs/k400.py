"""SqueezeTime on Kinetics-400: the released model and training recipe.

    python train.py --config configs/k400.py --workdir DIR \
        --config.data.data_dir=PREPARED_DIR \
        --config.init_from=SqueezeTime_in1k_pretrain.pth [--config.batch_size=512 ...]

`--config.init_from` names the release's ImageNet-1k pretrain, the starting point of
the released model (without it training starts from scratch).

Variants: `configs/k400.py:depth=18`, `...:frames=8,widen=0.5`, `...:batch=64`.
Durations may be given in steps or epochs (`total_steps` / `total_epochs`,
`warmup_steps` / `warmup_epochs`, `eval_every_steps` / `eval_every_epochs`);
set one of each pair.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from squeezetime_jax.config_utils import parse_arg
from squeezetime_jax.data import default_data_config
from squeezetime_jax.models import model_config
from squeezetime_jax.training.optim import optimizer_config


def get_config(arg=None):
    variant = parse_arg(arg, depth=50, frames=16, widen=1.0, batch=512)
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = model_config(
        depth=variant.depth,
        num_frames=variant.frames,
        widen_factor=variant.widen,
        num_classes=400,
    )
    # BatchNorm statistics per 64 clips, as the release (8 GPUs x 64, no SyncBN),
    # whatever the mesh; None would use the whole global batch.
    config.model.bn_group_size = 64

    config.data = default_data_config()
    config.data.num_frames = variant.frames
    config.data.num_examples = 1024  # size of the built-in dataset="random" (benchmarks)

    # Global batch over all devices of all processes; the release trains at 512.
    config.batch_size = variant.batch
    config.eval_batch_size = 64
    config.total_epochs = placeholder(float)
    config.total_epochs = 100.0
    config.total_steps = placeholder(int)

    # lr 0.015 per 64 clips, scaled linearly with the global batch.
    config.optimizer = optimizer_config()
    config.schedule = ml_collections.ConfigDict(
        dict(
            name="warmup_cosine",
            warmup_epochs=placeholder(float),
            warmup_steps=placeholder(int),
            warmup_start_factor=0.1,
            end_lr=1.5e-4,  # absolute: the release's unscaled base_lr / 100
            decay_epochs=(),  # used by name="step"
            decay_factor=0.1,
        )
    )
    config.schedule.warmup_epochs = 8.0

    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 3
    # "START,COUNT": a jax.profiler trace of steps START+1..START+COUNT in WORKDIR/profile.
    config.profile_steps = ""
    config.async_checkpointing = True
    config.eval_every_epochs = placeholder(float)
    config.eval_every_epochs = 2.0
    config.eval_every_steps = placeholder(int)
    config.eval_protocol = "val"
    # Keep the checkpoint of the best validation top-1 in WORKDIR/best/<step> beside
    # the last ones, as the release (save_best='auto').
    config.save_best = True

    # One data axis over every device; -1 means "all remaining devices".
    config.mesh_shape = (-1,)
    config.mesh_axes = ("data",)
    config.shard_params = False  # True: FSDP-style, parameters split along `data`

    # Initialization from another checkpoint. The release starts from its ImageNet-1k
    # pretrain: --config.init_from=PATH/SqueezeTime_in1k_pretrain.pth. A PyTorch file
    # is read as the release's load_ckpts reads it (network parameters matched by
    # name and shape, 'backbone.net.' prefix or not; the head and BatchNorm statistics
    # keep their initialization); what was copied and skipped is printed and written
    # to WORKDIR/init_from_report.json. A converted dir or train.py workdir is copied
    # strictly (init_batch_stats, init_reinit_head below).
    config.init_from = ""
    config.init_batch_stats = False  # the release's ImageNet init copies params only
    config.init_reinit_head = False
    return config
