"""The one file layer: local paths and gs:// URLs alike, for every path a user gives.

Files go through etils.epath, which serves gs:// with fsspec's gcsfs when TensorFlow
is absent (install the `gcs` extra); arrays in checkpoints go through Orbax and
TensorStore, which have their own GCS driver. Code that takes a path from a user
calls these functions instead of `open`, `os.path` or `os.makedirs`, so a workdir or
data directory on GCS behaves as a local one. Local paths are made absolute; URLs are
never touched by `os.path` (which would turn `gs://b/x` into `./gs:/b/x`).

This module sits under every floor of the package: models, data, checkpoints,
training and the entry points may all import it.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any, Iterator

from etils import epath

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
    """True for `scheme://...` (gs://, s3://...), False for local paths."""
    return "://" in os.fspath(path)


def path(value: PathLike) -> epath.Path:
    """An epath.Path: absolute for local paths, unchanged for URLs."""
    text = os.fspath(value)
    if not is_url(text):
        text = os.path.abspath(os.path.expanduser(text))
    return epath.Path(text)


def absolute(value: PathLike) -> str:
    """`path(value)` as a string (what Orbax, TensorStore and logs are given)."""
    return os.fspath(path(value))


def join(base: PathLike, *parts: str) -> str:
    return os.fspath(path(base).joinpath(*parts))


def exists(value: PathLike) -> bool:
    return path(value).exists()


def isdir(value: PathLike) -> bool:
    return path(value).is_dir()


def isfile(value: PathLike) -> bool:
    return path(value).is_file()


def listdir(value: PathLike) -> list[str]:
    """Names in a directory (sorted), [] when it does not exist."""
    directory = path(value)
    if not directory.is_dir():
        return []
    return sorted(child.name for child in directory.iterdir())


def makedirs(value: PathLike) -> str:
    directory = path(value)
    directory.mkdir(parents=True, exist_ok=True)
    return os.fspath(directory)


def open_file(value: PathLike, mode: str = "r", **kwargs: Any):
    """A file object, as `open`; parent directories are created for writing."""
    target = path(value)
    if any(flag in mode for flag in "wa"):
        target.parent.mkdir(parents=True, exist_ok=True)
    return target.open(mode, **kwargs)


def read_text(value: PathLike) -> str:
    return path(value).read_text(encoding="utf-8")


def read_bytes(value: PathLike) -> bytes:
    return path(value).read_bytes()


def write_bytes(value: PathLike, data: bytes) -> str:
    """Writes a whole file atomically: readers see the old file or the new one.

    Locally through a temporary file and a rename; a GCS object is replaced whole
    by one upload, which is atomic there.
    """
    target = path(value)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_url(target):
        target.write_bytes(data)
        return os.fspath(target)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    return os.fspath(target)


def write_text(value: PathLike, text: str) -> str:
    return write_bytes(value, text.encode("utf-8"))


def read_json(value: PathLike) -> Any:
    return json.loads(read_text(value))


def write_json(value: PathLike, payload: Any, indent: int | None = 2) -> str:
    return write_text(value, json.dumps(payload, indent=indent, sort_keys=True) + "\n")


def walk_files(value: PathLike) -> Iterator[str]:
    """Every file under a directory, recursively, as full paths."""
    for root, _, names in path(value).walk():
        for name in sorted(names):
            yield os.fspath(root / name)


def remove_tree(value: PathLike) -> None:
    target = path(value)
    if target.exists():
        target.rmtree()
