"""Checkpoint conversion: round trips, config inference, strict errors, files, CLI, load()."""

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

import squeezetime_jax.convert as convert_cli
from squeezetime_jax.checkpoints.converted import save_converted
from squeezetime_jax.checkpoints.errors import CheckpointError, CheckpointMismatchError
from squeezetime_jax.checkpoints.restore import restore
from squeezetime_jax.checkpoints.restore import restore as load_variables
from squeezetime_jax.inference.model import load
from squeezetime_jax.interop import conversion
from squeezetime_jax.interop.infer import infer_model_config
from squeezetime_jax.interop.torch_checkpoints import load_torch_checkpoint
from squeezetime_jax.interop.torch_model import SqueezeTimeTorch, randomize_batchnorm_

TINY = dict(widen_factor=0.25, pos_dims=(8, 4, 2, 1), num_classes=5, num_frames=4)


def _twin(depth=10, seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_batchnorm_(
        SqueezeTimeTorch(depth=depth, **{**TINY, **overrides}), seed=seed
    ).eval()


def _numpy(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory):
    model = _twin(depth=10)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    # mmaction2 layout: {'state_dict', 'meta'}.
    torch.save({"state_dict": model.state_dict(), "meta": {"epoch": 3}}, path)
    return path, model


@pytest.mark.parametrize("depth", [10, 50])
def test_round_trip_is_bit_exact(depth):
    model = _twin(depth=depth)
    state_dict = _numpy(model)
    converted = conversion.from_torch(state_dict)
    back = conversion.to_torch(converted.variables, converted.config)
    assert list(back) == list(state_dict)  # same keys, released order
    for key, value in state_dict.items():
        assert back[key].dtype == value.dtype, key
        assert back[key].shape == value.shape, key
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    reloaded = SqueezeTimeTorch(depth=depth, **TINY)
    reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_flax_layout_of_converted_arrays():
    state_dict = _numpy(_twin(depth=50))
    params = conversion.from_torch(state_dict).variables["params"]
    prefix = "backbone.net.layer2.0."
    down = params["backbone"]["layer2_0"]["downsample_0"]["kernel"]
    np.testing.assert_array_equal(
        down, state_dict[prefix + "downsample.0.weight"].transpose(2, 3, 1, 0)
    )
    assert down.shape == (2, 2, 1, 64)  # depthwise HWIO
    pos = params["backbone"]["layer2_0"]["conv2"]["spatial_conv"]["pos_embed"]
    assert pos.shape == (1, 4, 4, 16)
    head = params["fc_cls"]["kernel"]
    np.testing.assert_array_equal(head, state_dict["cls_head.fc_cls.weight"].T)


@pytest.mark.parametrize(
    "depth,widen,pos_dims,frames,classes",
    [
        (50, 1.0, (56, 28, 14, 7), 16, 400),
        (18, 0.3, (9, 5, 3, 2), 3, 51),
        (101, 0.125, (64, 32, 16, 8), 8, 600),
        (34, 0.5, (8, 4, 2, 1), 2, 7),
    ],
)
def test_infers_model_config(depth, widen, pos_dims, frames, classes):
    with torch.device("meta"):
        model = SqueezeTimeTorch(
            depth=depth,
            widen_factor=widen,
            pos_dims=pos_dims,
            num_classes=classes,
            num_frames=frames,
        )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fields = infer_model_config(shapes)
    assert fields == dict(
        depth=depth,
        widen_factor=widen,
        pos_dims=pos_dims,
        num_classes=classes,
        num_frames=frames,
        dropout_rate=0.5,
    )


def test_wrappers_and_module_prefix(tmp_path):
    model = _twin()
    expected = conversion.from_torch(_numpy(model)).variables
    sd = model.state_dict()
    variants = {
        "bare.pth": sd,
        "model.pth": {"model": sd},
        "dp.pth": {"state_dict": {"module." + k: v for k, v in sd.items()}},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        got = load_torch_checkpoint(tmp_path / name).variables
        jax.tree.map(np.testing.assert_array_equal, got, expected)


class _TrainingMetadata:
    """Stands for an mmengine object in a checkpoint's meta; must never be rebuilt."""

    rebuilt = False

    def __setstate__(self, state):
        _TrainingMetadata.rebuilt = True


def test_reads_metadata_weights_only_refuses_without_running_it(tmp_path):
    model = _twin()
    path = tmp_path / "mmaction.pth"
    torch.save(
        {"state_dict": model.state_dict(), "meta": {"hub": _TrainingMetadata()}}, path
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    got = load_torch_checkpoint(path).variables
    expected = conversion.from_torch(_numpy(model)).variables
    jax.tree.map(np.testing.assert_array_equal, got, expected)
    assert not _TrainingMetadata.rebuilt


def test_another_depth_lists_the_mismatches():
    state_dict = _numpy(_twin(depth=18))
    config = conversion.make_model_config(dict(depth=10, **TINY))
    with pytest.raises(CheckpointMismatchError) as info:
        conversion.from_torch(state_dict, config, source="r18.pth")
    message = str(info.value)
    assert message.startswith("r18.pth does not match the model")
    assert "backbone.net.layer1.1.conv1.temporal_conv.weight" in info.value.unexpected
    assert not info.value.missing


def test_missing_and_wrong_shape_keys_are_named():
    state_dict = _numpy(_twin())
    del state_dict["backbone.net.layer3.0.bn2.running_var"]
    state_dict["backbone.net.layer2.0.conv2.spatial_conv.pos_embed"] = np.zeros(
        (1, 16, 5, 5), np.float32
    )
    state_dict["backbone.net.extra.weight"] = np.zeros((3,), np.float32)
    config = conversion.make_model_config(dict(depth=10, **TINY))
    with pytest.raises(CheckpointMismatchError) as info:
        conversion.from_torch(state_dict, config)
    assert info.value.missing == ["backbone.net.layer3.0.bn2.running_var"]
    assert info.value.unexpected == ["backbone.net.extra.weight"]
    assert info.value.wrong_shape == [
        "backbone.net.layer2.0.conv2.spatial_conv.pos_embed "
        "(checkpoint (1, 16, 5, 5), model (1, 16, 4, 4))"
    ]


def test_inference_names_the_problem():
    state_dict = _numpy(_twin(depth=50))
    truncated = {
        k: v for k, v in state_dict.items() if not k.startswith("backbone.net.layer4.2.")
    }
    with pytest.raises(
        CheckpointError, match=r"bottleneck blocks per stage \(3, 4, 6, 2\)"
    ):
        conversion.from_torch(truncated, source="partial.pth")
    with pytest.raises(CheckpointError, match="'backbone.net.conv1.weight' is missing"):
        conversion.from_torch(
            {"fc.weight": np.zeros((2, 2), np.float32)}, source="other.pth"
        )


def test_class_count_needs_drop_head():
    state_dict = _numpy(_twin())
    with pytest.raises(CheckpointMismatchError, match="drop_head"):
        conversion.from_torch(state_dict, num_classes=51)
    converted = conversion.from_torch(state_dict, drop_head=True, num_classes=51)
    head = converted.variables["params"]["fc_cls"]
    assert converted.config.num_classes == 51
    assert head["kernel"].shape == (128, 51) and not head["bias"].any()
    assert 0.005 < head["kernel"].std() < 0.015
    assert any("re-initialized with 51 classes" in note for note in converted.notes)
    backbone = conversion.from_torch(state_dict).variables["params"]["backbone"]
    jax.tree.map(
        np.testing.assert_array_equal, converted.variables["params"]["backbone"], backbone
    )


def test_unreadable_files_name_the_file(tmp_path, tiny_pth):
    path, _ = tiny_pth
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: not a readable PyTorch"):
        load_torch_checkpoint(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pth: not a readable PyTorch"):
        load_torch_checkpoint(text)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match=r"list\.pth: not a state_dict"):
        load_torch_checkpoint(listing)
    with pytest.raises(CheckpointError, match="no such file"):
        load_variables(tmp_path / "absent.pth")


def test_converted_directory_round_trip(tmp_path, tiny_pth):
    path, model = tiny_pth
    converted = load_torch_checkpoint(path)
    save_converted(tmp_path / "out", converted, source=str(path))
    assert json.loads((tmp_path / "out" / "model_config.json").read_text())["depth"] == 10
    restored = restore(tmp_path / "out")
    assert restored.config == converted.config
    jax.tree.map(np.testing.assert_array_equal, restored.variables, converted.variables)
    with pytest.raises(CheckpointError, match="exists and is not empty"):
        save_converted(tmp_path / "out", converted)
    # A directory whose config disagrees with its variables is reported, key by key.
    config = json.loads((tmp_path / "out" / "model_config.json").read_text())
    config["num_classes"] = 9
    (tmp_path / "out" / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="fc_cls/kernel"):
        restore(tmp_path / "out")


def test_cli_from_torch_to_torch(tmp_path, tiny_pth, capsys):
    path, model = tiny_pth
    out_dir, out_pth, plain = (
        tmp_path / "conv",
        tmp_path / "back.pth",
        tmp_path / "plain.pth",
    )
    assert convert_cli.main(["from-torch", str(path), str(out_dir)]) == 0
    assert "depth=10" in capsys.readouterr().out
    assert convert_cli.main(["to-torch", str(out_dir), str(out_pth)]) == 0
    assert convert_cli.main(["to-torch", str(out_dir), str(plain), "--plain"]) == 0
    wrapped = torch.load(out_pth, weights_only=True)
    assert set(wrapped) == {"state_dict", "meta"}
    assert wrapped["meta"]["model_config"]["depth"] == 10
    bare = torch.load(plain, weights_only=True)
    original = model.state_dict()
    for state_dict in (wrapped["state_dict"], bare):
        assert list(state_dict) == list(original)
        for key, value in state_dict.items():
            expected_dtype = (
                torch.int64 if key.endswith("num_batches_tracked") else torch.float32
            )
            assert value.dtype == expected_dtype, key
            if value.dtype == torch.float32:
                assert torch.equal(value, original[key]), key
        twin = SqueezeTimeTorch(depth=10, **TINY)
        twin.load_state_dict(state_dict, strict=True)


def test_cli_drop_head_and_errors(tmp_path, tiny_pth, capsys):
    path, _ = tiny_pth
    assert (
        convert_cli.main(
            ["from-torch", str(path), str(tmp_path / "a"), "--num-classes", "3"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--drop_head" in err
    assert (
        convert_cli.main(
            [
                "from-torch",
                str(path),
                str(tmp_path / "b"),
                "--drop-head",
                "--num-classes",
                "3",
            ]
        )
        == 0
    )
    assert "re-initialized with 3 classes" in capsys.readouterr().out
    assert load_variables(tmp_path / "b").config.num_classes == 3
    assert (
        convert_cli.main(["from-torch", str(path), str(tmp_path / "c"), "--drop-head"]) == 1
    )
    assert "--num_classes" in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"\x00" * 100)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "squeezetime_jax.convert",
            "from-torch",
            str(bogus),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "bogus.pth" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_load_pth_and_directory_match_the_twin(tmp_path, tiny_pth):
    path, model = tiny_pth
    x = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        reference = model.double()(torch.from_numpy(x.transpose(0, 4, 1, 2, 3)).double())
    model.float()
    reference = reference.numpy()
    save_converted(tmp_path / "dir", load_torch_checkpoint(path))
    for source in (path, tmp_path / "dir"):
        loaded = load(source)
        assert loaded.config.num_classes == 5 and loaded.module.depth == 10
        logits = np.asarray(loaded(x))
        assert logits.shape == (2, 5)
        assert np.abs(logits - reference).max() <= 1e-5 * np.abs(reference).max()
    with pytest.raises(CheckpointError, match="not a checkpoint this library reads"):
        load(tmp_path)


def test_converted_directories_load_without_torch(tmp_path, tiny_pth):
    path, _ = tiny_pth
    save_converted(tmp_path / "dir", load_torch_checkpoint(path))
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "import numpy as np\n"
        "from squeezetime_jax.checkpoints.errors import CheckpointError\n"
        "from squeezetime_jax.inference.model import load\n"
        "import squeezetime_jax.convert\n"
        f"print(load({str(tmp_path / 'dir')!r})(np.zeros((1, 4, 32, 32, 3), np.float32)).shape)\n"
        "try:\n"
        f"    load({str(path)!r})\n"
        "except CheckpointError as error:\n"
        "    print('needs torch' if 'torch extra' in str(error) else error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["(1, 5)", "needs torch"]


def test_training_workdir_loads_and_exports(tmp_path, tiny_pth):
    import optax

    from squeezetime_jax.checkpoints import workdir as checkpointing
    from squeezetime_jax.training.state import TrainState

    path, model = tiny_pth
    converted = load_torch_checkpoint(path)
    params, batch_stats = converted.variables["params"], converted.variables["batch_stats"]
    state = TrainState(
        step=np.int32(0),
        params=params,
        batch_stats=batch_stats,
        opt_state=optax.sgd(0.1, momentum=0.9).init(params),
        rng=np.zeros(2, np.uint32),
    )
    workdir = tmp_path / "run"
    manager = checkpointing.make_manager(str(workdir), async_save=False)
    for step in (3, 8):
        checkpointing.save(manager, step, state.replace(step=np.int32(step)))
    manager.wait_until_finished()
    manager.close()
    config = converted.config.to_dict()
    (workdir / "config.json").write_text(json.dumps({"model": config, "seed": 0}))

    restored = load_variables(workdir)
    assert "step 8" in restored.notes[0]
    jax.tree.map(np.testing.assert_array_equal, restored.variables, converted.variables)
    x = np.random.default_rng(1).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        reference = model.double()(torch.from_numpy(x.transpose(0, 4, 1, 2, 3)).double())
    model.float()
    logits = np.asarray(load(workdir)(x))
    assert (
        np.abs(logits - reference.numpy()).max() <= 1e-5 * np.abs(reference.numpy()).max()
    )

    assert convert_cli.main(["to-torch", str(workdir), str(tmp_path / "run.pth")]) == 0
    exported = torch.load(tmp_path / "run.pth", weights_only=True)["state_dict"]
    SqueezeTimeTorch(depth=10, **TINY).load_state_dict(exported, strict=True)
    for key, value in model.state_dict().items():
        if value.dtype == torch.float32:
            assert torch.equal(exported[key], value), key
    with pytest.raises(
        CheckpointError, match="no checkpoint for step 5; available: \\[3, 8\\]"
    ):
        restore(workdir, step=5)


# --- class names and clip settings travel with the weights --------------------------


def test_metadata_travels_through_pth_converted_dir_and_back(tmp_path):
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    model = _twin(depth=10)
    stored = metadata_lib.Metadata(
        class_names=["walk", "run", "jump", "sit", "stand"],
        frame_interval=2,
        protocols={
            "test": {"num_clips": 2, "num_crops": 3, "short_side": 48, "crop_size": 40}
        },
        dataset="demo/scenes",
    )
    source = tmp_path / "labelled.pth"
    torch.save(
        {"state_dict": model.state_dict(), "meta": metadata_lib.to_pth_meta(stored)}, source
    )
    expected = dataclasses.replace(stored, num_frames=4)  # the model's frame count
    assert load_variables(source).metadata == expected
    assert convert_cli.main(["from-torch", str(source), str(tmp_path / "dir")]) == 0
    assert metadata_lib.read(tmp_path / "dir") == expected
    assert load(tmp_path / "dir").class_names == stored.class_names
    assert (
        convert_cli.main(["to-torch", str(tmp_path / "dir"), str(tmp_path / "b.pth")]) == 0
    )
    meta = torch.load(tmp_path / "b.pth", weights_only=True)["meta"]
    assert meta["dataset_meta"]["classes"] == stored.class_names  # where mmaction2 looks
    assert load_variables(tmp_path / "b.pth").metadata == expected

    # A head re-initialized for other classes loses the names; the clip settings stay.
    assert (
        convert_cli.main(
            ["from-torch", str(source), str(tmp_path / "new"), "--drop-head"]
            + ["--num-classes", "3"]
        )
        == 0
    )
    renewed = metadata_lib.read(tmp_path / "new")
    assert renewed.class_names is None and renewed.frame_interval == 2

    # mmaction2's own place for class names is read too.
    mm = tmp_path / "mm.pth"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "meta": {"dataset_meta": {"classes": list("abcde")}},
        },
        mm,
    )
    assert load_variables(mm).metadata.class_names == list("abcde")


def test_metadata_that_contradicts_the_model_names_the_file(tmp_path):
    from squeezetime_jax.checkpoints import metadata as metadata_lib

    model = _twin(depth=10)
    bad = tmp_path / "bad.pth"
    meta = metadata_lib.to_pth_meta(metadata_lib.Metadata(class_names=["a", "b", "c"]))
    torch.save({"state_dict": model.state_dict(), "meta": meta}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth: metadata names 3 classes .* 5"):
        load_variables(bad)
    meta = {"squeezetime_jax": {"protocols": {"test": {"short_side": -3}}}}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, bad)
    with pytest.raises(
        CheckpointError, match=r"bad\.pth: metadata protocols.test.short_side"
    ):
        load_variables(bad)


def test_workdir_metadata_from_its_config_and_into_the_pth(tmp_path, tiny_pth):
    import optax

    from squeezetime_jax.checkpoints import metadata as metadata_lib
    from squeezetime_jax.checkpoints import workdir as checkpointing
    from squeezetime_jax.data import default_data_config
    from squeezetime_jax.training.state import TrainState

    path, _ = tiny_pth
    converted = load_torch_checkpoint(path)
    params = converted.variables["params"]
    state = TrainState(
        step=np.int32(1),
        params=params,
        batch_stats=converted.variables["batch_stats"],
        opt_state=optax.sgd(0.1).init(params),
        rng=np.zeros(2, np.uint32),
    )
    workdir = tmp_path / "run"
    manager = checkpointing.make_manager(str(workdir), async_save=False)
    checkpointing.save(manager, 1, state)
    manager.wait_until_finished()
    manager.close()
    data = default_data_config()
    data.frame_interval, data.test.short_side, data.test.crop_size = 3, 64, 56
    data.data_dir = str(tmp_path / "absent")  # the dataset is not on this machine
    config = {"model": converted.config.to_dict(), "data": data.to_dict()}
    (workdir / "config.json").write_text(json.dumps(config))
    # An older workdir: no metadata.json, the settings come from config.json.
    derived = load_variables(workdir).metadata
    assert derived.class_names is None and derived.frame_interval == 3
    assert derived.protocols["test"] == {
        "num_clips": 10,
        "num_crops": 3,
        "short_side": 64,
        "crop_size": 56,
    }
    # What train.py writes: with the dataset's class names.
    names = [f"action {i}" for i in range(5)]
    metadata_lib.write(workdir, metadata_lib.from_train_config(config, names))
    assert convert_cli.main(["to-torch", str(workdir), str(tmp_path / "run.pth")]) == 0
    carried = load_variables(tmp_path / "run.pth").metadata
    assert carried.class_names == names and carried.protocols == derived.protocols
