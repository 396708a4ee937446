"""SqueezeTime on Kinetics-600: the K400 recipe with weight decay 3e-5, 600 classes.

    python train.py --config configs/k600.py --workdir DIR \
        --config.data.data_dir=PREPARED_DIR \
        --config.init_from=SqueezeTime_in1k_pretrain.pth

Like K400, the release starts from its ImageNet-1k pretrain (`--config.init_from`,
read as the release's load_ckpts reads it; see configs/k400.py).
"""

from squeezetime_jax.configs import k400


def get_config(arg=None):
    config = k400.get_config(arg)
    config.model.num_classes = 600
    config.data.dataset = config.data.dataset.replace("kinetics400", "kinetics600")
    config.optimizer.weight_decay = 3e-5
    return config
