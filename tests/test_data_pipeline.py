"""Grain pipelines: global batches, epochs, worker independence, exact resume, eval views."""

import os
import subprocess
import sys
import textwrap

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from squeezetime_jax.data import (
    MEAN_RGB,
    STD_RGB,
    global_batches,
    make_eval_dataset,
    make_train_dataset,
    normalize_on_device,
    pipeline,
)
from tests.fixtures import synthetic_videos as sv
from tests.fixtures.demo_dataset import small_data_config as small_config
from tests.fixtures.demo_dataset import write_demo_dataset as prepare_suite


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out, videos, _ = prepare_suite(str(tmp_path_factory.mktemp("p")))
    return out, [v for v in videos if v.num_frames]


def fast_train_config(out):
    cfg = small_config(out)
    cfg.num_frames, cfg.frame_interval = 4, 2
    return cfg


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("num_records", [10, 7])
def test_each_epoch_covers_every_record_once(num_records):
    order = pipeline.train_order(num_records, seed=5)
    first, second = order[:num_records], order[num_records : 2 * num_records]
    assert sorted(first) == sorted(second) == list(range(num_records))


def test_shuffle_changes_with_epoch_and_seed_not_between_runs():
    order = lambda seed: list(pipeline.train_order(20, seed=seed)[:40])
    a = order(1)
    assert a == order(1)
    assert a[:20] != a[20:]  # a new permutation each epoch
    assert a != order(2)


@pytest.mark.parametrize("process_count,per_process", [(1, 6), (2, 3), (3, 2)])
def test_processes_feed_disjoint_rows_of_each_global_batch(process_count, per_process):
    streams = [
        list(
            global_batches.process_positions(
                per_process=per_process,
                process_index=p,
                process_count=process_count,
                start_batch=2,
            )[: 2 * per_process]
        )
        for p in range(process_count)
    ]
    for batch in range(2):
        rows = [s[batch * per_process : (batch + 1) * per_process] for s in streams]
        # Concatenated in process order: global batch 2 + batch, whatever the layout.
        assert sum(rows, []) == list(range((2 + batch) * 6, (3 + batch) * 6))


def test_global_batches_do_not_depend_on_process_count(prepared):
    out, _ = prepared
    cfg = fast_train_config(out)

    def batches(process_index, process_count, start_batch, count):
        ds = make_train_dataset(
            cfg,
            batch_size_per_process=4 // process_count,
            seed=7,
            process_index=process_index,
            process_count=process_count,
            start_batch=start_batch,
        )
        return take(iter(ds), count)

    one = batches(0, 1, 0, 3)  # batches 0-2: the 5-video epoch wraps in batch 1
    halves = [batches(p, 2, 1, 2) for p in range(2)]  # resumed at batch 1 on 2 hosts
    for step, (first, second) in enumerate(zip(*halves), start=1):
        joined = {k: np.concatenate([first[k], second[k]]) for k in first}
        assert_batches_equal([one[step]], [joined])
    assert not np.array_equal(one[1]["video"], one[2]["video"])


def test_batches_do_not_depend_on_worker_count(prepared):
    out, _ = prepared
    cfg = fast_train_config(out)
    ref = take(
        iter(
            make_train_dataset(
                cfg, batch_size_per_process=2, seed=7, process_index=0, process_count=1
            )
        ),
        4,
    )
    cfg.num_workers = 2
    it = iter(
        make_train_dataset(
            cfg, batch_size_per_process=2, seed=7, process_index=0, process_count=1
        )
    )
    try:
        got = take(it, 4)
    finally:
        it.close()
    assert_batches_equal(ref, got)
    assert ref[0]["video"].shape == (2, 4, 32, 32, 3) and ref[0]["video"].dtype == np.uint8
    assert ref[0]["label"].dtype == np.int32
    assert not any(b["decode_failed"].any() for b in ref)


_RESTORE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import orbax.checkpoint as ocp
    import grain
    from squeezetime_jax.data import make_train_dataset
    from tests.fixtures.demo_dataset import small_data_config as small_config

    cfg = small_config({out!r})
    cfg.num_frames, cfg.frame_interval = 4, 2
    cfg.num_workers = {workers}
    it = iter(make_train_dataset(cfg, batch_size_per_process=2, seed=11,
                                 process_index=0, process_count=1))
    mngr = ocp.CheckpointManager({ckpt!r}, item_names=("data",))
    mngr.restore(mngr.latest_step(),
                 args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it)))
    batches = [next(it) for _ in range(3)]
    it.close() if hasattr(it, "close") else None
    np.savez({npz!r}, **{{f"{{i}}_{{k}}": v for i, b in enumerate(batches) for k, v in b.items()}})
