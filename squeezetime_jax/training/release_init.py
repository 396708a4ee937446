"""`init_from` a PyTorch file with the release's `load_ckpts` semantics, reported.

The released configs start K400/K600 from the ImageNet-1k pretrain and HMDB51 from
the K400 model through the backbone's `load_ckpts`, which:

- reads 'state_dict' if present, else 'model', else the dict itself;
- walks the network's own `named_parameters()` (`conv1.weight`,
  `layer1.0.conv2.spatial_conv.pos_embed`, ...: parameters only, so no BatchNorm
  running statistics, and no classifier head, which lives outside the network);
- copies an entry whose name and shape both match, and skips the rest silently.

Here names may also carry the mmaction2 wrapper prefix `backbone.net.` (the layout
of the released K400 file and of this library's exports). Nothing is skipped
silently: `ReleaseInitReport` lists every copied parameter, every skipped one with
its reason, and the file's entries that were not used; the trainer prints it and
writes it as JSON into the workdir. `copy_batch_stats` (config.init_batch_stats)
also copies the running statistics, matched the same way (the release does not).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from squeezetime_jax.interop import naming

PREFIX = "backbone.net."
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclasses.dataclass
class ReleaseInitReport:
    source: str
    copied: list[str] = dataclasses.field(default_factory=list)  # network names
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    unused: list[dict[str, str]] = dataclasses.field(default_factory=list)  # file keys
    kept: list[str] = dataclasses.field(default_factory=list)  # Flax paths left as built

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "semantics": "the release's load_ckpts: network parameters matched by name "
            "and shape ('backbone.net.' prefix accepted); head and BatchNorm statistics "
            "keep their initialization unless init_batch_stats",
            "copied": self.copied,
            "skipped": self.skipped,
            "unused_file_entries": self.unused,
            "kept_initialized": self.kept,
        }

    def summary(self) -> str:
        total = len(self.copied) + sum(1 for s in self.skipped if s["kind"] == "parameter")
        lines = [
            f"copied {len(self.copied)} of {total} network parameters by name and shape"
        ]
        for item in self.skipped:
            lines.append(f"  skipped {item['name']}: {item['reason']}")
        if self.unused:
            kinds: dict[str, int] = {}
            for item in self.unused:
                kinds[item["reason"]] = kinds.get(item["reason"], 0) + 1
            lines.append(
                "  file entries not used: "
                + "; ".join(f"{n} {reason}" for reason, n in kinds.items())
            )
        return "\n".join(lines)


def network_name(path: naming.FlatPath) -> str:
    """Flax backbone path -> the release network's own name (`conv1.weight`)."""
    return naming.flax_path_to_torch_key(path)[len(PREFIX) :]


def load_release_backbone(
    path: str,
    target: Mapping[str, Any],
    *,
    copy_batch_stats: bool = False,
    state_dict: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], ReleaseInitReport]:
    """`target` variables ({'params', 'batch_stats'}, host arrays) with the file's
    matching backbone parameters copied in, and the report."""
    if state_dict is None:
        from squeezetime_jax.interop import torch_io  # imports torch

        state_dict = torch_io.read_state_dict(path)
    report = ReleaseInitReport(source=str(path))
    by_name: dict[str, tuple[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        if name in by_name:  # both spellings: the first one wins, the other is named
            report.unused.append({"key": key, "reason": f"duplicate of {by_name[name][0]}"})
            continue
        by_name[name] = (key, np.asarray(value))
    used: set[str] = set()
    flat = naming.flatten(dict(target))
    out = dict(flat)
    for fpath, value in flat.items():
        if fpath[1] != "backbone":
            report.kept.append("/".join(fpath))  # the head: not part of the network
            continue
        name = network_name(fpath)
        statistic = fpath[0] == "batch_stats"
        if statistic and not copy_batch_stats:
            report.kept.append("/".join(fpath))
            continue
        kind = "statistic" if statistic else "parameter"
        want = naming.flax_array_to_torch(fpath, np.zeros(np.shape(value), np.int8)).shape
        if name not in by_name:
            report.skipped.append({"name": name, "kind": kind, "reason": "not in the file"})
            report.kept.append("/".join(fpath))
            continue
        key, incoming = by_name[name]
        used.add(name)
        if tuple(incoming.shape) != tuple(want):
            report.skipped.append(
                {
                    "name": name,
                    "kind": kind,
                    "reason": f"shape {tuple(incoming.shape)} in the file, "
                    f"{tuple(want)} in the model",
                }
            )
            report.kept.append("/".join(fpath))
            continue
        converted = naming.torch_array_to_flax(fpath, incoming)
        out[fpath] = converted.astype(np.asarray(value).dtype)
        report.copied.append(name)
    for name, (key, _) in by_name.items():
        if name in used:
            continue
        if name.rsplit(".", 1)[-1] in _BUFFERS:
            reason = "BatchNorm statistics (the release copies parameters only)"
        elif key.startswith("cls_head.") or name.split(".", 1)[0] == "fc":
            reason = "classifier head (outside the network load_ckpts fills)"
        else:
            reason = "not a parameter of this network"
        report.unused.append({"key": key, "reason": reason})
    return naming.unflatten(out), report
