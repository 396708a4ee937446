"""SqueezeTime on Kinetics-600: the K400 recipe with weight decay 3e-5, 600 classes."""

from configs import k400


def get_config(arg=None):
    config = k400.get_config(arg)
    config.model.num_classes = 600
    config.data.dataset = config.data.dataset.replace("kinetics400", "kinetics600")
    config.optimizer.weight_decay = 3e-5
    return config
