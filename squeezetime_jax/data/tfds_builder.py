"""TFDS builder writing encoded videos to ArrayRecord shards.

Records hold the original encoded file (decoded frames of Kinetics would not fit on
disk) or its re-encode (reencode.py), the table of its packets (so a clip decodes
without opening the container), its label (a ClassLabel, so class names travel with the data), the video id (its
path relative to the video root) and the frame count found by demuxing.

The class is not registered with TFDS: readers open the prepared directory with
`tfds.data_source(NAME + "/" + config, data_dir=...)`, which rebuilds the builder from
the stored dataset_info and needs neither this module nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from typing import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from squeezetime_jax import files
from squeezetime_jax.data import reencode as reencode_lib
from squeezetime_jax.data import video_decode

NAME = "squeezetime_video"
VERSION = "1.0.0"

# config name -> (description, number of classes or None when set by the lists)
CONFIGS = {
    "kinetics400": ("Kinetics-400 train/val/test lists.", 400),
    "kinetics600": ("Kinetics-600 train/val/test lists.", 600),
    "kinetics700": ("Kinetics-700 train/val/test lists.", 700),
    "hmdb51_split1": ("HMDB51, official split 1.", 51),
    "hmdb51_split2": ("HMDB51, official split 2.", 51),
    "hmdb51_split3": ("HMDB51, official split 3.", 51),
    "custom": ("Any mmaction2-style list of 'relative/path label' lines.", None),
}


def index_file(split: str) -> str:
    """Per-split index (video ids, labels, frame counts in record order), written by
    prepare next to the shards so evaluation can list videos without reading them."""
    return f"video_index.{split}.json"


@dataclasses.dataclass(frozen=True)
class ListEntry:
    """One line of an annotation list."""

    split: str
    line: int
    path: str  # relative to the video root, as written in the list
    label: int


@dataclasses.dataclass
class CheckResult:
    entry: ListEntry
    example: dict | None  # None when skipped
    reason: str | None = None
    source_bytes: int = 0  # size of the file read (the record may hold a re-encode)


def check_video(
    root: str, entry: ListEntry, reencode: reencode_lib.ReencodeSpec | None = None
) -> CheckResult:
    """Reads, optionally re-encodes, and probes one video; never raises for a bad video."""
    try:
        data = files.read_bytes(files.join(root, entry.path))
    except FileNotFoundError:
        return CheckResult(entry, None, "missing file")
    except OSError as e:
        return CheckResult(entry, None, f"unreadable file: {e}")
    source_bytes = len(data)
    try:
        if reencode is not None:
            data = reencode_lib.reencode(data, reencode)
        info = video_decode.probe(data)
    except video_decode.VideoDecodeError as e:
        return CheckResult(entry, None, str(e), source_bytes)
    # Where each packet lies, so training can decode without opening the container.
    table = video_decode.packet_table(data)
    example = {
        "video": data,
        "codec": table.codec if table else "",
        "extradata": table.extradata if table else b"",
        "packets": table.rows if table else np.zeros((0, 4), np.int64),
        "label": entry.label,
        "video_id": entry.path,
        "num_frames": np.int32(info.num_frames),
        "height": np.int32(info.height),
        "width": np.int32(info.width),
    }
    return CheckResult(entry, example, None, source_bytes)


def features(class_names: list[str]) -> tfds.features.FeaturesDict:
    """The record layout; the prepare paths (local pool and Beam) both encode with it."""
    return tfds.features.FeaturesDict(
        {
            "video": tfds.features.Tensor(shape=(), dtype=np.object_),
            # Packet table (video_decode.PacketTable); empty when not trustworthy.
            "codec": tfds.features.Text(),
            "extradata": tfds.features.Tensor(shape=(), dtype=np.object_),
            "packets": tfds.features.Tensor(shape=(None, 4), dtype=np.int64),
            "label": tfds.features.ClassLabel(names=list(class_names)),
            "video_id": tfds.features.Text(),
            "num_frames": tfds.features.Tensor(shape=(), dtype=np.int32),
            "height": tfds.features.Tensor(shape=(), dtype=np.int32),
            "width": tfds.features.Tensor(shape=(), dtype=np.int32),
        }
    )


class _Checker:
    """Picklable `check_video` bound to a root, for multiprocessing pools."""

    def __init__(self, root: str, reencode: reencode_lib.ReencodeSpec | None = None):
        self.root = root
        self.reencode = reencode

    def __call__(self, entry: ListEntry) -> CheckResult:
        return check_video(self.root, entry, self.reencode)


class SqueezetimeVideo(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Encoded videos + labels for SqueezeTime training and evaluation."""

    name = NAME
    # Nothing is downloaded, so there is no checksums file next to the code; looking for
    # one would import `importlib_resources`, which TFDS does not install.
    code_path = None
    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=n, description=d) for n, (d, _) in CONFIGS.items()
    ]

    def __init__(
        self,
        *,
        entries: dict[str, list[ListEntry]],
        class_names: list[str],
        root: str,
        workers: int = 1,
        on_result: Callable[[CheckResult], None] | None = None,
        reencode: reencode_lib.ReencodeSpec | None = None,
        **kwargs,
    ):
        self._reencode = reencode
        self._entries = entries
        self._class_names = list(class_names)
        self._root = root
        self._workers = max(1, workers)
        self._on_result = on_result or (lambda r: None)
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Encoded video files with labels (mmaction2-style list).",
            features=features(self._class_names),
            supervised_keys=("video", "label"),
            # List order is kept so the per-split video index matches record order.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the videos are local files
        return {split: self._generate_examples(split) for split in self._entries}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
        entries = self._entries[split]
        checker = _Checker(self._root, self._reencode)
        if self._workers == 1:
            results = map(checker, entries)
            for result in results:
                yield from self._emit(result)
            return
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(self._workers) as pool:
            for result in pool.imap(checker, entries, chunksize=4):
                yield from self._emit(result)

    def _emit(self, result: CheckResult) -> Iterator[tuple[str, dict]]:
        self._on_result(result)
        if result.example is not None:
            yield f"{result.entry.line}:{result.entry.path}", result.example
