"""init_from: what is copied, re-initialized and ignored, and when it refuses."""

import numpy as np
import pytest

from squeezetime_jax.training.initialization import merge_pretrained


def _variables(classes, stats_value):
    return {
        "params": {
            "backbone": {"conv1": {"kernel": np.full((3, 3, 6, 4), 1.0)}},
            "fc_cls": {"kernel": np.zeros((4, classes)), "bias": np.zeros(classes)},
        },
        "batch_stats": {"backbone": {"bn1": {"mean": np.full(4, stats_value)}}},
    }


def test_parameters_copied_statistics_only_when_asked():
    target, source = _variables(5, 0.0), _variables(5, 7.0)
    source["params"]["backbone"]["conv1"]["kernel"] = np.full((3, 3, 6, 4), 2.0)
    source["params"]["extra"] = {"w": np.ones(2)}
    merged, report = merge_pretrained(
        target, source, copy_batch_stats=False, reinit_head=False
    )
    np.testing.assert_array_equal(merged["params"]["backbone"]["conv1"]["kernel"], 2.0)
    np.testing.assert_array_equal(merged["batch_stats"]["backbone"]["bn1"]["mean"], 0.0)
    assert "batch_stats/backbone/bn1/mean" in report.reinitialized
    assert "params/extra/w" in report.ignored
    assert "params/fc_cls/kernel" in report.loaded
    merged, _ = merge_pretrained(target, source, copy_batch_stats=True, reinit_head=False)
    np.testing.assert_array_equal(merged["batch_stats"]["backbone"]["bn1"]["mean"], 7.0)


def test_head_of_another_size_needs_an_explicit_reinit():
    target, source = _variables(51, 0.0), _variables(400, 1.0)
    target["params"]["fc_cls"]["bias"] = np.full(51, 3.0)
    with pytest.raises(ValueError, match="fc_cls/kernel.*init_reinit_head"):
        merge_pretrained(target, source, copy_batch_stats=False, reinit_head=False)
    merged, report = merge_pretrained(
        target, source, copy_batch_stats=False, reinit_head=True
    )
    np.testing.assert_array_equal(merged["params"]["fc_cls"]["bias"], 3.0)  # kept fresh
    assert {"params/fc_cls/kernel", "params/fc_cls/bias"} <= set(report.reinitialized)
    assert "re-initialized" in report.summary()


def test_a_backbone_shape_mismatch_is_never_silently_skipped():
    target, source = _variables(5, 0.0), _variables(5, 0.0)
    source["params"]["backbone"]["conv1"]["kernel"] = np.ones((3, 3, 48, 4))
    with pytest.raises(
        ValueError, match=r"backbone/conv1/kernel has shape \(3, 3, 48, 4\)"
    ):
        merge_pretrained(target, source, copy_batch_stats=False, reinit_head=True)
