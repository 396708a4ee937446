"""config.save_best: the best validation checkpoint kept, readable, the old one removed."""

import numpy as np
import pytest

from squeezetime_jax.checkpoints.restore import restore
from squeezetime_jax.models import model_config
from squeezetime_jax.training import best


def test_video_metrics_average_probabilities_over_each_videos_views():
    # 2 videos x (2 clips x 3 crops). Video 0 (label 1): one confident wrong view, five
    # mildly right ones -> right on average; video 1 (label 0): wrong on average.
    logits = np.zeros((12, 3), np.float32)
    logits[0] = [9, 0, 0]
    logits[1:6] = [0, 1, 0]
    logits[6:12] = [0, 0, 2]
    views = {
        "logits": logits,
        "video_index": np.repeat([0, 1], 6),
        "clip_index": np.tile(np.repeat([0, 1], 3), 2),
        "crop_index": np.tile([0, 1, 2], 4),
        "label": np.repeat([1, 0], 6),
    }
    got = best.video_metrics(views, 2, 6, 3)
    assert got["top1"] == pytest.approx(0.5)  # per view it would be 5/12


def test_best_checkpoint_replaces_the_previous_and_restores(tmp_path):
    config = model_config(depth=10, widen_factor=0.25, num_frames=2, num_classes=3)
    from squeezetime_jax.interop.conversion import expected_variables
    from squeezetime_jax.interop.naming import unflatten

    def variables(fill):
        return unflatten(
            {p: np.full(s, fill, np.float32) for p, s in expected_variables(config).items()}
        )

    workdir = str(tmp_path)
    assert best.read_best(workdir) is None and best.is_better(0.1, None)
    first = best.save_best(workdir, 10, variables(1.0), config, "top1", 0.4)
    assert best.read_best(workdir) == first
    assert not best.is_better(0.3, first) and not best.is_better(float("nan"), first)
    assert best.is_better(0.5, first)
    second = best.save_best(workdir, 20, variables(2.0), config, "top1", 0.5)
    assert not (tmp_path / "best" / "10").exists()
    restored = restore(second["path"])
    assert restored.config.num_classes == 3
    leaf = restored.variables["params"]["fc_cls"]["bias"]
    np.testing.assert_array_equal(np.asarray(leaf), 2.0)
