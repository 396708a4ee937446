r"""Dataset preparation as an Apache Beam pipeline, for corpora beyond one machine.

    python -m squeezetime_jax.data.prepare --list train.txt --list val=val.txt \
        --root gs://bucket/videos --out gs://bucket/prepared --config kinetics400 \
        --runner=DataflowRunner --project=P --region=R --temp_location=gs://bucket/tmp \
        --setup_file=./setup.py [--reencode short_side=256,gop=32] [--videos_per_shard 256]

Same inputs and output as the local pool (prepare.py): the TFDS ArrayRecord layout
read by `tfds.data_source`, the per-split video index and OUT/summary.json, with the
same examples in the same order. Arguments the prepare command does not know are Beam
pipeline options (`--runner` picks DirectRunner, DataflowRunner, FlinkRunner,
SparkRunner...).

How it runs. The driver splits each list into shards of consecutive lines and writes
the plan to OUT/beam_work/plan.json. The pipeline is one step: each worker takes a
shard, reads and probes (or re-encodes) its videos with the local path's
`tfds_builder.check_video`, writes them to an ArrayRecord file and then a small JSON
file of what was written and skipped, which marks the shard done. When the pipeline
has finished the driver renames the non-empty shards to TFDS's file names, writes the
dataset info, index and summary from the shards' JSON files, and deletes the shard
files (the plan stays, so the directory knows how it was made).

Re-running the same command resumes: shards already marked done are not submitted
again, and a runner retrying a lost worker rewrites a shard whole (its files appear
only complete). Other inputs for a started directory are refused; --overwrite starts
over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Iterator, Sequence

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions

from squeezetime_jax import files
from squeezetime_jax.data import prepare, tfds_builder
from squeezetime_jax.data import reencode as reencode_lib

WORK_DIR = "beam_work"
PLAN_FILE = "plan.json"
PLAN_FORMAT = 1
DEFAULT_VIDEOS_PER_SHARD = 256


@dataclasses.dataclass(frozen=True)
class Shard:
    split: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:05d}"


def shard_files(work_dir: str, shard: Shard) -> tuple[str, str]:
    """(records file, done marker) of one shard in the work directory."""
    return (
        files.join(work_dir, f"{shard.name}.array_record"),
        files.join(work_dir, f"{shard.name}.json"),
    )


def make_plan(
    entries: dict[str, list[tfds_builder.ListEntry]],
    *,
    root: str,
    config: str,
    class_names: Sequence[str],
    reencode: reencode_lib.ReencodeSpec | None,
    videos_per_shard: int,
) -> dict:
    """Everything a worker needs, and what a resumed run must match."""
    return {
        "format": PLAN_FORMAT,
        "root": files.absolute(root),
        "config": config,
        "class_names": list(class_names),
        "reencode": None if reencode is None else dataclasses.asdict(reencode),
        "videos_per_shard": videos_per_shard,
        "splits": {
            split: [[e.line, e.path, e.label] for e in es] for split, es in entries.items()
        },
    }


def plan_shards(plan: dict) -> list[Shard]:
    n = plan["videos_per_shard"]
    return [
        Shard(split, i)
        for split, rows in plan["splits"].items()
        for i in range((len(rows) + n - 1) // n)
    ]


def shard_entries(plan: dict, shard: Shard) -> list[tfds_builder.ListEntry]:
    n = plan["videos_per_shard"]
    rows = plan["splits"][shard.split][shard.index * n : (shard.index + 1) * n]
    return [
        tfds_builder.ListEntry(shard.split, line, path, label) for line, path, label in rows
    ]


def _reencode_spec(plan: dict) -> reencode_lib.ReencodeSpec | None:
    spec = plan["reencode"]
    return None if spec is None else reencode_lib.ReencodeSpec(**spec)


def write_shard(plan: dict, work_dir: str, shard: Shard) -> dict:
    """Prepares one shard's videos; returns (and stores as its done marker) the record of
    what was written and skipped. Bad videos are skipped, as on the local path."""
    features = tfds_builder.features(plan["class_names"])
    serializer = tfds.core.example_serializer.ExampleSerializer(
        features.get_serialized_info()
    )
    reencode = _reencode_spec(plan)
    written, skipped, num_bytes = [], [], 0

    def examples() -> Iterator[tuple[str, bytes]]:
        nonlocal num_bytes
        for entry in shard_entries(plan, shard):
            result = tfds_builder.check_video(plan["root"], entry, reencode)
            if result.example is None:
                skipped.append([entry.line, entry.path, entry.label, result.reason])
                continue
            data = serializer.serialize_example(features.encode_example(result.example))
            num_bytes += len(data)
            written.append(
                [
                    entry.line,
                    entry.path,
                    entry.label,
                    int(result.example["num_frames"]),
                    result.source_bytes,
                    len(result.example["video"]),
                ]
            )
            yield entry.path, data

    records, marker = shard_files(work_dir, shard)
    _write_array_record(records, examples())
    done = {"written": written, "skipped": skipped, "num_bytes": num_bytes}
    files.write_json(marker, done, indent=None)
    return done


def _write_array_record(target: str, examples: Iterator[tuple[str, bytes]]) -> None:
    """Writes with TFDS's ArrayRecord settings; the file appears complete or not at all.

    ArrayRecord writes local files only, so a gs:// shard is written to local disk and
    uploaded (one upload replaces a GCS object whole).
    """
    adapter = tfds.core.file_adapters.ArrayRecordFileAdapter
    if files.is_url(target):
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "shard.array_record")
            adapter.write_examples(local, examples)
            files.path(local).copy(files.path(target), overwrite=True)
        return
    partial = f"{target}.partial"
    files.makedirs(os.path.dirname(target))
    adapter.write_examples(partial, examples)
    os.replace(partial, target)


class _WriteShard(beam.DoFn):
    """Writes a shard unless an earlier attempt or run finished it."""

    def __init__(self, work_dir: str):
        self._work_dir = work_dir
        self._plan = None

    def setup(self):
        self._plan = files.read_json(files.join(self._work_dir, PLAN_FILE))

    def process(self, shard: Shard):
        if files.exists(shard_files(self._work_dir, shard)[1]):
            beam.metrics.Metrics.counter("prepare", "shards_already_done").inc()
            return
        done = write_shard(self._plan, self._work_dir, shard)
        beam.metrics.Metrics.counter("prepare", "videos_written").inc(len(done["written"]))
        beam.metrics.Metrics.counter("prepare", "videos_skipped").inc(len(done["skipped"]))
        yield shard.name


def _start_or_resume(out_dir: str, plan: dict, overwrite: bool) -> str:
    """Returns the work directory, checking a started one was started with this plan."""
    work_dir = files.join(out_dir, WORK_DIR)
    plan_path = files.join(work_dir, PLAN_FILE)
    if overwrite:
        files.remove_tree(out_dir)
    elif files.exists(plan_path):
        started = files.read_json(plan_path)
        if started != plan:
            changed = sorted(k for k in plan if started.get(k) != plan.get(k))
            raise ValueError(
                f"{out_dir} was started with other inputs (differing: "
                f"{', '.join(changed)}); run with the same inputs to resume, or pass "
                "--overwrite to start over"
            )
        return work_dir
    elif files.listdir(out_dir):
        raise FileExistsError(f"{out_dir} is not empty; pass --overwrite to replace it")
    files.write_json(plan_path, plan, indent=None)
    return work_dir


def _finalize(out_dir: str, work_dir: str, plan: dict, builder) -> dict:
    """Moves the shards to TFDS's names and writes dataset info, index and summary.

    Safe to run again after an interruption: a shard already moved is recognised.
    """
    shards = plan_shards(plan)
    done = {s: files.read_json(shard_files(work_dir, s)[1]) for s in shards}
    tally = prepare.Tally(list(plan["splits"]), plan["class_names"])
    split_infos = []
    for split in plan["splits"]:
        ours = [s for s in shards if s.split == split]
        non_empty = [s for s in ours if done[s]["written"]]
        template = tfds.core.naming.ShardedFileTemplate(
            split=split,
            dataset_name=builder.name,
            data_dir=builder.data_path,
            filetype_suffix=builder.info.file_format.file_suffix,
        )
        for i, shard in enumerate(non_empty):
            source = files.path(shard_files(work_dir, shard)[0])
            target = template.sharded_filepath(shard_index=i, num_shards=len(non_empty))
            if source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                source.replace(target)
            elif not target.exists():
                raise FileNotFoundError(
                    f"shard {shard.name} of {work_dir} is lost: {source}"
                )
        for shard in ours:
            rows = {row[0]: row for row in done[shard]["written"]}
            reasons = {row[0]: row[3] for row in done[shard]["skipped"]}
            for entry in shard_entries(plan, shard):
                if entry.line in reasons:
                    tally.add(entry, reason=reasons[entry.line])
                else:
                    _, _, _, frames, source_bytes, record_bytes = rows[entry.line]
                    tally.add(
                        entry,
                        num_frames=frames,
                        source_bytes=source_bytes,
                        record_bytes=record_bytes,
                    )
        split_infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[len(done[s]["written"]) for s in non_empty],
                num_bytes=sum(done[s]["num_bytes"] for s in ours),
                filename_template=template,
            )
        )
    builder.info.set_splits(tfds.core.SplitDict(split_infos))
    builder.info.write_to_directory(builder.data_path)
    reencode = _reencode_spec(plan)
    summary = tally.write(os.fspath(builder.data_path), out_dir, plan["config"], reencode)
    for shard in shards:  # the plan stays: it records how the directory was made
        for leftover in shard_files(work_dir, shard):  # empty shards' records, markers
            files.path(leftover).unlink(missing_ok=True)
    return summary


def _runner(name: str):
    """A runner name as Beam takes it, except that DirectRunner runs on the DirectRunner's
    batch engine (FnApiRunner) directly: Beam's DirectRunner would first download its
    Prism binary from GitHub. `--runner=PrismRunner` asks for Prism explicitly."""
    if name.lower() in ("direct", "directrunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return name


def prepare_dataset_beam(
    lists: Sequence[str],
    root: str,
    out_dir: str,
    *,
    classes: str | None = None,
    config: str = "custom",
    overwrite: bool = False,
    reencode: str | reencode_lib.ReencodeSpec | None = None,
    videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD,
    runner: str = "DirectRunner",
    pipeline_args: Sequence[str] = (),
) -> dict:
    """prepare.prepare_dataset as a Beam pipeline; returns the same summary.

    `pipeline_args`: Beam pipeline options (`--project=...`, `--direct_num_workers=4`).
    """
    if isinstance(reencode, str):
        reencode = reencode_lib.parse_spec(reencode)
    if videos_per_shard < 1:
        raise ValueError(f"--videos_per_shard must be positive, got {videos_per_shard}")
    prepare.check_config(config)
    entries, class_names = prepare.read_inputs(lists, config, classes)
    plan = make_plan(
        entries,
        root=root,
        config=config,
        class_names=class_names,
        reencode=reencode,
        videos_per_shard=videos_per_shard,
    )
    work_dir = _start_or_resume(out_dir, plan, overwrite)
    summary_path = files.join(out_dir, prepare.SUMMARY_FILE)
    if files.exists(summary_path):  # a finished run of the same plan
        logging.info("%s is complete", out_dir)
        return files.read_json(summary_path)
    finished = set(files.listdir(work_dir))  # one listing, not a request per shard
    todo = [s for s in plan_shards(plan) if f"{s.name}.json" not in finished]
    logging.info("%d of %d shards to write", len(todo), len(plan_shards(plan)))
    if todo:
        options = PipelineOptions(list(pipeline_args))
        with beam.Pipeline(runner=_runner(runner), options=options) as pipeline:
            _ = (
                pipeline
                | "Shards" >> beam.Create(todo)
                # Spread the shards over the workers instead of fusing them with Create.
                | "Spread" >> beam.Reshuffle()
                | "WriteShards" >> beam.ParDo(_WriteShard(work_dir))
            )
    builder = tfds_builder.SqueezetimeVideo(
        config=config,
        data_dir=out_dir,
        entries={},
        class_names=class_names,
        root=root,
    )
    return _finalize(out_dir, work_dir, plan, builder)
