"""Prepares a video dataset: annotation lists + video files -> ArrayRecord TFDS dataset.

  python -m squeezetime_jax.data.prepare --list train.txt --list val=val.txt \
      --root VIDEO_DIR --out OUT_DIR [--classes classes.txt] [--workers N] \
      [--config kinetics400] [--overwrite] [--reencode short_side=256,gop=32]
      [--runner=DirectRunner|DataflowRunner|FlinkRunner|SparkRunner BEAM_OPTIONS...]

Each list line is "relative/path label" (mmaction2 format). A list's split is given as
SPLIT=PATH, or taken from its file name (train/val/test), else "train". Bad videos are
skipped and reported in OUT_DIR/summary.json; the dataset is then read with
`tfds.data_source("squeezetime_video/<config>", data_dir=OUT_DIR)`.

By default records hold the original file bytes. --reencode stores instead an H.264
re-encode at the training resolution with a short fixed GOP (see reencode.py), which
makes a training clip several times cheaper to decode; the summary reports source and
record bytes.

--runner runs the same preparation as an Apache Beam pipeline (beam_prepare.py), which
scales out on a cluster and resumes when re-run; the output is the same.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import sys
from typing import Sequence

import tensorflow_datasets as tfds
import tqdm

from squeezetime_jax import cli, files
from squeezetime_jax.data import reencode as reencode_lib
from squeezetime_jax.data import tfds_builder

SPLIT_NAMES = ("train", "validation", "test")
_SPLIT_HINTS = (("train", "train"), ("val", "validation"), ("test", "test"))
SUMMARY_FILE = "summary.json"
index_file = tfds_builder.index_file


def parse_list(path: str, split: str) -> list[tfds_builder.ListEntry]:
    """Reads an mmaction2 list; a malformed line raises naming file and line number."""
    entries = []
    with files.open_file(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
                raise ValueError(
                    f"{path}:{lineno}: expected 'relative/path label' with an integer label "
                    f">= 0, got {line!r}"
                )
            entries.append(tfds_builder.ListEntry(split, lineno, parts[0], int(parts[1])))
    return entries


def split_of(spec: str) -> tuple[str, str]:
    """'val=lists/v.txt' -> ('validation', path); 'k400_train.txt' -> ('train', ...)."""
    if "=" in spec and not os.path.exists(spec):
        split, path = spec.split("=", 1)
        split = {"val": "validation"}.get(split, split)
        if split not in SPLIT_NAMES:
            raise ValueError(
                f"unknown split {split!r} in --list {spec!r}; use {SPLIT_NAMES}"
            )
        return split, path
    name = os.path.basename(spec).lower()
    for hint, split in _SPLIT_HINTS:
        if hint in name:
            return split, spec
    return "train", spec


def read_class_names(path: str | None, num_classes: int) -> list[str]:
    if path is None:
        return [str(i) for i in range(num_classes)]
    with files.open_file(path, encoding="utf-8") as f:
        names = [ln.strip() for ln in f if ln.strip()]
    if len(names) < num_classes:
        raise ValueError(
            f"{path} names {len(names)} classes but the lists use label {num_classes - 1}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{path} has duplicate class names")
    return names


def default_class_names(config: str, num_classes: int) -> list[str] | None:
    """The class names a config implies without --classes: the package's Kinetics-400
    names (the released label map's order) for kinetics400; None otherwise (names
    are then the label numbers; Kinetics-600's map is not shipped, pass --classes)."""
    if config == "kinetics400":
        from squeezetime_jax import resources

        names = resources.kinetics400_class_names()
        if len(names) != num_classes:
            raise ValueError(f"shipped Kinetics-400 names: {len(names)}, not {num_classes}")
        return names
    if config == "kinetics600":
        logging.warning(
            "prepare --config kinetics600 without --classes: class names will be the "
            "label numbers 0..599 (pass the release's label map with --classes)"
        )
    return None


def read_inputs(
    lists: Sequence[str], config: str, classes: str | None
) -> tuple[dict[str, list[tfds_builder.ListEntry]], list[str]]:
    """Parses and checks the lists and class names: (entries per split, class names)."""
    entries: dict[str, list] = {}
    for spec in lists:
        split, path = split_of(spec)
        if split in entries:
            raise ValueError(f"two lists for split {split!r}")
        entries[split] = parse_list(path, split)
    if not any(entries.values()):
        raise ValueError("the lists contain no videos")
    max_label = max(e.label for es in entries.values() for e in es)
    num_classes = tfds_builder.CONFIGS[config][1] or (max_label + 1)
    if max_label >= num_classes:
        raise ValueError(
            f"label {max_label} out of range for {config} ({num_classes} classes)"
        )
    names = default_class_names(config, num_classes) if classes is None else None
    return entries, names or read_class_names(classes, num_classes)


def check_config(config: str) -> None:
    if config not in tfds_builder.CONFIGS:
        raise ValueError(
            f"unknown --config {config!r}; choose from {list(tfds_builder.CONFIGS)}"
        )


class Tally:
    """Counts written and skipped videos; writes the per-split index and summary.json."""

    def __init__(self, splits: Sequence[str], class_names: Sequence[str]):
        self.class_names = list(class_names)
        self.written = collections.Counter()
        self.per_class = {s: collections.Counter() for s in splits}
        self.skipped = []
        self.index = {s: [] for s in splits}
        self.sizes = collections.Counter()

    def add(
        self,
        entry: tfds_builder.ListEntry,
        *,
        reason: str | None = None,
        num_frames: int = 0,
        source_bytes: int = 0,
        record_bytes: int = 0,
    ) -> None:
        """One video, in record order: skipped when `reason` is given."""
        e = entry
        if reason is not None:
            self.skipped.append(
                {"split": e.split, "line": e.line, "path": e.path, "reason": reason}
            )
            return
        self.written[e.split] += 1
        self.sizes["source"] += source_bytes
        self.sizes["records"] += record_bytes
        self.index[e.split].append([e.path, e.label, int(num_frames)])
        self.per_class[e.split][self.class_names[e.label]] += 1

    def add_result(self, result: tfds_builder.CheckResult) -> None:
        if result.example is None:
            self.add(result.entry, reason=result.reason)
        else:
            self.add(
                result.entry,
                num_frames=int(result.example["num_frames"]),
                source_bytes=result.source_bytes,
                record_bytes=len(result.example["video"]),
            )

    def write(
        self,
        builder_dir: str,
        out_dir: str,
        config: str,
        reencode: reencode_lib.ReencodeSpec | None,
    ) -> dict:
        """Writes the index next to the shards and OUT_DIR/summary.json; returns it."""
        # Records keep list order (shuffling is disabled), so the index lists them in
        # record order; evaluation reads ids and labels from it without reading videos.
        for split, rows in self.index.items():
            with files.open_file(
                files.join(builder_dir, index_file(split)), "w", encoding="utf-8"
            ) as f:
                json.dump(
                    {
                        "video_id": [r[0] for r in rows],
                        "label": [r[1] for r in rows],
                        "num_frames": [r[2] for r in rows],
                    },
                    f,
                )
        skipped, written = self.skipped, self.written
        summary = {
            "dataset": f"{tfds_builder.NAME}/{config}",
            "data_dir": files.absolute(out_dir),
            "written": sum(written.values()),
            "skipped": skipped,
            "reencode": None if reencode is None else dataclasses.asdict(reencode),
            # Written videos only: bytes read from the video root vs bytes stored.
            "video_bytes": {
                "source": self.sizes["source"],
                "records": self.sizes["records"],
            },
            "per_class": dict(sum(self.per_class.values(), collections.Counter())),
            "splits": {
                s: {
                    "written": written[s],
                    "skipped": sum(1 for k in skipped if k["split"] == s),
                    "per_class": dict(self.per_class[s]),
                }
                for s in self.index
            },
        }
        with files.open_file(files.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        return summary


def prepare_dataset(
    lists: Sequence[str],
    root: str,
    out_dir: str,
    *,
    classes: str | None = None,
    config: str = "custom",
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    reencode: str | reencode_lib.ReencodeSpec | None = None,
) -> dict:
    """Writes the dataset and OUT_DIR/summary.json; returns the summary.

    `reencode`: None keeps the original bytes; a ReencodeSpec or its 'key=value,...'
    text re-encodes every video (reencode.parse_spec).
    """
    if isinstance(reencode, str):
        reencode = reencode_lib.parse_spec(reencode)
    check_config(config)
    if files.isdir(out_dir) and files.listdir(out_dir):  # a local path or gs://
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass --overwrite to replace it")
        files.remove_tree(out_dir)
    entries, class_names = read_inputs(lists, config, classes)

    total = sum(len(es) for es in entries.values())
    bar = tqdm.tqdm(total=total, desc="videos", unit="video", disable=not progress)
    tally = Tally(list(entries), class_names)

    def on_result(result: tfds_builder.CheckResult) -> None:
        bar.update(1)
        tally.add_result(result)

    builder = tfds_builder.SqueezetimeVideo(
        config=config,
        data_dir=out_dir,
        entries=entries,
        class_names=class_names,
        root=root,
        workers=workers,
        on_result=on_result,
        reencode=reencode,
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(verify_ssl=False)
    )
    bar.close()
    return tally.write(os.fspath(builder.data_dir), out_dir, config, reencode)


FLAGS = cli.Flags("python -m squeezetime_jax.data.prepare", __doc__)
LISTS = FLAGS.multi_string(
    "list",
    None,
    "[SPLIT=]LIST: an annotation list of 'relative/path label' lines (repeatable, one "
    "per split); without SPLIT= the split comes from the file name (train/val/test), "
    "else train.",
    required=True,
)
ROOT = FLAGS.string(
    "root", None, "Directory the list paths are relative to.", required=True
)
OUT = FLAGS.string("out", None, "Output TFDS data_dir.", required=True)
CLASSES = FLAGS.string(
    "classes",
    None,
    "Class names, one per line; line i names label i. Default: the shipped "
    "Kinetics-400 names for --config kinetics400, else the label numbers.",
)
CONFIG = FLAGS.enum(
    "config", "custom", list(tfds_builder.CONFIGS), "Dataset config (class count, name)."
)
WORKERS = FLAGS.integer(
    "workers", 1, "Processes that check and encode videos in parallel on this machine."
)
OVERWRITE = FLAGS.boolean("overwrite", False, "Replace an existing dataset in --out.")
REENCODE = FLAGS.string(
    "reencode",
    None,
    "short_side=256,gop=32,...: store an H.264 re-encode (keys short_side, gop, "
    "bframes, crf, preset, tune) instead of the original bytes.",
)
RUNNER = FLAGS.string(
    "runner",
    None,
    "Run as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, "
    "FlinkRunner, SparkRunner...) instead of the local pool; flags not listed here are "
    "then Beam pipeline options, given as --name=value (docs/data.md).",
)
VIDEOS_PER_SHARD = FLAGS.integer(
    "videos_per_shard",
    256,
    "With --runner: videos per output shard, the unit of work and of resuming.",
)


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    rest = FLAGS.parse(argv, known_only=True)
    if rest and not RUNNER.value:
        raise cli.UsageError(f"unexpected arguments: {rest} (Beam options need --runner)")
    tfds.disable_progress_bar()  # our bar counts videos with a known total instead
    try:
        if RUNNER.value:
            try:
                from squeezetime_jax.data import beam_prepare
            except ImportError as e:
                print(
                    f"error: --runner needs Apache Beam (pip install -e '.[beam]'): {e}",
                    file=sys.stderr,
                )
                return 2
            summary = beam_prepare.prepare_dataset_beam(
                LISTS.value,
                ROOT.value,
                OUT.value,
                classes=CLASSES.value,
                config=CONFIG.value,
                overwrite=OVERWRITE.value,
                reencode=REENCODE.value,
                videos_per_shard=VIDEOS_PER_SHARD.value,
                runner=RUNNER.value,
                pipeline_args=rest,
            )
        else:
            summary = prepare_dataset(
                LISTS.value,
                ROOT.value,
                OUT.value,
                classes=CLASSES.value,
                config=CONFIG.value,
                workers=WORKERS.value,
                overwrite=OVERWRITE.value,
                reencode=REENCODE.value,
            )
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{summary['dataset']}: written {summary['written']}, skipped {len(summary['skipped'])}"
    )
    for s, v in summary["splits"].items():
        print(
            f"  {s}: written {v['written']}, skipped {v['skipped']}, classes {len(v['per_class'])}"
        )
    for k in summary["skipped"]:
        print(f"  skipped {k['split']} line {k['line']} {k['path']}: {k['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
