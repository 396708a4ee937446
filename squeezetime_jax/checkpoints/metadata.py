"""What a model needs besides its weights: class names and the clip settings it expects.

One record, `Metadata`, travels with the weights through every artifact:

  train.py workdir      metadata.json next to config.json (written at the start of a run;
                        for older workdirs it is derived from config.json and the dataset)
  converted directory   metadata.json
  .pth (to-torch)       meta['squeezetime_jax'], and the class names also where mmaction2
                        keeps them, meta['dataset_meta']['classes']
  mobile export         "metadata" in <stem>_export_info.json

Clip settings: frames per clip, the frame interval, and for the `val` and `test`
protocols the short side, crop size, clips and crops. predict, eval.py and export take
them from the checkpoint; their flags only override. A checkpoint of 400 classes that
names none gets the Kinetics-400 names shipped with the package (`class_names_for`).

Every reader and writer of this record is in this module.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping

from squeezetime_jax import files
from squeezetime_jax.checkpoints.errors import CheckpointError

FORMAT = "squeezetime_jax.metadata/1"
FILE = "metadata.json"  # in converted directories and train.py workdirs
PTH_KEY = "squeezetime_jax"  # under a .pth file's `meta`
PROTOCOLS = ("val", "test")
PROTOCOL_FIELDS = ("num_clips", "num_crops", "short_side", "crop_size")
_TRAIN_CONFIG_FILE = "config.json"


@dataclasses.dataclass
class Metadata:
    """Class names and clip settings of a checkpoint; None (or {}) where unknown."""

    class_names: list[str] | None = None
    num_frames: int | None = None
    frame_interval: int | None = None
    # "val" / "test" -> {num_clips, num_crops, short_side, crop_size}
    protocols: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    dataset: str | None = None

    # ---------------------------------------------------------------- encoding

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "class_names": list(self.class_names) if self.class_names else None,
            "num_frames": self.num_frames,
            "frame_interval": self.frame_interval,
            "protocols": {k: dict(v) for k, v in self.protocols.items()},
            "dataset": self.dataset,
        }

    @classmethod
    def from_json(cls, payload: Any, source: str) -> "Metadata":
        """Validates a stored record; CheckpointError naming `source` and the key."""
        if not isinstance(payload, Mapping):
            raise CheckpointError(
                f"{source}: metadata must be a JSON object, got {type(payload).__name__}"
            )
        fmt = payload.get("format", FORMAT)
        if not str(fmt).startswith(FORMAT.rsplit("/", 1)[0] + "/"):
            raise CheckpointError(f"{source}: metadata format {fmt!r} is not {FORMAT!r}")
        names = payload.get("class_names")
        if names is not None and (
            not isinstance(names, (list, tuple))
            or not all(isinstance(n, str) for n in names)
        ):
            raise CheckpointError(
                f"{source}: metadata class_names must be a list of strings"
            )
        protocols = payload.get("protocols") or {}
        if not isinstance(protocols, Mapping):
            raise CheckpointError(f"{source}: metadata protocols must be an object")
        checked: dict[str, dict[str, int]] = {}
        for name, fields in protocols.items():
            if name not in PROTOCOLS or not isinstance(fields, Mapping):
                raise CheckpointError(
                    f"{source}: metadata protocols.{name}: expected one of {PROTOCOLS} "
                    "mapping to an object"
                )
            checked[name] = {
                key: _positive_int(
                    fields[key], f"{source}: metadata protocols.{name}.{key}"
                )
                for key in PROTOCOL_FIELDS
                if fields.get(key) is not None
            }
        return cls(
            class_names=list(names) if names else None,
            num_frames=_optional_int(payload.get("num_frames"), source, "num_frames"),
            frame_interval=_optional_int(
                payload.get("frame_interval"), source, "frame_interval"
            ),
            protocols=checked,
            dataset=payload.get("dataset"),
        )

    # ---------------------------------------------------------------- combining

    def merged(self, fallback: "Metadata | None") -> "Metadata":
        """These fields, with the unknown ones taken from `fallback`."""
        if fallback is None:
            return dataclasses.replace(self)
        protocols = {k: dict(v) for k, v in fallback.protocols.items()}
        for name, fields in self.protocols.items():
            protocols[name] = {**protocols.get(name, {}), **fields}
        return Metadata(
            class_names=self.class_names or fallback.class_names,
            num_frames=self.num_frames or fallback.num_frames,
            frame_interval=self.frame_interval or fallback.frame_interval,
            protocols=protocols,
            dataset=self.dataset or fallback.dataset,
        )

    def checked(self, model_config, source: str) -> "Metadata":
        """This record, after checking it against the model it travels with."""
        classes = int(model_config.num_classes)
        if self.class_names is not None and len(self.class_names) != classes:
            raise CheckpointError(
                f"{source}: metadata names {len(self.class_names)} classes but the "
                f"model predicts {classes}"
            )
        frames = int(model_config.num_frames)
        if self.num_frames is not None and self.num_frames != frames:
            raise CheckpointError(
                f"{source}: metadata says num_frames {self.num_frames} but the model "
                f"takes {frames}"
            )
        return dataclasses.replace(self, num_frames=frames)

    def class_names_for(self, num_classes: int) -> list[str]:
        """The stored names; else the shipped Kinetics-400 names for 400 classes; else
        class_<i>."""
        if self.class_names and len(self.class_names) == num_classes:
            return list(self.class_names)
        shipped = shipped_class_names(num_classes)
        return shipped or [f"class_{i}" for i in range(num_classes)]

    # ---------------------------------------------------------------- using

    def apply_to_data_config(self, data_config, keep: Iterable[str] = ()) -> list[str]:
        """Sets a data ConfigDict's clip settings to these, except the dotted keys in
        `keep` (e.g. "test.short_side": given on a command line). Returns the changes,
        as "key: old -> new"."""
        keep = set(keep)
        changes = []

        def put(section, key, value, dotted):
            if value is None or dotted in keep:
                return
            old = section[key]
            if old != value:
                section[key] = value
                changes.append(f"{dotted}: {old} -> {value}")

        put(data_config, "num_frames", self.num_frames, "num_frames")
        put(data_config, "frame_interval", self.frame_interval, "frame_interval")
        for name, fields in self.protocols.items():
            if name in data_config:
                for key, value in fields.items():
                    put(data_config[name], key, value, f"{name}.{key}")
        return changes

    def is_empty(self) -> bool:
        return self == Metadata()


def _optional_int(value, source: str, key: str) -> int | None:
    return None if value is None else _positive_int(value, f"{source}: metadata {key}")


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{where} must be a positive integer, got {value!r}")
    return value


def shipped_class_names(num_classes: int) -> list[str] | None:
    """Class names shipped with the package for a model of this size (Kinetics-400)."""
    if num_classes == 400:
        from squeezetime_jax.resources import kinetics400_class_names

        return kinetics400_class_names()
    return None


# ---------------------------------------------------------------- train configs


def from_train_config(
    config: Mapping[str, Any], class_names: Iterable[str] | None = None
) -> Metadata:
    """The record of a training config (config.json of a workdir, or the ConfigDict)."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    data = config.get("data") or {}
    model = config.get("model") or {}
    protocols = {}
    for name in PROTOCOLS:
        section = data.get(name) or {}
        fields = {k: int(section[k]) for k in PROTOCOL_FIELDS if section.get(k) is not None}
        if fields:
            protocols[name] = fields
    frames = model.get("num_frames", data.get("num_frames"))
    return Metadata(
        class_names=list(class_names) if class_names else None,
        num_frames=None if frames is None else int(frames),
        frame_interval=(
            None if data.get("frame_interval") is None else int(data["frame_interval"])
        ),
        protocols=protocols,
        dataset=data.get("dataset") or None,
    )


