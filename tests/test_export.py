"""Mobile export: BatchNorm and normalization folding, every format's parity with JAX,
the CLI's failure modes, and the full K400 model through the PyTorch program."""

import copy
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from squeezetime_jax.export import __main__ as cli  # noqa: E402
from squeezetime_jax.export import mobile as export  # noqa: E402
from squeezetime_jax.export.folding import (  # noqa: E402
    bake_positional_embeddings_,
    fold_batchnorm_,
    fold_input_normalization_,
)
from squeezetime_jax.inference.model import load  # noqa: E402
from squeezetime_jax.interop.torch_model import (  # noqa: E402
    SqueezeTimeTorch,
    randomize_batchnorm_,
)

SMALL = dict(
    depth=10, widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_classes=7, num_frames=4
)
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1, 1)


def _twin(seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_batchnorm_(SqueezeTimeTorch(**(SMALL | overrides)), seed).eval()


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save(_twin().state_dict(), path)
    return str(path)


def _jax_reference(checkpoint, frames, size, seed=0):
    """Logits of the JAX model loaded independently of the exporter."""
    clip = export.reference_clip(frames, size, seed)
    return np.asarray(load(checkpoint)(export.normalize(clip)[None]))


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


# --- folding ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [10, 50])
def test_fold_batchnorm_keeps_the_function_and_removes_every_batchnorm(depth):
    twin = _twin(depth=depth)
    x = torch.randn(2, 3, 4, 32, 32)
    folded = fold_batchnorm_(copy.deepcopy(twin))
    assert not [m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        ref, out = twin(x), folded(x)
    assert ref.abs().max() > 1e-3  # random statistics make the check meaningful
    assert torch.allclose(out, ref, rtol=0, atol=1e-5 * ref.abs().max())


def test_raw_input_stem_matches_normalizing_first_including_the_border():
    twin = fold_batchnorm_(_twin())
    raw = torch.rand(1, 3, 4, 32, 32) * 255
    raw_model = fold_input_normalization_(
        copy.deepcopy(twin), MEAN.flatten().tolist(), STD.flatten().tolist(), (32, 32)
    )
    with torch.no_grad():
        ref = twin.backbone.net.conv1(((raw - MEAN) / STD).reshape(1, 12, 32, 32))
        out = raw_model.backbone.net.conv1(raw.reshape(1, 12, 32, 32))
        # A per-channel bias alone would be off on the padded border: check it there.
        assert torch.allclose(out[..., 0, :], ref[..., 0, :], atol=1e-4)
        assert torch.allclose(out, ref, atol=1e-4)
        assert torch.allclose(raw_model(raw), twin((raw - MEAN) / STD), atol=1e-5)


def test_baked_positional_embeddings_match_the_resizing_twin():
    twin = _twin()
    x = torch.randn(1, 3, 4, 64, 64)  # stage maps 16..2 differ from pos_dims 8..1
    baked = bake_positional_embeddings_(copy.deepcopy(twin), x)
    sizes = {
        tuple(m.pos_embed.shape[-2:]) for m in baked.modules() if hasattr(m, "pos_embed")
    }
    assert sizes == {(16, 16), (8, 8), (4, 4), (2, 2)}
    with torch.no_grad():
        assert torch.allclose(baked(x), twin(x), atol=1e-6)


def test_reference_clip_is_smooth_moving_and_deterministic():
    clip = export.reference_clip(8, 64, seed=3)
    assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.float32
    assert 0 <= clip.min() and clip.max() <= 255 and clip.std() > 10
    assert np.abs(np.diff(clip, axis=2)).mean() < 8  # smooth, unlike noise
    assert np.abs(clip[-1] - clip[0]).mean() > 1  # it moves
    np.testing.assert_array_equal(clip, export.reference_clip(8, 64, seed=3))
    assert np.abs(clip - export.reference_clip(8, 64, seed=4)).mean() > 5


# --- formats, through the CLI -----------------------------------------------------


def test_pytorch_export_writes_state_dict_and_program_matching_jax(
    small_checkpoint, tmp_path, capsys
):
    assert (
        cli.main(
            [
                "--checkpoint",
                small_checkpoint,
                "--format",
                "pytorch",
                "--out",
                str(tmp_path),
                "--frames",
                "4",
                "--size",
                "64",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "max abs err" in printed and "relative" in printed and "OK" in printed
    reference = _jax_reference(small_checkpoint, 4, 64)
    x = torch.from_numpy(export.to_program_input(export.reference_clip(4, 64)))

    twin = SqueezeTimeTorch(**SMALL).eval()
    twin.load_state_dict(torch.load(tmp_path / "squeezetime.pth"), strict=True)
    program = torch.export.load(str(tmp_path / "squeezetime.pt2")).module()
    with torch.no_grad():
        assert _rel(twin(x).numpy(), reference) < 1e-5
        assert _rel(program(x).numpy(), reference) < export.TOLERANCES["pytorch"]
    names = [
        n.target.__name__
        for n in torch.export.load(str(tmp_path / "squeezetime.pt2")).graph.nodes
        if n.op == "call_function"
    ]
    assert not [n for n in names if "batch_norm" in n]  # folded for inference

    info = json.loads((tmp_path / "squeezetime_export_info.json").read_text())
    assert info["input"]["shape"] == [1, 3, 4, 64, 64]
    assert info["output"]["shape"] == [1, 7]
    assert info["parity_vs_jax"][0]["passed"]


def test_export_takes_its_size_and_labels_from_the_checkpoint(tmp_path):
    """A checkpoint carrying class names and an eval crop of 40: no --size needed, and
    export_info.json hands both to the app."""
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    names = [f"gesture {i}" for i in range(7)]
    stored = metadata_lib.Metadata(
        class_names=names,
        frame_interval=2,
        protocols={
            "test": {"num_clips": 1, "num_crops": 1, "short_side": 48, "crop_size": 40}
        },
    )
    path = tmp_path / "labelled.pth"
    torch.save(
        {"state_dict": _twin().state_dict(), "meta": metadata_lib.to_pth_meta(stored)}, path
    )
    out = tmp_path / "out"
    assert (
        cli.main(["--checkpoint", str(path), "--format", "pytorch", "--out", str(out)]) == 0
    )
    info = json.loads((out / "squeezetime_export_info.json").read_text())
    assert info["input"]["shape"] == [1, 3, 4, 40, 40]
    assert info["class_names"] == names
    assert info["metadata"]["frame_interval"] == 2
    assert info["metadata"]["protocols"]["test"]["short_side"] == 48
    assert info["parity_vs_jax"][0]["passed"]


def test_real_clips_are_sampled_as_the_checkpoint_was_evaluated():
    from squeezetime_jax.checkpoints import metadata as metadata_lib
    from squeezetime_jax.export.mobile import real_clip_settings

    stored = metadata_lib.Metadata(
        frame_interval=2,
        protocols={
            "test": {"num_clips": 1, "num_crops": 1, "short_side": 256, "crop_size": 224}
        },
    )
    assert real_clip_settings(stored, 224, None, None) == (2, 256)
    assert real_clip_settings(stored, 112, None, None) == (2, 128)  # in proportion
    assert real_clip_settings(stored, 224, 8, 300) == (8, 300)  # given: kept
    assert real_clip_settings(metadata_lib.Metadata(), 160, None, None) == (4, 160)


def test_executorch_raw_input_fp32_and_int8_match_jax(small_checkpoint, tmp_path, capsys):
    pytest.importorskip("executorch")
    pytest.importorskip("torchao")
    assert (
        cli.main(
            [
                "--checkpoint",
                small_checkpoint,
                "--format",
                "executorch",
                "--out",
                str(tmp_path),
                "--frames",
                "4",
                "--size",
                "32",
                "--raw-input",
                "--int8",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "executorch-int8" in printed
    # The whole network in one XNNPACK subgraph, float32 and int8: no portable fallback.
    assert printed.count("in 1 subgraph, nothing outside XNNPACK") == 2
    x = export.to_program_input(export.reference_clip(4, 32), raw_input=True)
    assert x.max() > 100  # raw pixels, not normalized values
    reference = _jax_reference(small_checkpoint, 4, 32)
    fp32 = export.load_pte(str(tmp_path / "squeezetime_raw_xnnpack.pte"))(x)
    int8 = export.load_pte(str(tmp_path / "squeezetime_raw_xnnpack_int8.pte"))(x)
    assert _rel(fp32, reference) < export.TOLERANCES["executorch"]
    # int8 is close but visibly not float32: proves the quantized graph runs.
    assert 1e-4 < _rel(int8, reference) < export.INT8_TOLERANCE
    size = lambda name: os.path.getsize(tmp_path / name)
    assert size("squeezetime_raw_xnnpack_int8.pte") < 0.5 * size(
        "squeezetime_raw_xnnpack.pte"
    )


def test_onnx_export_matches_jax(small_checkpoint, tmp_path):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    assert (
        cli.main(
            [
                "--checkpoint",
                small_checkpoint,
                "--format",
                "onnx",
                "--out",
                str(tmp_path),
                "--size",
                "32",
            ]
        )
        == 0
    )
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(tmp_path / "squeezetime.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["video"]
    assert session.get_inputs()[0].shape == [1, 3, 4, 32, 32]
    x = export.to_program_input(export.reference_clip(4, 32))
    logits = session.run(["logits"], {"video": x})[0]
    assert _rel(logits, _jax_reference(small_checkpoint, 4, 32)) < export.TOLERANCES["onnx"]


# --- failures ---------------------------------------------------------------------


def test_parity_failure_exits_nonzero_and_names_the_file(
    small_checkpoint, tmp_path, monkeypatch, capsys
):
    build = export.inference_model

    def broken(*args, **kwargs):  # a folding bug: one wrong stem weight
        model = build(*args, **kwargs)
        with torch.no_grad():
            model.backbone.net.conv1.weight[0] *= 3
        return model

    monkeypatch.setattr(export, "inference_model", broken)
    assert (
        cli.main(
            [
                "--checkpoint",
                small_checkpoint,
                "--format",
                "pytorch",
                "--out",
                str(tmp_path),
                "--size",
                "32",
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "FAILED" in captured.out
    assert "squeezetime.pt2" in captured.err and "parity check failed" in captured.err


def test_missing_extra_names_the_package_and_the_install_line(
    small_checkpoint, tmp_path, monkeypatch, capsys
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a),
    )
    assert (
        cli.main(
            ["--checkpoint", small_checkpoint, "--format", "all", "--out", str(tmp_path)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "pip install -e '.[export]'" in err
    assert not os.listdir(tmp_path)  # checked before any work


def test_wrong_frame_count_and_bad_checkpoint_are_clear_errors(
    small_checkpoint, tmp_path, capsys
):
    assert (
        cli.main(
            [
                "--checkpoint",
                small_checkpoint,
                "--format",
                "pytorch",
                "--out",
                str(tmp_path),
                "--frames",
                "16",
            ]
        )
        == 1
    )
    assert "takes 4 frames" in capsys.readouterr().err
    missing = str(tmp_path / "nope.pth")
    assert (
        cli.main(["--checkpoint", missing, "--format", "pytorch", "--out", str(tmp_path)])
        == 1
    )
    assert missing in capsys.readouterr().err


def test_core_cli_module_imports_without_torch():
    code = (
        "import sys, squeezetime_jax.export, squeezetime_jax.export.mobile; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the released model's size ----------------------------------------------------


def test_full_k400_model_through_the_pytorch_program(tmp_path):
    """Depth 50, 400 classes, 16x224x224: the configuration the release ships."""
    path = tmp_path / "k400.pth"
    torch.save(randomize_batchnorm_(SqueezeTimeTorch(), seed=1).state_dict(), path)
    checks = export.export_checkpoint(
        str(path), str(tmp_path / "out"), ["pytorch"], log=lambda line: None
    )
    (check,) = checks
    assert check.passed and check.relative < export.TOLERANCES["pytorch"]
    assert check.max_abs > 0  # compared for real, not to itself
    program = torch.export.load(check.path)
    (shape,) = [tuple(s.shape) for s in program.example_inputs[0]]
    assert shape == (1, 3, 16, 224, 224)
