"""Writers of the mmaction2-style inputs that preparation reads: video lists
(`relative/path.mp4 label` per line) and class-name files (line i names label i)."""

from __future__ import annotations

from typing import Iterable

from squeezetime_jax import files


def write_list(path: files.PathLike, entries: Iterable[tuple[str, int]]) -> str:
    """Writes `relative_path label` lines; returns the path written."""
    lines = []
    for relative_path, label in entries:
        if any(c.isspace() for c in relative_path.strip()) or not relative_path.strip():
            raise ValueError(
                f"{path}: list paths may not be empty or hold spaces: {relative_path!r}"
            )
        lines.append(f"{relative_path} {int(label)}\n")
    return files.write_text(path, "".join(lines))


def write_class_names(path: files.PathLike, names: Iterable[str]) -> str:
    """Writes one class name per line (line i names label i)."""
    names = [str(name).strip() for name in names]
    if any(not name or "\n" in name for name in names):
        raise ValueError(f"{path}: class names must be non-empty single lines")
    return files.write_text(path, "\n".join(names) + "\n")
