"""Batches through reusable shared-memory slots (data/batch_slots.py)."""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from squeezetime_jax.data import batch_slots, default_data_config, pipeline
from squeezetime_jax.training import mesh as mesh_lib

ROWS = 8


class RandomExamples:
    """batch -> ROWS examples drawn from a generator keyed on the example's index."""

    def __init__(self, rows=ROWS, clips=1, shape=(2, 8, 8, 3)):
        self._rows, self._clips, self._shape = rows, clips, shape

    def example(self, index):
        rng = np.random.default_rng(index)
        lead = (self._clips,) if self._clips > 1 else ()
        return {
            "video": rng.integers(0, 256, lead + self._shape, dtype=np.uint8),
            "label": np.full(lead, index, np.int32) if lead else np.int32(index),
            "factors": rng.random(lead + (4,), dtype=np.float32),
        }

    def __call__(self, batch):
        for row in range(self._rows):
            yield self.example(batch * self._rows + row)

    def expected(self, batch):
        examples = list(self(batch))
        if self._clips == 1:
            return {k: np.stack([e[k] for e in examples]) for k in examples[0]}
        return {k: np.concatenate([e[k] for e in examples]) for k in examples[0]}


def layout_of(examples: RandomExamples) -> batch_slots.SlotLayout:
    return batch_slots.SlotLayout.of_example(
        RandomExamples(shape=examples._shape).example(0), ROWS
    )


def slot_batches(cfg, examples, start_batch, stop=10**6):
    return pipeline.slot_batches(
        cfg,
        examples,
        layout=layout_of(examples),
        start_batch=start_batch,
        stop=stop,
        stacked=examples._clips > 1,
    )


def make_slots(examples, num_slots=3, first_batch=0):
    return batch_slots.BatchSlots(layout_of(examples), num_slots, first_batch)


def assert_batch(got, want):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert got[key].dtype == want[key].dtype, key


