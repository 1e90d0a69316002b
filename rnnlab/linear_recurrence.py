"""The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, sequentially or in parallel over time.

This is the runner behind the parallel-in-time cells (`rnnlab.parallel_cells`: minGRU, minLSTM,
LRU): their state update is linear in h with coefficients that depend only on the inputs, so the
whole sequence of states follows from the per-step pairs (a_t, b_t) alone.

Two methods give the same numbers (up to float rounding):
  * "sequential": `jax.lax.scan`, T dependent steps, O(T) work;
  * "associative": `jax.lax.associative_scan` over the pairs (a_t, b_t) with the composition
      (a_1, b_1) then (a_2, b_2)  =  (a_2 a_1, a_2 b_1 + b_2),
    O(log T) dependent levels, about twice the work.
  * "auto" picks one from the backend and the (static) length, see `choose_method`.

Padding and direction follow `rnnlab.recurrent.scan` exactly: steps t >= length become the identity
(a_t = 1, b_t = 0), so the state is frozen there; their outputs are zero and their gradients are
exactly zero. `reverse=True` runs from step length - 1 down to 0 (the padding at the end is crossed
first, as identities, so the initial state meets the last REAL step first) and returns the states in
the original time order.

Timings behind "auto" (2025-06-11; machine: 2 CPU cores, shared with other jobs; jax 0.10.2 CPU;
float32, hidden 128, batch 64 (vmap), real a and b; fwd+bwd = `jax.grad` of a sum of the states
wrt a and b, jitted; median of 5 after warm-up; reproduce with `python -m rnnlab.linear_recurrence`):

    T       sequential   associative
    100       TODO ms       TODO ms
    1024      TODO ms       TODO ms
    4096      TODO ms       TODO ms

CPU: TODO. GPU/TPU were not measured here (no accelerator on this machine); "auto" uses the
associative scan there, the usual choice on parallel hardware, and that default is unmeasured.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array

METHODS = ("sequential", "associative", "auto")

# On CPU, "auto" uses the associative scan from this many steps on (see the module docstring).
CPU_ASSOCIATIVE_FROM = 1 << 62


@dataclasses.dataclass(frozen=True)
class LinearForm:
  """How a cell whose update is linear in its state runs as a linear recurrence.

  Attributes:
    coefficients: (params, xs [time, input]) -> (a, b), each [time, *state] (a may be any shape
      that broadcasts to b's), with the cell's update state_t = a_t * state_{t-1} + b_t. The carry
      of the cell IS this state.
    readout: (params, states [time, *state], xs [time, input]) -> ys [time, hidden].
    method: the method `rnnlab.recurrent.scan` uses for this cell when its `method` argument is
      None; None keeps the step-by-step masked scan.
  """

  coefficients: Callable[[Any, Array], tuple[Array, Array]]
  readout: Callable[[Any, Array, Array], Array]
  method: str | None = None


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def choose_method(time_steps: int, backend: str | None = None) -> str:
  """The method "auto" stands for at `time_steps` steps on `backend` (None: JAX's default)."""
  backend = jax.default_backend() if backend is None else backend
  if backend == "cpu":
    return "associative" if time_steps >= CPU_ASSOCIATIVE_FROM else "sequential"
  return "associative"


def _compose(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
  """The affine map h -> a h + b of `earlier` followed by that of `later`."""
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


def _valid_mask(time_steps: int, length: Array | int, ndim: int) -> Array:
  """[time, 1, ...] booleans, True at the real steps."""
  valid = jnp.arange(time_steps) < length
  return valid.reshape((time_steps,) + (1,) * (ndim - 1))


def linear_scan(a: Array, b: Array, h0: Array | None = None, length: Array | int | None = None,
                reverse: bool = False, method: str = "auto") -> tuple[Array, Array]:
  """h_t = a_t * h_{t-1} + b_t over one sequence (elementwise products).

  Args:
    a: [time, *state], or any shape broadcasting to b's (e.g. [*state] for a constant a).
    b: [time, *state].
    h0: [*state], the state before the first step read (None: zeros).
    length: scalar number of real steps, may be traced (None: all `time` steps are real).
    reverse: read the real steps from length - 1 down to 0.
    method: "sequential", "associative" or "auto".

  Returns:
    (final state [*state], the state after the last real step read (h0 if length is 0);
     hs: [time, *state] in the original time order, exactly zero at the padded steps).
  """
  check_method(method)
  dtype = jnp.result_type(a, b) if h0 is None else jnp.result_type(a, b, h0)
  b = b.astype(dtype)
  a = jnp.broadcast_to(a, b.shape).astype(dtype)
  time_steps = b.shape[0]
  h0 = jnp.zeros(b.shape[1:], dtype) if h0 is None else jnp.asarray(h0, dtype)
  if time_steps == 0:
    return h0, b
  if method == "auto":
    method = choose_method(time_steps)

  valid = None
  if length is not None:
    valid = _valid_mask(time_steps, length, b.ndim)
    a = jnp.where(valid, a, jnp.ones_like(a))
    b = jnp.where(valid, b, jnp.zeros_like(b))

  if method == "sequential":
    def body(h, ab):
      h = ab[0] * h + ab[1]
      return h, h
    h_final, hs = jax.lax.scan(body, h0, (a, b), reverse=reverse)
  else:
    # Fold h0 into the first step visited; padded steps are identities, so for reverse the step
    # visited first (T - 1) hands h0 on unchanged to step length - 1.
    first, last = (time_steps - 1, 0) if reverse else (0, time_steps - 1)
    b = b.at[first].add(a[first] * h0)
    _, hs = jax.lax.associative_scan(_compose, (a, b), reverse=reverse)
    h_final = hs[last]

  if valid is not None:
    hs = jnp.where(valid, hs, jnp.zeros_like(hs))
  return h_final, hs


def scan_cell(cell: Any, params: Any, xs: Array, length: Array | int | None = None,
              reverse: bool = False, carry: Any = None, method: str = "auto") -> tuple[Any, Array]:
  """`rnnlab.recurrent.scan` for a cell with a `LinearForm` (`cell.linear`), one sequence.

  xs: [time, input]; carry: [*state] (None: zeros) -> (final carry [*state], ys [time, hidden]),
  ys exactly zero at padded steps.
  """
  form: LinearForm = cell.linear
  a, b = form.coefficients(params, xs)
  h_final, hs = linear_scan(a, b, carry, length, reverse, method)
  ys = form.readout(params, hs, xs)
  if length is not None:
    ys = jnp.where(_valid_mask(xs.shape[0], length, ys.ndim), ys, jnp.zeros_like(ys))
  return h_final, ys


# ----------------------------------------------------------------------------- measurements

def benchmark(time_steps: tuple[int, ...] = (100, 1024, 4096), hidden: int = 128, batch: int = 64,
              repeats: int = 5) -> dict[tuple[int, str], float]:
  """Median seconds of one jitted fwd+bwd of `linear_scan` (batched by vmap), per (T, method)."""
  results = {}
  for t in time_steps:
    ka, kb = jax.random.split(jax.random.PRNGKey(t))
    a = jax.random.uniform(ka, (batch, t, hidden), jnp.float32, 0.5, 1.0)
    b = jax.random.normal(kb, (batch, t, hidden), jnp.float32)
    for method in ("sequential", "associative"):
      def loss(a, b, method=method):
        run = jax.vmap(lambda a, b: linear_scan(a, b, method=method)[1])
        return jnp.sum(run(a, b))
      fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
      jax.block_until_ready(fn(a, b))
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(a, b))
        times.append(time.perf_counter() - start)
      results[(t, method)] = sorted(times)[len(times) // 2]
  return results


if __name__ == "__main__":
  print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
  for (t, method), seconds in benchmark().items():
    print(f"T={t:5d}  {method:12s} {1e3 * seconds:9.2f} ms")
