"""SqueezeTime on HMDB51 (split 1 by default), fine-tuned from a K400 checkpoint.

    python train.py --config configs/hmdb51.py:split=2 --workdir DIR \
        --config.init_from=K400_CHECKPOINT --config.data.data_dir=PREPARED_DIR

Base lr 0.02 per 64 clips with the backbone at x0.1, weight decay 0.008, 50
epochs with x0.1 steps at epochs 12 and 24, no warm-up; the head is
re-initialized for 51 classes.
"""

from squeezetime_jax.config_utils import parse_arg
from squeezetime_jax.configs import k400


def get_config(arg=None):
    variant = parse_arg(arg, split=1, depth=50, frames=16, widen=1.0, batch=64)
    if variant.split not in (1, 2, 3):
        raise ValueError(f"HMDB51 has splits 1, 2 and 3, got {variant.split}")
    config = k400.get_config(
        f"depth={variant.depth},frames={variant.frames},"
        f"widen={variant.widen},batch={variant.batch}"
    )
    config.model.num_classes = 51
    config.data.dataset = config.data.dataset.replace(
        "kinetics400", f"hmdb51_split{variant.split}"
    )
    # As released: validation every epoch on 2 clips x 3 crops of 224 at short side 224
    # (the best video top-1 kept, config.save_best); test on 2 clips x 3 crops of 286
    # at short side 286. Both on the split's validation list.
    config.data.val.num_clips = 2
    config.data.val.num_crops = 3
    config.data.val.short_side = 224
    config.data.val.crop_size = 224
    config.data.test.num_clips = 2
    config.data.test.num_crops = 3
    config.data.test.short_side = 286
    config.data.test.crop_size = 286
    config.eval_every_epochs = 1.0
    config.total_epochs = 50.0
    config.optimizer.base_lr = 0.02
    config.optimizer.weight_decay = 0.008
    config.optimizer.backbone_lr_multiplier = 0.1
    config.schedule.name = "step"
    config.schedule.warmup_epochs = None
    config.schedule.decay_epochs = (12, 24)
    config.schedule.decay_factor = 0.1
    config.init_reinit_head = True
    return config
