"""SqueezeTime on Kinetics-600: the K400 model with a 600-class head."""

from configs import k400


def get_config(arg=None):
    config = k400.get_config(arg)
    config.model.num_classes = 600
    return config
