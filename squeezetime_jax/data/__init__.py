"""Video input pipeline: preparation, decoding, sampling, augmentation, Grain datasets.

Importing this package imports neither jax nor the model; `normalize_on_device`
imports jax when called.
"""

from squeezetime_jax.data.config import MEAN_RGB, STD_RGB, default_data_config
from squeezetime_jax.data.normalize import normalize_on_device
from squeezetime_jax.data.pipeline import (
    DatasetInfo,
    EvalDataset,
    EvalProtocol,
    dataset_info,
    eval_protocol,
    make_eval_dataset,
    make_train_dataset,
    open_source,
)

__all__ = [
    "MEAN_RGB",
    "STD_RGB",
    "DatasetInfo",
    "EvalDataset",
    "EvalProtocol",
    "dataset_info",
    "default_data_config",
    "eval_protocol",
    "make_eval_dataset",
    "make_train_dataset",
    "normalize_on_device",
    "open_source",
]
