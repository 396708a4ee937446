"""train_and_evaluate(config, workdir): the whole training run, top to bottom.

Sections: config checks, logging, mesh, input, model and optimizer, update step,
checkpoint restore (or fresh init / init_from), evaluator, loop. One code path
from one CPU to a multi-host TPU pod: the batch is one global array sharded
along the mesh's data axis, each process feeding its own part.
"""

from __future__ import annotations

import signal

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from squeezetime_jax import data as data_lib
from squeezetime_jax import files
from squeezetime_jax.checkpoints import metadata as metadata_lib
from squeezetime_jax.checkpoints import workdir as workdir_lib
from squeezetime_jax.checkpoints.restore import restore
from squeezetime_jax.config_utils import resolve_steps
from squeezetime_jax.data.random_clips import RANDOM_DATASET, make_random_train_dataset
from squeezetime_jax.evaluation import evaluator as evaluation
from squeezetime_jax.runtime import host_memory
from squeezetime_jax.training import best as best_lib
from squeezetime_jax.training import mesh as mesh_lib
from squeezetime_jax.training import programs, release_init
from squeezetime_jax.training.config_checks import check_config
from squeezetime_jax.training.initialization import merge_pretrained
from squeezetime_jax.training.metrics_writer import MetricWriter
from squeezetime_jax.training.profiling import StepProfiler
from squeezetime_jax.training.progress import TrainingClock, format_eta
from squeezetime_jax.training.state import TrainState, init_train_state


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class _Preemption:
    """When to checkpoint and stop on a preemption notice (SIGTERM).

    Several processes (jax.distributed): JAX's preemption service owns SIGTERM. A
    notice reaching any host is shared through the coordination service, and every
    host learns the same step to save at from `reached_preemption_sync_point`
    (through Orbax's `reached_preemption`), called at every step. No Python handler
    is installed then: it would replace JAX's, and only the signalled host would
    stop, leaving the others waiting in the next collective.

    One process: no coordination service runs, so a Python SIGTERM handler sets a
    flag, and the trainer saves and stops at the next step boundary.
    """

    def __init__(self, manager):
        self._manager = manager
        self.requested = False
        self._synchronized = _jax_preemption_service_running()
        if self._synchronized:
            logging.info("preemption: JAX's preemption service decides the step")
            return
        try:
            signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some notebook runners)
            logging.warning("SIGTERM handler not installed: not in the main thread")

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def reached(self, step: int) -> bool:
        if self._synchronized:
            return self._manager.reached_preemption(step)
        return self.requested


def _jax_preemption_service_running() -> bool:
    from jax._src import distributed as jax_distributed  # no public accessor

    state = jax_distributed.global_state
    return state.client is not None and state.preemption_sync_manager is not None


def _num_train_examples(config) -> int:
    if config.data.dataset == RANDOM_DATASET:
        return config.data.get("num_examples") or 1024
    info = data_lib.dataset_info(config.data.data_dir, config.data.dataset)
    if info.num_classes != config.model.num_classes:
        raise ValueError(
            f"dataset {config.data.dataset} has {info.num_classes} classes but "
            f"model.num_classes is {config.model.num_classes}"
        )
    return info.num_examples[config.data.train.split]


def _train_input(config, seed: int, start_step: int):
    """This process's training batches, from those of step `start_step` on.

    The position is the step: the global batches do not depend on the number of
    processes, so a run resumes exactly on any layout.
    """
    per_process = config.batch_size // jax.process_count()
    if config.data.dataset == RANDOM_DATASET:
        return make_random_train_dataset(
            num_examples=_num_train_examples(config),
            num_classes=config.model.num_classes,
            num_frames=config.model.num_frames,
            crop_size=config.data.train.crop_size,
            batch_size_per_process=per_process,
            seed=seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            start_batch=start_step,
        )
    return data_lib.make_train_dataset(
        config.data,
        batch_size_per_process=per_process,
        seed=seed,
        start_batch=start_step,
    )


INIT_REPORT = "init_from_report.json"


