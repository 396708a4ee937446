"""Multi-process start-up: jax.distributed when there is more than one process."""

from __future__ import annotations

import os

import jax
from absl import flags, logging


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cpu_collectives: str = "gloo",
) -> None:
    """Starts jax.distributed if this run spans several processes.

    Explicit arguments (or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID environment variables) name the peers; on a multi-host TPU VM
    slice JAX discovers them itself. A single process does nothing. On CPU the
    collectives between processes need an implementation (gloo).
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    tpu_workers = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if coordinator_address:
        if num_processes is None or process_id is None:
            raise ValueError("a coordinator address needs num_processes and process_id too")
        if num_processes == 1:
            return
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif "," in tpu_workers:
        jax.distributed.initialize()  # a multi-host TPU slice: peers are discovered
    else:
        return
    logging.info(
        "process %d of %d, %d local of %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def define_flags() -> None:
    """--coordinator_address/--num_processes/--process_id for an entry point."""
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Number of processes.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


def initialize_from_flags() -> None:
    """`initialize` with the values of the flags from `define_flags`."""
    values = flags.FLAGS
    initialize(values.coordinator_address, values.num_processes, values.process_id)
