"""SqueezeTime on HMDB51: the K400 model fine-tuned with a 51-class head."""

from configs import k400


def get_config(arg=None):
    config = k400.get_config(arg)
    config.model.num_classes = 51
    return config
