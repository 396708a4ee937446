r"""Official Kinetics CSV annotations + downloaded clips -> our list and classes files.

    python -m squeezetime_jax.data.kinetics_lists --csv kinetics700_2020/train.csv \
        --csv kinetics700_2020/validate.csv --videos K700_DIR --out LISTS_DIR \
        [--classes classes.txt]

The CSVs have the columns `label,youtube_id,time_start,time_end,split` (extra columns
such as `is_cc` are ignored). A clip is the file `{youtube_id}_{time_start:06d}_
{time_end:06d}.{mp4,webm,mkv,avi}` anywhere under --videos: flat, in split folders
(the tarballs of the CVDF mirror) or in per-class folders (ActivityNet's downloader and
the scripts derived from it, with or without spaces in class names), so no layout is
assumed. Writes to --out:

  train.txt, val.txt, ...  "relative/path.mp4 label" lines (rows in CSV order), one
                           file per value of the split column (validate -> val)
  classes.txt              class names, line i = label i: sorted names found in the
                           CSVs, or the given --classes file (its order is kept)
  missing.csv              the CSV rows whose clip is not on disk (to download again)

and prints per-split counts of listed and missing clips. Then:

    python -m squeezetime_jax.data.prepare --list LISTS_DIR/train.txt \
        --list val=LISTS_DIR/val.txt --root K700_DIR --classes LISTS_DIR/classes.txt \
        --config kinetics700 --out PREPARED_DIR
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os
import sys
from typing import Sequence

from squeezetime_jax import cli, files

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")
REQUIRED_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_SPLIT_NAMES = {"validate": "val", "validation": "val", "valid": "val"}


@dataclasses.dataclass(frozen=True)
class Clip:
    csv_path: str
    line: int
    row: dict
    label_name: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str

    @property
    def stem(self) -> str:
        return clip_stem(self.youtube_id, self.time_start, self.time_end)


def clip_stem(youtube_id: str, time_start: int, time_end: int) -> str:
    """The usual Kinetics clip name without extension."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def _seconds(path: str, line: int, column: str, value: str) -> int:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0 or seconds != int(seconds):
        raise ValueError(
            f"{path}:{line}: column {column} must be whole seconds >= 0, got {value!r}"
        )
    return int(seconds)


def read_csv(path: str) -> tuple[list[Clip], list[str]]:
    """(clips in file order, the header); a bad header or row raises naming the line."""
    with io.StringIO(files.read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            hint = " (test CSVs carry no labels)" if "label" in missing else ""
            raise ValueError(
                f"{path}: missing column(s) {missing}{hint}; expected the official "
                f"header {','.join(REQUIRED_COLUMNS)}"
            )
        clips = []
        for row in reader:
            line = reader.line_num
            label, youtube_id = (row["label"] or "").strip(), (row["youtube_id"] or "")
            split = (row["split"] or "").strip().lower()
            if not label or not youtube_id.strip() or not split:
                raise ValueError(f"{path}:{line}: empty label, youtube_id or split: {row}")
            clips.append(
                Clip(
                    path,
                    line,
                    row,
                    label,
                    youtube_id.strip(),
                    _seconds(path, line, "time_start", row["time_start"]),
                    _seconds(path, line, "time_end", row["time_end"]),
                    _SPLIT_NAMES.get(split, split),
                )
            )
    return clips, header


def index_videos(videos: str) -> dict[str, str]:
    """Clip stem -> path relative to `videos`, for every video file below it."""
    root = files.path(videos)
    if not root.is_dir():
        raise FileNotFoundError(f"--videos {videos}: no such directory")
    found: dict[str, str] = {}
    for directory, _, names in root.walk():
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            rel = os.fspath((directory / name).relative_to(root))
            if stem in found:
                raise ValueError(
                    f"clip {stem} is in {videos} twice: {found[stem]} and {rel}; remove one"
                )
            found[stem] = rel
    return found


def read_classes(path: str) -> list[str]:
    names = [ln.strip() for ln in files.read_text(path).splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{path} has duplicate class names")
    return names


def make_lists(
    csvs: Sequence[str],
    videos: str,
    out: str,
    *,
    classes: str | None = None,
) -> dict:
    """Writes the lists, classes.txt and missing.csv to `out`; returns the counts:
    {"classes": N, "splits": {split: {"listed": n, "missing": m}}}."""
    clips, header = [], None
    for path in csvs:
        rows, columns = read_csv(path)
        clips += rows
        header = header or columns
    if not clips:
        raise ValueError(f"no clips in {', '.join(csvs)}")
    if classes:
        class_names = read_classes(classes)
        unknown = sorted({c.label_name for c in clips} - set(class_names))
        if unknown:
            raise ValueError(
                f"{len(unknown)} label(s) of the CSVs are not in {classes}: {unknown[:5]}"
            )
    else:
        class_names = sorted({c.label_name for c in clips})
    label_of = {name: i for i, name in enumerate(class_names)}
    on_disk = index_videos(videos)

    lines = collections.defaultdict(list)
    missing = []
    counts = collections.defaultdict(collections.Counter)
    for clip in clips:
        rel = on_disk.get(clip.stem)
        if rel is None:
            missing.append(clip)
            counts[clip.split]["missing"] += 1
            continue
        lines[clip.split].append(f"{rel} {label_of[clip.label_name]}\n")
        counts[clip.split]["listed"] += 1

    files.makedirs(out)
    for split in counts:
        files.write_text(files.join(out, f"{split}.txt"), "".join(lines[split]))
    files.write_text(files.join(out, "classes.txt"), "".join(f"{n}\n" for n in class_names))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(c.row for c in missing)
    files.write_text(files.join(out, "missing.csv"), table.getvalue())
    return {
        "classes": len(class_names),
        "splits": {
            s: {"listed": counts[s]["listed"], "missing": counts[s]["missing"]}
            for s in counts
        },
    }


FLAGS = cli.Flags("python -m squeezetime_jax.data.kinetics_lists", __doc__)
CSVS = FLAGS.multi_string(
    "csv", None, "An official annotation CSV (repeatable: train, validate).", required=True
)
VIDEOS = FLAGS.string("videos", None, "Directory of the downloaded clips.", required=True)
OUT = FLAGS.string("out", None, "Directory for the list files.", required=True)
CLASSES = FLAGS.string(
    "classes", None, "Class names in label order, one per line (default: sorted)."
)


@cli.exit_on_usage_error
def main(argv: Sequence[str] | None = None) -> int:
    if positional := FLAGS.parse(argv):
        raise cli.UsageError(f"unexpected arguments: {positional}")
    try:
        counts = make_lists(CSVS.value, VIDEOS.value, OUT.value, classes=CLASSES.value)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{counts['classes']} classes -> {files.join(OUT.value, 'classes.txt')}")
    for split, c in counts["splits"].items():
        total = c["listed"] + c["missing"]
        print(
            f"  {split}: {c['listed']} of {total} clips on disk, {c['missing']} missing "
            f"-> {files.join(OUT.value, split + '.txt')}"
        )
    if any(c["missing"] for c in counts["splits"].values()):
        print(f"missing clips: {files.join(OUT.value, 'missing.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
