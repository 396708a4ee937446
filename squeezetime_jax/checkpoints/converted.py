"""The converted-checkpoint directory: variables in Orbax's format with the model config.

    DIR/model_config.json  the model ConfigDict (squeezetime_jax.models.build_model input)
    DIR/variables/         an Orbax StandardCheckpointer save of {'params', 'batch_stats'}
    DIR/conversion.json    where it came from and what the conversion did
    DIR/metadata.json      class names and clip settings (checkpoints.metadata)

It restores on CPU with no accelerator, whatever devices wrote it (checkpoints.restore).
"""

from __future__ import annotations

import json

import ml_collections
import orbax.checkpoint as ocp

from squeezetime_jax import files
from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints.errors import CheckpointError
from squeezetime_jax.interop.conversion import Conversion, make_model_config

CONFIG_FILE = "model_config.json"
VARIABLES_DIR = "variables"
REPORT_FILE = "conversion.json"
FORMAT = "squeezetime_jax.converted/1"


def is_converted_dir(path: files.PathLike) -> bool:
    return files.isfile(files.join(path, CONFIG_FILE)) and files.isdir(
        files.join(path, VARIABLES_DIR)
    )


def save_converted(
    directory: files.PathLike, conversion: Conversion, source: str | None = None
) -> str:
    """Writes a converted checkpoint directory (must not exist or be empty)."""
    directory = files.absolute(directory)  # Orbax wants absolute paths
    if files.listdir(directory):
        raise CheckpointError(f"{directory}: exists and is not empty")
    files.makedirs(directory)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(files.join(directory, VARIABLES_DIR), conversion.variables)
    checkpointer.wait_until_finished()
    checkpointer.close()
    files.write_text(
        files.join(directory, CONFIG_FILE), conversion.config.to_json(indent=2) + "\n"
    )
    files.write_json(
        files.join(directory, REPORT_FILE),
        {"format": FORMAT, "source": source, "notes": conversion.notes},
    )
    metadata_lib.write(directory, conversion.metadata)
    return directory


def read_model_config(directory: files.PathLike) -> ml_collections.ConfigDict:
    path = files.join(directory, CONFIG_FILE)
    try:
        fields = files.read_json(path)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read the model config: {error}") from None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{path}: expected a JSON object of model settings")
    return make_model_config(fields)


def read_notes(directory: files.PathLike) -> list[str]:
    report = files.join(directory, REPORT_FILE)
    return files.read_json(report).get("notes", []) if files.isfile(report) else []
