"""Whether a run fits in memory, checked before anything is allocated.

A config far too large for the machine does not fail by itself: XLA allocates (or the OS swaps) and
the run hangs with no output. So the train loop first estimates the peak memory of a train step,

    state       = params + optimizer state, every seed (exact: shapes of the abstract init)
    updates     = 2 x params (gradients, and the optimizer's updates)
    activations = 4 bytes x seeds x batch x time x layers x directions x (gates + 2) x hidden
                  (what backprop through time keeps per step: the gate pre-activations, the cell
                  state and the output of every layer)

and refuses one whose estimate exceeds the memory available: on CPU the host's (every device of a
CPU mesh holds its own replica of the state), on an accelerator the first device's limit (the
state is replicated, the batch split across the devices).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from rnnlab import models
from rnnlab.errors import ConfigError

_GIB = 2.0 ** 30


def _tree_bytes(tree: Any) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def host_available_bytes() -> int:
  """MemAvailable of /proc/meminfo (memory the OS can hand out without swapping), or the physical
  memory where that file does not exist."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def estimate(trainer: Any) -> dict[str, int]:
  """Bytes of the parts of a train step's peak ({"state", "updates", "activations"}), per process
  for the whole batch (before splitting it over devices)."""
  config = trainer.config
  abstract = trainer.abstract_state()  # traced, not allocated: cheap at any size
  batch = jax.eval_shape(lambda key: trainer.task.sample(key, config.train.batch_size),
                         jax.random.PRNGKey(0))
  time_steps = max([x.shape[1] for x in jax.tree.leaves(batch) if x.ndim >= 2] or [1])
  model = config.model
  gates = models.make_cell(model.cell, model.to_dict()).num_gates
  directions = 2 if model.bidirectional else 1
  activations = (4 * config.train.num_seeds * config.train.batch_size * time_steps
                 * model.num_layers * directions * (gates + 2) * model.hidden_size)
  return {"state": _tree_bytes(abstract), "updates": 2 * _tree_bytes(abstract.params),
          "activations": activations}


def check(trainer: Any, available: int | None = None) -> None:
  """Raises ConfigError if `trainer`'s config cannot fit in memory, naming what to lower."""
  parts = estimate(trainer)
  devices = trainer.mesh.devices.reshape(-1)
  replicated = parts["state"] + parts["updates"]
  if devices[0].platform == "cpu":
    need = replicated * len(devices) + parts["activations"]
    where = "on this host"
    if available is None:
      available = host_available_bytes()
  else:
    need = replicated + parts["activations"] // len(devices)
    where = f"on {devices[0].device_kind}"
    if available is None:
      stats = devices[0].memory_stats() or {}
      if "bytes_limit" not in stats:
        return  # the backend does not say: nothing to compare with
      available = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
  if need > available:
    m, t = trainer.config.model, trainer.config.train
    raise ConfigError(
        f"this config needs about {need / _GIB:.1f} GiB (parameters and optimizer state "
        f"{replicated / _GIB:.1f} GiB, activations {parts['activations'] / _GIB:.1f} GiB) but "
        f"{available / _GIB:.1f} GiB is available {where}; lower config.model.hidden_size "
        f"(now {m.hidden_size}), config.model.num_layers ({m.num_layers}), "
        f"config.train.num_seeds ({t.num_seeds}) or config.train.batch_size ({t.batch_size})")
