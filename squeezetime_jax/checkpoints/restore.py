"""The one restore: variables and model config from any checkpoint this library reads.

    restore(path, step=None, sharding=None) -> Restored

`path` is a train.py workdir (its latest complete step, or `step`), a converted
directory (checkpoints.converted) or a released-layout PyTorch file, local or gs://,
or a released checkpoint's name (`k400`, `release:k400`; interop.release).
The class names and clip settings stored with the weights come along (`metadata`).
Orbax items are restored onto a target built from their stored metadata, so they load
whatever devices and mesh wrote them. Arrays land on `sharding` (for example replicated
over an evaluation mesh, on every process) or, by default, on the host CPU. Every
stored tree is checked key by key against the model before use, with the same strict
report as a .pth file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from squeezetime_jax import files
from squeezetime_jax.checkpoints import converted, workdir
from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints.errors import CheckpointError, CheckpointMismatchError
from squeezetime_jax.interop import naming
from squeezetime_jax.interop.conversion import expected_variables, make_model_config
from squeezetime_jax.interop.torch_checkpoints import TORCH_SUFFIXES, load_torch_checkpoint


@dataclasses.dataclass
class Restored:
    variables: dict[str, Any]  # {'params', 'batch_stats'}
    config: ml_collections.ConfigDict  # the model config
    notes: list[str] = dataclasses.field(default_factory=list)
    step: int | None = None  # the training step, for workdirs
    source: str = ""  # what was restored, for reports
    train_config: dict[str, Any] | None = None  # a workdir's config.json
    # class names and clip settings stored with the weights
    metadata: metadata_lib.Metadata = dataclasses.field(
        default_factory=metadata_lib.Metadata
    )


def restore(
    path: files.PathLike,
    step: int | None = None,
    sharding: jax.sharding.Sharding | None = None,
) -> Restored:
    """Variables, model config and metadata of a workdir, converted directory, PyTorch
    file or released checkpoint's name."""
    from squeezetime_jax.interop import release

    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    if release.is_reference(path):
        if step is not None:
            raise CheckpointError(
                f"{path}: a step can only be chosen in a train.py workdir"
            )
        return _from_conversion(release.load(path), sharding, str(path))
    path = files.absolute(path)
    if not files.exists(path):
        raise CheckpointError(
            f"{path}: no such file or directory (nor a released checkpoint: "
            f"{', '.join(release.names())})"
        )
    if step is not None and not workdir.is_workdir(path):
        raise CheckpointError(f"{path}: a step can only be chosen in a train.py workdir")
    if workdir.is_workdir(path):
        return _restore_workdir(path, step, sharding)
    if converted.is_converted_dir(path):
        config = converted.read_model_config(path)
        variables = restore_arrays(files.join(path, converted.VARIABLES_DIR), sharding)
        check_stored_tree(path, variables, expected_variables(config))
        stored = metadata_lib.read(path) or metadata_lib.Metadata()
        return Restored(
            variables,
            config,
            converted.read_notes(path),
            source=path,
            metadata=stored.checked(config, path),
        )
    if files.isfile(path):
        return _from_conversion(load_torch_checkpoint(path), sharding, path)
    raise CheckpointError(
        f"{path}: not a checkpoint this library reads (a PyTorch file such as "
        f"{'/'.join(TORCH_SUFFIXES)}, a converted checkpoint directory or a train.py "
        "workdir)"
    )


def _from_conversion(conversion, sharding, source: str) -> Restored:
    variables = {
        "params": conversion.variables["params"],
        "batch_stats": conversion.variables.get("batch_stats") or {},
    }
    return Restored(
        place(variables, sharding),
        conversion.config,
        conversion.notes,
        source=source,
        metadata=conversion.metadata,
    )


def _restore_workdir(path: str, step: int | None, sharding) -> Restored:
    train_config = workdir.read_config(path)
    config = make_model_config(train_config["model"])
    step = workdir.choose_step(path, step)
    state = restore_arrays(workdir.state_item(path, step), sharding)
    variables = {
        "params": state.get("params"),
        "batch_stats": state.get("batch_stats") or {},
    }
    check_stored_tree(path, variables, expected_variables(config))
    return Restored(
        variables,
        config,
        [f"restored training step {step} of {path}"],
        step=step,
        source=f"{path} step {step}",
        train_config=train_config,
        metadata=metadata_lib.read_workdir(path, train_config).checked(config, path),
    )


def restore_arrays(item_dir: str, sharding: jax.sharding.Sharding) -> Any:
    """Restores an Orbax StandardCheckpointer item with every array on `sharding`,
    whatever devices (and shardings) wrote it, using the stored metadata as target."""
    # The handler, not a Checkpointer: an item inside a CheckpointManager step has no
    # checkpoint-level metadata file of its own.
    handler = ocp.StandardCheckpointHandler()
    item = files.path(item_dir)
    try:
        stored = handler.metadata(item)
        stored = getattr(stored, "tree", stored)
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), stored
        )
        return handler.restore(item, args=ocp.args.StandardRestore(target))
    except Exception as error:  # Orbax/tensorstore errors: name the directory
        lines = str(error).strip().splitlines()
        raise CheckpointError(
            f"{item_dir}: cannot restore ({type(error).__name__}"
            f"{': ' + lines[0] if lines else ''})"
        ) from None
    finally:
        handler.close()


def place(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Host arrays (identical on every process) as global arrays on `sharding`."""

    def put(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

    return jax.tree.map(put, tree)


def check_stored_tree(source: str, stored, expected) -> None:
    """Same strict report as for .pth files, before Orbax's own shape errors."""
    flat = {p: tuple(np.shape(v)) for p, v in naming.flatten(dict(stored)).items()}
    missing = ["/".join(p) for p in expected if p not in flat]
    unexpected = ["/".join(p) for p in flat if p not in expected]
    wrong = [
        f"{'/'.join(p)} (stored {s}, model {expected[p]})"
        for p, s in flat.items()
        if p in expected and s != expected[p]
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(source, missing, unexpected, wrong)
