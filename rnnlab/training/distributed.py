"""Several hosts: `initialize` calls `jax.distributed.initialize` before anything touches a device.

Every process runs the same program but its `process_id`; process 0 also hosts the coordinator at
`coordinator_address` (its own address, reachable from the others). Each process then sees the
global device list, the mesh spans all of them, and the train loop runs unchanged: every process
saves its part of each checkpoint (orbax), only process 0 writes config.json, metrics and the
summary. On CPU the collectives go over gloo (JAX's default), so the same works on one machine
with several processes, e.g. in tests/test_scale.py.

A process that cannot reach the coordinator waits (JAX's default: 5 minutes), then JAX aborts it.
"""

from __future__ import annotations

import jax
from absl import logging

from rnnlab.errors import ConfigError


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None) -> None:
  """Joins a multi-process run when `coordinator_address` ("host:port" of process 0) is given;
  with all three None (or num_processes 1, process_id 0) it does nothing."""
  address, n, pid = coordinator_address, num_processes, process_id
  if address is None:
    if n not in (None, 1) or pid not in (None, 0):
      raise ConfigError("num_processes and process_id need coordinator_address (host:port of "
                        "process 0); leave all three out for a single-process run")
    return
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ConfigError(f"coordinator_address={address!r} must be HOST:PORT (process 0's address "
                      "and a free port on it), e.g. 10.0.0.1:1234")
  if n is None or pid is None or n < 1 or not 0 <= pid < n:
    raise ConfigError(f"a multi-process run needs num_processes >= 1 and 0 <= process_id < "
                      f"num_processes; got num_processes={n}, process_id={pid}")
  logging.info("Joining a %d-process run as process %d (coordinator %s); waiting for the others.",
               n, pid, address)
  jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid)
