"""Timing tools of the benchmark harness: interleaved medians, the machine's matmul peak, FLOPs,
and what the report says about the machine (CPU model, load average).

Every comparison is timed in interleaved rounds (each function called once per round,
`block_until_ready` inside), and the median over rounds is reported, so background load hits the
contenders alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rnnlab.core import cells


def interleaved_rounds(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
                       ) -> dict[str, list[float]]:
  """Wall milliseconds of each fn in each of `repeats` rounds that call every fn once in turn
  (after `warmup` calls of each): [repeats] per fn, round k of every fn side by side."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  samples: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      samples[name].append(1e3 * (time.perf_counter() - t0))
  return samples


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2
                ) -> dict[str, float]:
  """Median wall milliseconds of each fn, timed in rounds that call every fn once in turn."""
  return {k: statistics.median(v) for k, v in interleaved_rounds(fns, repeats, warmup).items()}


def matmul_peak_gflops(repeats: int, n: int = 2048) -> float:
  """float32 GFLOP/s of a large jnp matmul (median over repeats)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  ms = interleaved({"mm": lambda: f(a).block_until_ready()}, repeats)["mm"]
  return 2.0 * n ** 3 / (ms * 1e-3) / 1e9


def recurrent_flops(cell: str, shape: tuple[int, int, int, int]) -> float:
  """FLOPs of the recurrent layer's forward + backward matmuls: 2 B T (I + H) G H * 3."""
  b, t, i, h = shape
  return 2.0 * b * t * (i + h) * cells.get(cell).num_gates * h * 3



def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def load_average() -> str:
  """The 1, 5 and 15 minute load averages, or "n/a"."""
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"

