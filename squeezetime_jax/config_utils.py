"""Helpers for the Python config files under configs/."""

from __future__ import annotations

import ast
from typing import Any

import ml_collections


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """Parses a config variant string such as "depth=18,frames=8".

    `configs/k400.py:depth=18` hands "depth=18" to get_config(). Each key must be
    one of `defaults`, and its value is converted to the default's type, so a
    typo fails loudly instead of silently selecting the default variant.
    """
    result = ml_collections.ConfigDict(defaults)
    if not arg:
        return result
    for item in arg.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(
                f"config variant {item!r} is not of the form key=value (in {arg!r})"
            )
        key, value = (part.strip() for part in item.split("=", 1))
        if key not in defaults:
            raise ValueError(
                f"unknown config variant {key!r} in {arg!r}; known: {sorted(defaults)}"
            )
        default = defaults[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config variant {key} expects a bool, got {value!r}")
            result[key] = value.lower() in ("true", "1")
        elif isinstance(default, (int, float, str)):
            try:
                result[key] = type(default)(value)
            except ValueError as error:
                raise ValueError(
                    f"config variant {key} expects {type(default).__name__}, got {value!r}"
                ) from error
        else:
            result[key] = ast.literal_eval(value)
    return result


def resolve_steps(
    config: ml_collections.ConfigDict,
    prefix: str,
    steps_per_epoch: int,
    default: int | None = None,
) -> int:
    """Turns `{prefix}_steps` or `{prefix}_epochs` of `config` into a step count.

    `{prefix}_steps` wins when set, so `--config.total_steps=100` overrides a
    config's epochs from the command line; epochs may be fractional and are
    rounded to the nearest step. None or absent counts as unset.
    """
    steps = config.get(f"{prefix}_steps")
    epochs = config.get(f"{prefix}_epochs")
    if steps is not None:
        return int(steps)
    if epochs is not None:
        if steps_per_epoch <= 0:
            raise ValueError(
                f"{prefix}_epochs needs a dataset size; steps_per_epoch={steps_per_epoch}"
            )
        return int(round(epochs * steps_per_epoch))
    if default is None:
        raise ValueError(f"set {prefix}_steps or {prefix}_epochs")
    return default
