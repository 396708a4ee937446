"""Logit parity between the Flax model and the plain PyTorch twin on the same weights.

Weights: the released init plus random but well-conditioned BatchNorm statistics and
affine terms (`randomize_batchnorm_`), converted torch -> Flax by the checkpoint
converter. PyTorch runs in float64 as the reference.
"""

import jax
import numpy as np
import pytest
import torch

from squeezetime_jax.interop import conversion
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_
from squeezetime_jax.models import build_model, squeeze_time

K400_POS_DIMS = (56, 28, 14, 7)
TINY = dict(widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_classes=7, num_frames=4)


def _twin(seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize_batchnorm_(SqueezeTimeTorch(**kwargs), seed=seed).eval()


def _torch_logits(model, clip):
    """float64 reference; clip is channels-last (N, T, H, W, 3)."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3)))
        return model.double()(x.double()).numpy()


def _flax_logits(converted, clip, dtype="float32"):
    config = converted.config.copy_and_resolve_references()
    config.dtype = dtype
    model = build_model(config)
    variables = jax.tree.map(lambda a: np.asarray(a, np.dtype(dtype)), converted.variables)
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, clip))


def _relative_error(ours, reference):
    return np.abs(ours - reference).max() / np.abs(reference).max()


def _clip(frames, size, batch=1, seed=0, dtype=np.float32):
    return (
        np.random.default_rng(seed)
        .standard_normal((batch, frames, size, size, 3))
        .astype(dtype)
    )


@pytest.mark.parametrize(
    "depth,frames,size",
    [
        (50, 16, 224),  # the released K400 model at its configured input
        (50, 8, 160),  # other frames and resolution: every pos_embed is resized
        (18, 16, 224),  # basic blocks: conv1's pos_dim 7 embedding is always resized
    ],
)
def test_full_size_float32_matches_torch_float64(depth, frames, size):
    twin = _twin(depth=depth, pos_dims=K400_POS_DIMS, num_classes=400, num_frames=frames)
    converted = conversion.from_torch({k: v.numpy() for k, v in twin.state_dict().items()})
    clip = _clip(frames, size)
    reference = _torch_logits(twin, clip)
    ours = _flax_logits(converted, clip)
    assert ours.shape == (1, 400) and ours.dtype == np.float32
    assert np.abs(reference).max() > 1e-2  # logits are not vanishing
    assert _relative_error(ours, reference) <= 1e-5


@pytest.mark.parametrize("depth", [10, 50])
def test_float64_on_both_sides_agrees_to_1e12(depth):
    twin = _twin(depth=depth, **TINY)
    converted = conversion.from_torch({k: v.numpy() for k, v in twin.state_dict().items()})
    clip = _clip(4, 40, batch=2, dtype=np.float64)  # 40: pos_embeds resized at every stage
    reference = _torch_logits(twin, clip)
    with jax.enable_x64(True):
        ours = _flax_logits(converted, clip, dtype="float64")
    assert ours.dtype == np.float64
    assert _relative_error(ours, reference) <= 1e-12


def test_squeeze_is_colour_major_time_minor():
    clip = _clip(4, 8, batch=2)
    squeezed = np.asarray(squeeze_time(clip))
    for c in range(3):
        for t in range(4):
            np.testing.assert_array_equal(squeezed[..., c * 4 + t], clip[:, t, :, :, c])


def test_time_major_channel_order_breaks_parity():
    """Negative control: the parity check sees the squeeze order.

    Reordering the stem's input channels as if the squeeze were t*C + c must break
    agreement with the released order c*T + t, which the twin computes.
    """
    frames = 4
    twin = _twin(depth=10, **TINY)
    state_dict = {k: v.numpy() for k, v in twin.state_dict().items()}
    clip = _clip(frames, 32, batch=2)
    reference = _torch_logits(twin, clip)
    assert (
        _relative_error(_flax_logits(conversion.from_torch(state_dict), clip), reference)
        <= 1e-5
    )
    # Input channel t*C + c of the permuted stem holds the weights of channel c*T + t.
    order = [c * frames + t for t in range(frames) for c in range(3)]
    permuted = dict(state_dict)
    permuted["backbone.net.conv1.weight"] = state_dict["backbone.net.conv1.weight"][
        :, order
    ]
    assert (
        _relative_error(_flax_logits(conversion.from_torch(permuted), clip), reference)
        > 1e-2
    )
