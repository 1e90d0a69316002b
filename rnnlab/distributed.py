"""Several hosts: flags that call `jax.distributed.initialize` before anything touches a device.

  python -m experiments.train ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0
  python -m experiments.train ... --coordinator_address=HOST0:1234 --num_processes=2 --process_id=1
"""

from __future__ import annotations

import jax
from absl import flags

from rnnlab.errors import ConfigError

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0, for multi-host runs (jax.distributed).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (hosts) in a multi-host run.")
  flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def initialize_from_flags() -> None:
  """Calls jax.distributed.initialize when --coordinator_address is given."""
  address, n, pid = FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
  if address is None:
    if n not in (None, 1) or pid not in (None, 0):
      raise ConfigError("--num_processes/--process_id need --coordinator_address")
    return
  if n is None or pid is None or n < 1 or not 0 <= pid < n:
    raise ConfigError(f"multi-host flags need --num_processes >= 1 and 0 <= --process_id < "
                      f"--num_processes; got num_processes={n}, process_id={pid}")
  jax.distributed.initialize(coordinator_address=address, num_processes=n, process_id=pid)
