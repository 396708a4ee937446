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

    On a Cloud TPU VM (TPU chips on this host, as JAX counts them) and without
    explicit values, `jax.distributed.initialize()` runs with no arguments: JAX's
    own cluster detection (the TPU metadata server, or GKE's environment) finds
    the peers, on a single host as on every worker of a pod slice.
    Elsewhere the peers are named explicitly: the arguments, or JAX's standard
    environment variables JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
    JAX_PROCESS_ID. Without either, a single process does nothing. On CPU the
    collectives between processes need an implementation (gloo).
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator_address:
        if num_processes is None or process_id is None:
            raise ValueError(
                "a coordinator address needs num_processes and process_id too "
                f"(got num_processes={num_processes}, process_id={process_id})"
            )
        if num_processes == 1:
            return
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif tpu_chips_on_this_host() > 0:
        jax.distributed.initialize()  # JAX's cluster detection names the peers
    else:
        return
    _orbax_barriers_through_the_coordination_service()
    logging.info(
        "process %d of %d, %d local of %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _orbax_barriers_through_the_coordination_service() -> None:
    """Orbax's barriers (manager creation, saves) wait on JAX's coordination service.

    By default they are a collective over every device; between CPU processes that is
    a gloo collective whose peers must connect within 30 s, so one host still
    importing or compiling fails the run. The coordination service's barrier waits up
    to Orbax's own timeout and runs nothing on the devices.
    """
    import orbax.checkpoint  # noqa: F401  (defines the flag)

    name = "experimental_orbax_use_distributed_barrier"
    if name in flags.FLAGS:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # outside an absl app: defaults stand
        flags.FLAGS[name].value = True
    else:
        logging.warning("this Orbax has no --%s; barriers use collectives", name)


def tpu_chips_on_this_host() -> int:
    """TPU chips on the PCI bus, as JAX counts them (no backend is started)."""
    try:
        from jax._src import hardware_utils  # JAX's own probe; no public accessor

        chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
    except Exception:  # another JAX layout, or no sysfs: not a TPU VM
        return 0
    return int(chips)


def define_flags() -> None:
    """--coordinator_address/--num_processes/--process_id for an entry point."""
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
    flags.DEFINE_integer("num_processes", None, "Number of processes.")
    flags.DEFINE_integer("process_id", None, "This process's index.")


def initialize_from_flags() -> None:
    """`initialize` with the values of the flags from `define_flags`."""
    values = flags.FLAGS
    initialize(values.coordinator_address, values.num_processes, values.process_id)
