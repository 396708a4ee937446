"""SqueezeTime on Kinetics-700: the K400 recipe with 700 classes.

No released recipe exists for K700; weight decay follows the K600 one (3e-5), the
larger-dataset setting of the release. Prepare the data with `--config kinetics700`
(lists from `python -m squeezetime_jax.data.kinetics_lists`).
"""

from squeezetime_jax.configs import k400


def get_config(arg=None):
    config = k400.get_config(arg)
    config.model.num_classes = 700
    config.data.dataset = config.data.dataset.replace("kinetics400", "kinetics700")
    config.optimizer.weight_decay = 3e-5
    return config