def _init_from(state: TrainState, config, workdir: str) -> TrainState:
    from squeezetime_jax.interop import release

    # `release:NAME` -> the released file, downloaded once into the cache.
    path = release.resolve(config.init_from)
    target = jax.device_get(state.variables)
    if files.isfile(path):
        # A PyTorch file (the release's ImageNet or K400 model): load_ckpts semantics.
        merged, report = release_init.load_release_backbone(
            path, target, copy_batch_stats=config.init_batch_stats
        )
        summary = report.summary()
        where = files.join(workdir, INIT_REPORT)
        if jax.process_index() == 0:
            files.write_json(where, report.to_json())
        summary += f"\n  report: {where}"
    else:
        source = restore(path).variables
        merged, report = merge_pretrained(
            target,
            source,
            copy_batch_stats=config.init_batch_stats,
            reinit_head=config.init_reinit_head,
        )
        summary = report.summary()
    logging.info("init_from %s: %s", config.init_from, summary)
    print(f"init_from {config.init_from}: {summary}", flush=True)
    params = jax.tree.map(
        lambda new, old: jax.device_put(new, old.sharding), merged["params"], state.params
    )
    batch_stats = jax.tree.map(
        lambda new, old: jax.device_put(new, old.sharding),
        merged["batch_stats"],
        state.batch_stats,
    )
    return state.replace(params=params, batch_stats=batch_stats)