# ---------------------------------------------------------------- directories


def write(directory: files.PathLike, metadata: Metadata) -> str:
    """Writes metadata.json into a converted directory or a workdir (atomically)."""
    return files.write_json(files.join(directory, FILE), metadata.to_json())


def read(directory: files.PathLike) -> Metadata | None:
    """metadata.json of a directory, None when there is none."""
    path = files.join(directory, FILE)
    if not files.exists(path):
        return None
    try:
        payload = files.read_json(path)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: cannot read the metadata ({error})") from None
    return Metadata.from_json(payload, path)


def read_workdir(
    workdir: files.PathLike, train_config: Mapping[str, Any] | None = None
) -> Metadata:
    """A train.py workdir's record: metadata.json, else what its config.json (or the
    `train_config` read from it) says, with the class names of its dataset when that
    is on this machine."""
    stored = read(workdir)
    if stored is not None:
        return stored
    config = train_config
    if config is None:
        try:
            config = files.read_json(files.join(workdir, _TRAIN_CONFIG_FILE))
        except (OSError, json.JSONDecodeError):
            return Metadata()
    names = None
    data = config.get("data") or {}
    try:
        from squeezetime_jax.data import dataset_info

        names = dataset_info(data.get("data_dir"), data["dataset"]).class_names
    except Exception:  # the dataset is not on this machine: names stay unknown
        pass
    return from_train_config(config, names)


# ---------------------------------------------------------------- .pth meta


def to_pth_meta(metadata: Metadata) -> dict[str, Any]:
    """Entries for a .pth file's `meta` dict (plain Python types: weights_only loads it)."""
    meta: dict[str, Any] = {PTH_KEY: metadata.to_json()}
    if metadata.class_names:
        meta["dataset_meta"] = {"classes": list(metadata.class_names)}
    return meta


def from_pth_meta(meta: Any, source: str) -> Metadata:
    """The record in a .pth file's `meta`; mmaction2's dataset_meta.classes are used
    when the file was not written by this library."""
    if not isinstance(meta, Mapping):
        return Metadata()
    stored = meta.get(PTH_KEY)
    result = (
        Metadata.from_json(stored, source) if isinstance(stored, Mapping) else Metadata()
    )
    dataset_meta = meta.get("dataset_meta")
    classes = dataset_meta.get("classes") if isinstance(dataset_meta, Mapping) else None
    if (
        result.class_names is None
        and isinstance(classes, (list, tuple))
        and classes
        and all(isinstance(c, str) for c in classes)
    ):
        result.class_names = list(classes)
    return result


# ---------------------------------------------------------------- exports


def export_record(metadata: Metadata, num_classes: int) -> dict[str, Any]:
    """What an app reads from export_info.json: the record, with the shipped names
    filled in where the checkpoint has none."""
    record = metadata.to_json()
    if not record["class_names"]:
        record["class_names"] = shipped_class_names(num_classes)
    return record