@pytest.mark.parametrize("clips", [1, 2])
def test_workers_write_the_batches_into_slots(clips):
    examples = RandomExamples(rows=ROWS // clips, clips=clips)
    cfg = default_data_config()
    cfg.num_workers, cfg.worker_buffer_size = 2, 1
    it = iter(slot_batches(cfg, examples, 5))
    try:
        # More batches than slots: every slot is reused several times.
        for batch in range(5, 5 + 40):
            assert_batch(next(it), examples.expected(batch))
    finally:
        it.close()


def test_a_finite_dataset_can_be_read_again():
    examples = RandomExamples()
    cfg = default_data_config()
    cfg.num_workers, cfg.worker_buffer_size = 1, 1
    ds = slot_batches(cfg, examples, 3, stop=20)  # 17 batches through 8 slots
    for _ in range(2):  # each pass has slots of its own
        passed = [{k: v.copy() for k, v in batch.items()} for batch in ds]
        assert len(passed) == 17
        for batch, got in zip(range(3, 20), passed):
            assert_batch(got, examples.expected(batch))


def test_stacked_examples_may_hold_lists_of_clips():
    examples = RandomExamples()
    slots = make_slots(examples)
    want = examples.expected(0)

    def as_lists(batch):  # two stacks of 3 and 5 clips; the videos as lists of clips
        for rows in (slice(0, 3), slice(3, ROWS)):
            stack = {key: value[rows] for key, value in want.items()}
            stack["video"] = list(stack["video"])
            yield stack

    batch_slots.FillSlot(slots.spec, as_lists, stacked=True).map(0)
    assert_batch(slots.open(0), want)

    def too_few(batch):
        yield {**want, "video": list(want["video"])[:-1]}

    with pytest.raises(
        ValueError, match=f"different numbers of clips: {{'video': {ROWS - 1}, "
    ):
        batch_slots.FillSlot(slots.spec, too_few, stacked=True).map(1)


def test_a_slot_is_rewritten_only_after_its_views_are_gone():
    examples = RandomExamples()
    slots = make_slots(examples, num_slots=3)
    fill = batch_slots.FillSlot(slots.spec, examples)
    opened = {}
    for batch in range(3):
        fill.map(batch)
        opened[batch] = slots.open(batch)
    label = opened[0]["label"][:2]  # a view of a view still holds the slot
    writer = threading.Thread(target=fill.map, args=(3,))  # slot 0 again
    writer.start()
    del opened[0]
    gc.collect()
    time.sleep(0.3)
    assert writer.is_alive()
    np.testing.assert_array_equal(label, [0, 1])  # batch 0 is intact
    del label
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert_batch(slots.open(3), examples.expected(3))
    assert_batch(opened[2], examples.expected(2))


def test_device_arrays_share_the_slot_and_hold_it():
    examples = RandomExamples(shape=(2, 64, 64, 3))
    slots = make_slots(examples, num_slots=2)
    batch_slots.FillSlot(slots.spec, examples).map(0)
    local = slots.open(0)
    mesh = mesh_lib.make_mesh()  # eight CPU devices
    arrays = mesh_lib.global_batch(local, mesh)
    assert_batch(jax.device_get(arrays), examples.expected(0))
    shard = arrays["video"].addressable_shards[1]
    rows = ROWS // len(mesh.devices.flat)
    # No copy: device 1's rows are the slot's own memory.
    assert shard.data.unsafe_buffer_pointer() == local["video"][rows:].ctypes.data
    released, _ = slots.spec.header(slots._memory)
    del local
    gc.collect()
    jax.device_put(np.zeros(())).delete()
    assert released[0] == -1  # the device arrays still use it
    del arrays, shard
    gc.collect()
    jax.device_put(np.zeros(())).delete()
    assert released[0] == 0


_ASYNC_STEPS = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    sys.path.insert(0, os.getcwd())
    import jax, jax.numpy as jnp, numpy as np
    from squeezetime_jax.data import batch_slots, default_data_config, pipeline
    from squeezetime_jax.training import mesh as mesh_lib
    from tests.test_batch_slots import RandomExamples, slot_batches

    if sys.argv[1] == "off":
        batch_slots.RECLAIM_SECONDS = 1e9
    examples = RandomExamples(shape=(64, 64))

    @jax.jit
    def step(state, batch):  # a slow step that depends on the previous one
        x = batch["video"].astype(jnp.float32).reshape(-1, 64)
        for _ in range(40):
            x = jnp.tanh(x @ x.T @ x / 1e4)
        return state + x.sum() * 0 + batch["label"].sum()

    def main():
        cfg = default_data_config()
        cfg.num_workers, cfg.worker_buffer_size = 1, 1  # 8 slots
        it = iter(slot_batches(cfg, examples, 0))
        mesh = mesh_lib.make_mesh()
        state = jnp.zeros((), jnp.int32)
        for _ in range(30):  # dispatch runs ahead of the steps by more than 8 batches
            state = step(state, mesh_lib.global_batch(next(it), mesh))
        print("total", int(state))
        it.close()

    if __name__ == "__main__":
        main()
""")


def test_steps_running_behind_the_input_do_not_stall_the_workers(tmp_path):
    script = tmp_path / "async_steps.py"
    script.write_text(_ASYNC_STEPS)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run(
        [sys.executable, str(script), "on"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"total {sum(range(30 * 8))}" in run.stdout


def test_examples_that_do_not_match_the_layout_are_named():
    examples = RandomExamples()
    slots = make_slots(examples)

    def fill_with(change):
        def changed(batch):
            for example in examples(batch):
                yield change(dict(example))

        return batch_slots.FillSlot(slots.spec, changed).map(1)

    with pytest.raises(KeyError, match="'extra'"):
        fill_with(lambda e: {**e, "extra": np.int32(0)})
    with pytest.raises(ValueError, match="'video' is uint8\\[2, 8, 8, 4\\]"):
        fill_with(lambda e: {**e, "video": np.zeros((2, 8, 8, 4), np.uint8)})
    with pytest.raises(ValueError, match="'label' is int64"):
        fill_with(lambda e: {**e, "label": np.int64(0)})

    def fewer(batch):
        yield from list(examples(batch))[:-1]

    with pytest.raises(ValueError, match=f"has {ROWS - 1} clips; its slot holds {ROWS}"):
        batch_slots.FillSlot(slots.spec, fewer).map(1)

    def stacked(batch):  # ROWS clips in one stack, then one more
        yield examples.expected(batch)
        yield examples.expected(batch)

    with pytest.raises(ValueError, match=f"has more than {ROWS} clips"):
        batch_slots.FillSlot(slots.spec, stacked, stacked=True).map(1)
    with pytest.raises(TypeError, match="'name' holds Python objects"):
        batch_slots.SlotLayout.of_example({"name": np.array(["a"], object)}, 2)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="POSIX shared memory in /dev/shm")
def test_the_segment_is_unlinked_when_closed():
    slots = make_slots(RandomExamples())
    path = os.path.join("/dev/shm", slots.spec.name)
    assert os.path.exists(path)
    slots.close()
    assert not os.path.exists(path)
