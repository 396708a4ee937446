"""The device mesh and the shardings of batches and train state.

One code path from one CPU to a TPU pod: a 1D (or 2D) mesh over every device of
every process, the batch split along the `data` axis, parameters replicated or
(FSDP-style) split along the same axis.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces one -1 in `shape` by what remains of `num_devices`."""
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {shape} may contain at most one -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if known <= 0 or num_devices % known:
        raise ValueError(f"mesh shape {shape} does not divide the {num_devices} devices")
    resolved = tuple(num_devices // known if s == -1 else s for s in shape)
    if int(np.prod(resolved)) != num_devices:
        raise ValueError(
            f"mesh shape {shape} covers {int(np.prod(resolved))} devices, "
            f"but {num_devices} exist"
        )
    return resolved


def make_mesh(
    shape: Sequence[int] = (-1,),
    axis_names: Sequence[str] = (DATA_AXIS,),
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A mesh over all devices (of all processes); -1 means "the rest"."""
    devices = list(jax.devices() if devices is None else devices)
    if len(shape) != len(axis_names):
        raise ValueError(
            f"mesh shape {tuple(shape)} and axis names {tuple(axis_names)} differ in length"
        )
    resolved = resolve_mesh_shape(shape, len(devices))
    # Auto axes: shardings propagate through the jitted step as in jax.jit's classic
    # mode (jax.make_mesh would default to Explicit axes).
    return Mesh(
        np.asarray(devices).reshape(resolved),
        tuple(axis_names),
        axis_types=(jax.sharding.AxisType.Auto,) * len(axis_names),
    )


def platform(mesh: Mesh) -> str:
    """The platform ('cpu', 'tpu', 'gpu') of the mesh's devices, for which its
    programs are compiled (not necessarily the host's default backend)."""
    return mesh.devices.flat[0].platform


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every mesh axis; the rest replicated."""
    return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_sharding(mesh: Mesh, shape: Sequence[int], min_size: int = 2**14) -> NamedSharding:
    """Splits the largest axis divisible by the data axis; small arrays stay replicated."""
    size = mesh.shape[DATA_AXIS]
    if size == 1 or int(np.prod(shape)) < min_size:
        return replicated(mesh)
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % size == 0:
            spec = [None] * len(shape)
            spec[axis] = DATA_AXIS
            return NamedSharding(mesh, P(*spec))
    return replicated(mesh)


def state_shardings(mesh: Mesh, abstract_state: Any, shard_params: bool = False) -> Any:
    """Shardings for a train-state pytree of ShapeDtypeStructs."""
    if not shard_params:
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    return jax.tree.map(lambda leaf: fsdp_sharding(mesh, leaf.shape), abstract_state)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's part of the batch into global arrays on `mesh`.

    Each device's rows go to it with `device_put(..., may_alias=True)`: where the
    backend can use host memory in place (CPU, page-aligned arrays such as
    data/batch_slots' slots) nothing is copied, so the host arrays must not be
    written while the returned arrays live (the input pipeline never does).
    """
    sharding = batch_sharding(mesh)
    local_batch = {key: np.asarray(value) for key, value in local_batch.items()}
    scalars = sorted(key for key, value in local_batch.items() if value.ndim == 0)
    if scalars:
        raise ValueError(f"batch arrays need a leading batch axis; scalars: {scalars}")
    if jax.process_count() == 1:  # one call for all arrays: less overhead per array
        return jax.device_put(local_batch, sharding, may_alias=True)
    return {key: _global_array(value, sharding) for key, value in local_batch.items()}


def _global_array(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
    # This process's rows are its devices' slices of the global batch axis, in order.
    global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    indices = sharding.addressable_devices_indices_map(global_shape)
    starts = sorted({index[0].start or 0 for index in indices.values()})
    rows = sharding.shard_shape(global_shape)[0]
    if rows * len(starts) != local.shape[0]:
        raise ValueError(
            f"this process's batch has {local.shape[0]} rows; its devices hold "
            f"{len(starts)} x {rows}"
        )
    devices = list(indices)
    pieces = [
        local[starts.index(indices[d][0].start or 0) * rows :][:rows] for d in devices
    ]
    arrays = jax.device_put(pieces, devices, may_alias=True)
    return jax.make_array_from_single_device_arrays(global_shape, sharding, arrays)


def check_batch_divides(global_batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the {devices} "
            f"devices of the mesh {dict(mesh.shape)}"
        )
    if global_batch_size % jax.process_count():
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the "
            f"{jax.process_count()} processes"
        )
