"""Initializing a fresh train state from another checkpoint (`config.init_from`).

Parameters are copied where name and shape match. BatchNorm statistics are
copied only when asked (the release's ImageNet initialization copies parameters
only). A head of another shape is re-initialized only when asked. The report
names what was loaded, re-initialized and ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.traverse_util
import numpy as np

from squeezetime_jax.models.squeezetime import HEAD


@dataclasses.dataclass
class InitReport:
    loaded: list[str] = dataclasses.field(default_factory=list)
    reinitialized: list[str] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        def names(items):
            return ", ".join(items[:8]) + (
                f" ... ({len(items)} in all)" if len(items) > 8 else ""
            )

        return (
            f"loaded {len(self.loaded)} arrays; re-initialized {len(self.reinitialized)}"
            f"{': ' + names(self.reinitialized) if self.reinitialized else ''}; ignored "
            f"{len(self.ignored)}{': ' + names(self.ignored) if self.ignored else ''}"
        )


def merge_pretrained(
    target: dict[str, Any],
    source: dict[str, Any],
    *,
    copy_batch_stats: bool,
    reinit_head: bool,
) -> tuple[dict[str, Any], InitReport]:
    """Returns `target` variables with matching arrays of `source` copied in."""
    report = InitReport()
    collections = ["params"] + (["batch_stats"] if copy_batch_stats else [])
    merged = {}
    for collection in ("params", "batch_stats"):
        flat_target = flax.traverse_util.flatten_dict(target.get(collection, {}), sep="/")
        flat_source = flax.traverse_util.flatten_dict(source.get(collection, {}), sep="/")
        out = dict(flat_target)
        for name, value in flat_target.items():
            key = f"{collection}/{name}"
            if collection not in collections:
                report.reinitialized.append(key)
                continue
            if name not in flat_source:
                report.reinitialized.append(key)
                continue
            incoming = np.asarray(flat_source[name])
            if incoming.shape != tuple(value.shape):
                if name.startswith(HEAD + "/") and reinit_head:
                    report.reinitialized.append(key)
                    continue
                hint = (
                    " (set init_reinit_head=True to re-initialize the head for another "
                    "number of classes)"
                    if name.startswith(HEAD + "/")
                    else ""
                )
                raise ValueError(
                    f"init_from: {key} has shape {incoming.shape} in the checkpoint "
                    f"but {tuple(value.shape)} in the model{hint}"
                )
            out[name] = incoming.astype(np.asarray(value).dtype)
            report.loaded.append(key)
        report.ignored += [
            f"{collection}/{name}"
            for name in flat_source
            if name not in flat_target or collection not in collections
        ]
        merged[collection] = flax.traverse_util.unflatten_dict(out, sep="/")
    return merged, report