def _write_metadata(workdir: str, config) -> None:
    """metadata.json: the class names and clip settings that travel with the weights."""
    names = None
    if config.data.dataset != RANDOM_DATASET:
        names = data_lib.dataset_info(config.data.data_dir, config.data.dataset).class_names
    metadata_lib.write(workdir, metadata_lib.from_train_config(config, names))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    # ---------------------------------------------------------------- checks
    check_config(config)
    is_chief = jax.process_index() == 0
    workdir = files.absolute(workdir)  # a local path made absolute; gs:// as it is
    files.makedirs(workdir)

    # ---------------------------------------------------------------- logging
    writer = MetricWriter(workdir)
    if is_chief:
        workdir_lib.write_config(workdir, config.to_dict())

    # ---------------------------------------------------------------- mesh
    mesh = mesh_lib.make_mesh(config.mesh_shape, config.mesh_axes)
    mesh_lib.check_batch_divides(config.batch_size, mesh)
    logging.info(
        "mesh %s over %d devices in %d processes",
        dict(mesh.shape),
        jax.device_count(),
        jax.process_count(),
    )

    # ---------------------------------------------------------------- input size
    num_train = _num_train_examples(config)
    steps_per_epoch = max(num_train // config.batch_size, 1)
    total_steps = resolve_steps(config, "total", steps_per_epoch)
    if is_chief:
        _write_metadata(workdir, config)

    # ---------------------------------------------------------------- model, optimizer, step
    # Kernels and compiler options follow the platform of the mesh's devices.
    program = programs.train_program(config, mesh, total_steps, steps_per_epoch)
    model, init_fn, step_fn = program.model, program.init_fn, program.step
    abstract_state, state_shardings = program.abstract_state, program.state_shardings
    rng = jax.random.PRNGKey(config.seed)

    # ---------------------------------------------------------------- checkpoint restore
    manager = workdir_lib.make_manager(
        workdir, max_to_keep=config.keep_checkpoints, async_save=config.async_checkpointing
    )
    latest = manager.latest_step()
    if latest is not None:
        target = workdir_lib.abstract_with_shardings(abstract_state, state_shardings)
        state = workdir_lib.restore(manager, latest, target)
        logging.info("resumed from step %d", latest)
        if is_chief:
            print(
                f"resumed from {workdir_lib.checkpoint_dir(workdir)} at step {latest}",
                flush=True,
            )
    else:
        state = init_train_state(init_fn, rng, state_shardings)
        if config.init_from:
            state = _init_from(state, config, workdir)

    # ---------------------------------------------------------------- evaluator
    eval_every = resolve_steps(config, "eval_every", steps_per_epoch, default=0)
    evaluator = None
    if eval_every and config.data.dataset != RANDOM_DATASET:
        evaluator = evaluation.Evaluator(model, mesh, config.eval_batch_size)

    best = [best_lib.read_best(workdir)]  # config.save_best: the best validation so far

    def run_validation(step: int) -> None:
        eval_ds = data_lib.make_eval_dataset(
            config.data,
            batch_size_per_process=config.eval_batch_size // jax.process_count(),
            protocol=config.eval_protocol,
        )
        # Several views per video (HMDB51: 2 clips x 3 crops): also the video-level
        # accuracies of the averaged probabilities, which the release reports.
        multi_view = eval_ds.views_per_video > 1
        result = evaluator.evaluate(state.variables, eval_ds, keep_views=multi_view)
        metrics = result.metrics()
        if multi_view:
            views = evaluation.gather_views(result.views)
            video = best_lib.video_metrics(
                views,
                len(eval_ds.video_ids),
                eval_ds.views_per_video,
                eval_ds.protocol.num_crops,
            )
            metrics.update({f"video_{k}": v for k, v in video.items()})
        writer.write(step, metrics, prefix="val/")
        host_memory.release_freed_memory()  # the evaluator's compile, its input workers
        if is_chief:
            print(
                f"step {step} validation: "
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                flush=True,
            )
        if config.get("save_best", False):
            name = "video_top1" if multi_view else "top1"
            if best_lib.is_better(metrics[name], best[0]):
                best[0] = best_lib.save_best(
                    workdir, step, state.variables, config.model, name, metrics[name]
                )
                if is_chief:
                    print(f"best {name} so far: kept in {best[0]['path']}", flush=True)

    # ---------------------------------------------------------------- loop
    preemption = _Preemption(manager)
    start_step = int(jax.device_get(state.step))
    train_iter = iter(_train_input(config, config.seed, start_step))
    logging.info(
        "training steps %d..%d (%d per epoch)", start_step, total_steps, steps_per_epoch
    )
    clock = TrainingClock(start_step)  # training time only: clips/s and the ETA
    profiler = StepProfiler(config.get("profile_steps"), workdir, pause=clock.paused)
    step = start_step
    first_batch = None
    if jax.process_count() > 1 and step < total_steps:
        # Every process compiles the step before any runs it: the first collective
        # between CPU processes (gloo) waits only 30 s for its peers, less than a
        # compile on a loaded host. The compiled step is the one jit would run.
        first_batch = mesh_lib.global_batch(next(train_iter), mesh)
        step_fn = step_fn.lower(state, first_batch).compile()
        ocp.multihost.sync_global_processes("squeezetime_train_loop", timeout=3600)
    while step < total_steps:
        profiler.before(step)
        if first_batch is not None:
            batch, first_batch = first_batch, None
        else:
            batch = mesh_lib.global_batch(next(train_iter), mesh)
        state, metrics = step_fn(state, batch)
        step += 1
        profiler.after(step, metrics)
        if step == start_step + 1:
            host_memory.release_freed_memory()  # what compiling the step left behind

        at_log = step % config.log_every_steps == 0 or step == total_steps
        at_save = step % config.checkpoint_every_steps == 0 or step == total_steps
        preempted = preemption.reached(step)
        if at_log or at_save or preempted:
            # The only host syncs of the loop: a NaN never reaches a checkpoint.
            scalars = jax.device_get(metrics)
            if not np.isfinite(scalars["loss"]):
                manager.wait_until_finished()
                raise NonFiniteLossError(
                    f"loss is {scalars['loss']} at step {step}; stopping. The last good "
                    f"checkpoint is step {manager.latest_step()} in "
                    f"{workdir_lib.checkpoint_dir(workdir)}"
                )
        if at_log:
            steps_done, seconds = clock.lap(step)
            clips_per_s = steps_done * config.batch_size / seconds
            scalars["clips_per_second"] = clips_per_s
            scalars["epoch"] = step / steps_per_epoch
            writer.write(step, scalars, prefix="train/")
            if is_chief:
                eta = clock.eta(total_steps - step)
                print(
                    f"step {step}/{total_steps} | loss {scalars['loss']:.4f} | "
                    f"acc {scalars['accuracy']:.3f} | lr {scalars['learning_rate']:.3g} | "
                    f"{clips_per_s:.1f} clips/s | eta {format_eta(eta)}",
                    flush=True,
                )
        if at_save or preempted:
            with clock.paused():
                workdir_lib.save(manager, step, state, force=True)
        if evaluator is not None and (step % eval_every == 0 or step == total_steps):
            with clock.paused():
                run_validation(step)
        if preempted:
            manager.wait_until_finished()
            logging.warning("stopping at step %d on SIGTERM; checkpoint saved", step)
            if is_chief:
                print(f"SIGTERM: checkpoint saved at step {step}; exiting", flush=True)
            break

    profiler.stop(state)  # a window past the last step ends with the run
    manager.wait_until_finished()
    manager.close()
    writer.close()
    return state
