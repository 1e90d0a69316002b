"""Data parallelism with JAX's own SPMD: a device mesh with a `data` axis.

Batches are generated inside the jitted step and constrained to be sharded along `data` on their
batch axis; parameters and optimizer state are replicated. The same code runs on 1 device (a
trivial mesh) or many, and over several hosts after `jax.distributed.initialize`.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rnnlab.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: list[Any] | None = None) -> Mesh:
  """A 1-D mesh over all (global) devices, axis `data`."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ConfigError(f"{key}={batch_size} is not divisible by the number of devices ({n}); "
                      f"use a multiple of {n}")


def shard_batch(batch: dict[str, jax.Array], mesh: Mesh) -> dict[str, jax.Array]:
  """Constrains every array of a batch to be split along `data` on its leading (batch) axis."""
  if mesh.devices.size == 1:
    return batch
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)
