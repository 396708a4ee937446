"""Prepares a video dataset: annotation lists + video files -> ArrayRecord TFDS dataset.

  python -m squeezetime_jax.data.prepare --list train.txt --list val=val.txt \
      --root VIDEO_DIR --out OUT_DIR [--classes classes.txt] [--workers N] \
      [--config kinetics400] [--overwrite] [--reencode short_side=256,gop=32]

Each list line is "relative/path label" (mmaction2 format). A list's split is given as
SPLIT=PATH, or taken from its file name (train/val/test), else "train". Bad videos are
skipped and reported in OUT_DIR/summary.json; the dataset is then read with
`tfds.data_source("squeezetime_video/<config>", data_dir=OUT_DIR)`.

By default records hold the original file bytes. --reencode stores instead an H.264
re-encode at the training resolution with a short fixed GOP (see reencode.py), which
makes a training clip several times cheaper to decode; the summary reports source and
record bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import sys
from typing import Sequence

import tensorflow_datasets as tfds
import tqdm

from squeezetime_jax import cli
from squeezetime_jax.data import reencode as reencode_lib
from squeezetime_jax.data import tfds_builder

SPLIT_NAMES = ("train", "validation", "test")
_SPLIT_HINTS = (("train", "train"), ("val", "validation"), ("test", "test"))
SUMMARY_FILE = "summary.json"
index_file = tfds_builder.index_file


def parse_list(path: str, split: str) -> list[tfds_builder.ListEntry]:
    """Reads an mmaction2 list; a malformed line raises naming file and line number."""
    entries = []
    with open(path, encoding="utf-8") as f:
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
    with open(path, encoding="utf-8") as f:
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
    if config not in tfds_builder.CONFIGS:
        raise ValueError(
            f"unknown --config {config!r}; choose from {list(tfds_builder.CONFIGS)}"
        )
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out_dir)
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
    class_names = default_class_names(config, num_classes) if classes is None else None
    class_names = class_names or read_class_names(classes, num_classes)

    total = sum(len(es) for es in entries.values())
    bar = tqdm.tqdm(total=total, desc="videos", unit="video", disable=not progress)
    written = collections.Counter()
    per_class = {s: collections.Counter() for s in entries}
    skipped = []
    index = {s: [] for s in entries}
    sizes = collections.Counter()

    def on_result(result: tfds_builder.CheckResult) -> None:
        bar.update(1)
        e = result.entry
        if result.example is None:
            skipped.append(
                {"split": e.split, "line": e.line, "path": e.path, "reason": result.reason}
            )
        else:
            written[e.split] += 1
            sizes["source"] += result.source_bytes
            sizes["records"] += len(result.example["video"])
            index[e.split].append([e.path, e.label, int(result.example["num_frames"])])
            per_class[e.split][class_names[e.label]] += 1

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
    # Records keep list order (shuffling is disabled), so the index lists them in record
    # order; evaluation reads ids and labels from it without reading any video bytes.
    for split, rows in index.items():
        with open(
            os.path.join(builder.data_dir, index_file(split)), "w", encoding="utf-8"
        ) as f:
            json.dump(
                {
                    "video_id": [r[0] for r in rows],
                    "label": [r[1] for r in rows],
                    "num_frames": [r[2] for r in rows],
                },
                f,
            )
    summary = {
        "dataset": f"{tfds_builder.NAME}/{config}",
        "data_dir": os.path.abspath(out_dir),
        "written": sum(written.values()),
        "skipped": skipped,
        "reencode": None if reencode is None else dataclasses.asdict(reencode),
        # Written videos only: bytes read from the video root vs bytes stored.
        "video_bytes": {"source": sizes["source"], "records": sizes["records"]},
        "per_class": dict(sum(per_class.values(), collections.Counter())),
        "splits": {
            s: {
                "written": written[s],
                "skipped": sum(1 for k in skipped if k["split"] == s),
                "per_class": dict(per_class[s]),
            }
            for s in entries
        },
    }
    with open(os.path.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


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


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    if positional := FLAGS.parse(argv):
        raise cli.UsageError(f"unexpected arguments: {positional}")
    tfds.disable_progress_bar()  # our bar counts videos with a known total instead
    try:
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
