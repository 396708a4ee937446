"""Errors raised when reading, converting or restoring checkpoints."""

from __future__ import annotations

from typing import Iterable


class CheckpointError(Exception):
    """A checkpoint could not be read: not a checkpoint, truncated, or unsupported."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's variables do not match the model: lists every offending key."""

    def __init__(
        self,
        source: str,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        wrong_shape: Iterable[str] = (),
        hint: str = "",
    ):
        self.source = source
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = sorted(wrong_shape)
        parts = []
        for label, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("wrong shape", self.wrong_shape),
        ):
            if keys:
                parts.append(f"{len(keys)} {label}: " + ", ".join(keys))
        message = f"{source} does not match the model: " + "; ".join(parts)
        if hint:
            message += f". {hint}"
        super().__init__(message)
