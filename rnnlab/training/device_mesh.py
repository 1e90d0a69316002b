"""Data parallelism with JAX's own SPMD: a device mesh with a `data` axis.

Batches are generated inside the jitted step and constrained to be sharded along `data` on their
batch axis; parameters and optimizer state are replicated. The same code runs on 1 device (a
trivial mesh) or many, and over several hosts after `jax.distributed.initialize`.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rnnlab.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-D mesh over all (global) devices, axis `data`.

  The axis is `Auto` (GSPMD propagation), not `Explicit` (jax.make_mesh's default since JAX 0.7):
  the step constrains the batch with `with_sharding_constraint` and lets XLA place the rest, and
  an explicit axis would instead demand `reshard` and sharding-aware types everywhere.
  """
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    fits = max(k for k in range(1, n + 1) if batch_size % k == 0)
    raise ConfigError(
        f"{key}={batch_size} is not divisible by the number of devices ({n}); run on {fits} "
        f"device{'s' if fits > 1 else ''} (CPU: XLA_FLAGS=--xla_force_host_platform_device_count="
        f"{fits}; GPU: CUDA_VISIBLE_DEVICES), or, for a new --workdir, use a multiple of {n}")


def shard_batch(batch: dict[str, jax.Array], mesh: Mesh) -> dict[str, jax.Array]:
  """Constrains every array of a batch to be split along `data` on its leading (batch) axis.

  Called inside `jax.vmap` over seeds: vmap adds the [seeds] axis to the constraint unsplit, so the
  compiled step holds [seeds, batch/devices, ...] per device (tests/test_scale.py checks this).
  Scalars (no batch axis) are left replicated.
  """
  if mesh.devices.size == 1:
    return batch
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding) if x.ndim else x, batch)