""")


@pytest.mark.parametrize("workers", [0, 2])
def test_restore_in_fresh_process_yields_the_same_next_batches(prepared, tmp_path, workers):
    out, _ = prepared
    cfg = fast_train_config(out)
    cfg.num_workers = workers
    it = iter(
        make_train_dataset(
            cfg, batch_size_per_process=2, seed=11, process_index=0, process_count=1
        )
    )
    take(it, 3)  # 6 clips of a 5-video shard: mid-way through the second epoch
    ckpt = str(tmp_path / "ckpt")
    mngr = ocp.CheckpointManager(ckpt, item_names=("data",))
    mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    expected = take(it, 3)
    if hasattr(it, "close"):
        it.close()
    npz = str(tmp_path / "restored.npz")
    script = _RESTORE_SCRIPT.format(out=out, ckpt=ckpt, npz=npz, workers=workers)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    got = np.load(npz)
    restored = [{k: got[f"{i}_{k}"] for k in expected[0]} for i in range(3)]
    assert_batches_equal(expected, restored)


class _PatchedSource:
    """A source whose records can be corrupted or given a wrong frame count."""

    def __init__(self, base, corrupt=(), frame_count_factor=1):
        self._base, self._corrupt, self._factor = base, set(corrupt), frame_count_factor

    def __len__(self):
        return len(self._base)

    def __getitem__(self, i):
        r = dict(self._base[i])
        if i in self._corrupt:
            r["video"] = b"\x00\x00\x00\x18ftypmp42" + bytes(200)
        r["num_frames"] = int(r["num_frames"]) * self._factor
        return r


def _patch_source(monkeypatch, **kw):
    real = pipeline.open_source
    monkeypatch.setattr(
        pipeline, "open_source", lambda cfg, split: _PatchedSource(real(cfg, split), **kw)
    )


def test_corrupt_video_is_replaced_deterministically_and_counted(prepared, monkeypatch):
    out, _ = prepared
    cfg = fast_train_config(out)
    _patch_source(monkeypatch, corrupt={1})
    make = lambda: iter(
        make_train_dataset(
            cfg, batch_size_per_process=5, seed=0, process_index=0, process_count=1
        )
    )
    a, b = take(make(), 2), take(make(), 2)
    assert_batches_equal(a, b)
    # One record in five is corrupt: each full pass of the 5-video shard flags exactly one.
    assert [int(x["decode_failed"].sum()) for x in a] == [1, 1]
    for x in a:
        k = int(np.flatnonzero(x["decode_failed"])[0])
        assert x["video"][k].std() > 1  # a real replacement clip, not a blank


@pytest.mark.parametrize("workers", [0, 1])  # 1: through batch slots
def test_eval_counts_undecodable_video_and_keeps_its_views(prepared, monkeypatch, workers):
    out, videos = prepared
    cfg = small_config(out)
    cfg.num_workers = workers
    _patch_source(monkeypatch, corrupt={2})
    ds = make_eval_dataset(
        cfg,
        batch_size_per_process=4,
        protocol="val",
        split="train",
        process_index=0,
        process_count=1,
    )
    batches = list(ds)
    failed = np.concatenate([b["video_index"][b["decode_failed"]] for b in batches])
    assert failed.tolist() == [2]
    masked = np.concatenate([b["mask"] for b in batches])
    assert masked.sum() == len(videos)


def test_wrong_header_frame_count_still_samples_real_frames(prepared, monkeypatch):
    out, videos = prepared
    cfg = small_config(out)
    _patch_source(monkeypatch, frame_count_factor=3)  # stored count 3x too large
    ds = make_eval_dataset(
        cfg,
        batch_size_per_process=8,
        protocol="val",
        split="train",
        process_index=0,
        process_count=1,
    )
    n_of = {v.path: v.num_frames for v in videos}
    for b in ds:
        for k in np.flatnonzero(b["mask"]):
            n = n_of[ds.video_ids[b["video_index"][k]]]
            got = sv.read_frame_indices(b["video"][k], n)
            span = 64
            start = int((n - span + 1) / 2) if n >= span else 0
            np.testing.assert_array_equal(got, (start + 4 * np.arange(16)) % n)
            assert not b["decode_failed"][k]


# With a worker, batch 7 holds one video's 6 views and a pad (batch slots); batch 4
# is smaller than a video's views and takes the Grain hand-off.
@pytest.mark.parametrize(
    "process_count,batch,workers", [(2, 4, 0), (3, 7, 0), (2, 4, 1), (3, 7, 1)]
)
def test_eval_views_seen_exactly_once_across_processes(
    prepared, process_count, batch, workers
):
    out, videos = prepared
    cfg = small_config(out)
    cfg.num_workers = workers
    protocol = {"base": "test", "num_clips": 2, "num_crops": 3}
    seen, lengths = [], []
    for p in range(process_count):
        ds = make_eval_dataset(
            cfg,
            batch_size_per_process=batch,
            protocol=protocol,
            split="train",
            process_index=p,
            process_count=process_count,
        )
        batches = list(ds)
        lengths.append(len(batches))
        assert len(batches) == len(ds)
        for b in batches:
            assert b["video"].shape[0] == batch
            assert (b["video_index"][~b["mask"]] == -1).all()
            seen += [
                (int(v), int(c), int(r))
                for v, c, r, m in zip(
                    b["video_index"], b["clip_index"], b["crop_index"], b["mask"]
                )
                if m
            ]
    assert len(set(lengths)) == 1
    assert sorted(seen) == [
        (v, c, r) for v in range(len(videos)) for c in range(2) for r in range(3)
    ]


def test_eval_protocol_errors_name_the_field(prepared):
    cfg = small_config(prepared[0])
    with pytest.raises(ValueError, match="num_crop"):
        pipeline.eval_protocol(cfg, {"num_crop": 3})
    with pytest.raises(ValueError, match="num_crops"):
        pipeline.eval_protocol(cfg, {"num_crops": 5})
    with pytest.raises(ValueError, match="protocol"):
        pipeline.eval_protocol(cfg, "train")


def test_missing_dataset_error_names_it(tmp_path):
    cfg = small_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="squeezetime_video/custom"):
        make_train_dataset(
            cfg, batch_size_per_process=1, seed=0, process_index=0, process_count=1
        )


def test_normalize_on_device():
    x = np.array([[0, 128, 255]], np.uint8)[..., None].repeat(3, -1)  # (1, 3, 3)
    got = np.asarray(normalize_on_device(x))
    want = (x.astype(np.float64) - np.array(MEAN_RGB)) / np.array(STD_RGB)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _views_by_index(ds) -> dict:
    views = {}
    for batch in ds:
        for row in np.flatnonzero(batch["mask"]):
            key = tuple(
                int(batch[k][row]) for k in ("video_index", "clip_index", "crop_index")
            )
            assert key not in views
            views[key] = {k: np.copy(v[row]) for k, v in batch.items()}
    return views


def test_eval_batches_through_slots_hold_whole_videos_and_the_same_views(prepared):
    out, videos = prepared
    cfg = small_config(out)
    protocol = {"base": "test", "num_clips": 2, "num_crops": 3}

    def make(workers):
        cfg.num_workers = workers
        return make_eval_dataset(
            cfg,
            batch_size_per_process=13,  # two videos' views and one blank
            protocol=protocol,
            split="train",
            process_index=0,
            process_count=1,
        )

    grain_handoff, slots = make(0), make(1)
    assert len(grain_handoff) == -(-len(videos) * 6 // 13)
    assert len(slots) == -(-len(videos) // 2)
    for batch in slots:
        assert batch["video"].shape[0] == 13
        assert not batch["mask"][12] and batch["video_index"][12] == -1
        indices = batch["video_index"][batch["mask"]]
        assert len(indices) in (6, 12) and len(set(indices.tolist())) == len(indices) // 6
    want, got = _views_by_index(grain_handoff), _views_by_index(slots)
    assert sorted(got) == sorted(want)
    assert len(got) == 6 * len(videos)
    for key, view in want.items():
        for name, value in view.items():
            np.testing.assert_array_equal(got[key][name], value, err_msg=f"{key} {name}")


def test_eval_batches_smaller_than_a_video_say_they_miss_the_slots(prepared, caplog):
    out, _ = prepared
    cfg = small_config(out)
    cfg.num_workers = 1

    def make(batch):
        caplog.clear()
        return make_eval_dataset(
            cfg,
            batch_size_per_process=batch,
            protocol={"base": "test", "num_clips": 2, "num_crops": 3},
            split="train",
            process_index=0,
            process_count=1,
        )

    make(5)
    assert "hold less than one video's 6 views" in caplog.text
    make(6)
    assert "Grain's hand-off" not in caplog.text
