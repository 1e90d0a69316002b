"""The diagonal linear recurrence h_t = a_t * h_{t-1} + b_t, sequentially or in parallel over time.

This is the runner behind the parallel-in-time cells (`rnnlab.core.linear_cells`: minGRU, minLSTM,
LRU): their state update is linear in h with coefficients that depend only on the inputs, so the
whole sequence of states follows from the per-step pairs (a_t, b_t) alone.

Two methods give the same numbers (up to float rounding):
  * "sequential": `jax.lax.scan`, T dependent steps, O(T) work;
  * "associative": `jax.lax.associative_scan` over the pairs (a_t, b_t) with the composition
      (a_1, b_1) then (a_2, b_2)  =  (a_2 a_1, a_2 b_1 + b_2),
    O(log T) dependent levels, about twice the work. Its gradient is written by hand (a
    `jax.custom_vjp`): the adjoint of a linear recurrence is the same recurrence run the other way,
        lambda_t = g_t + a_{t+1} lambda_{t+1},   dL/db_t = lambda_t,   dL/da_t = lambda_t h_{t-1}
    (g_t: the cotangent of h_t; no complex conjugates, as JAX's transposes), so the backward pass
    is one more associative scan instead of the transpose of every level, which halves the
    compile time and the memory.
  * "auto" picks one from the backend and the (static) length, see `choose_method`.

Padding and direction follow `rnnlab.core.recurrent.scan` exactly: steps t >= length become the identity
(a_t = 1, b_t = 0), so the state is frozen there; their outputs are zero and their gradients are
exactly zero. `reverse=True` runs from step length - 1 down to 0 (the padding at the end is crossed
first, as identities, so the initial state meets the last REAL step first) and returns the states in
the original time order.

"auto" is "sequential" on CPU (with two cores there is no parallel hardware for the associative
scan's log T levels to use, and it does about twice the work) and "associative" on accelerators;
the timings behind that choice are in experiments/results/benchmark.md ("Notes: the linear
recurrence's scan methods").
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rnnlab.core.mask import sequence_mask

Array = jax.Array

METHODS = ("sequential", "associative", "auto")


@dataclasses.dataclass(frozen=True)
class LinearForm:
  """How a cell whose update is linear in its state runs as a linear recurrence.

  Attributes:
    coefficients: (params, xs [time, input]) -> (a, b), each [time, *state] (a may be any shape
      that broadcasts to b's), with the cell's update state_t = a_t * state_{t-1} + b_t. The carry
      of the cell IS this state.
    readout: (params, states [time, *state], xs [time, input]) -> ys [time, hidden].
    method: the method `rnnlab.core.recurrent.scan` uses for this cell when its `method` argument is
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
  del time_steps  # on CPU sequential won at every measured length (module docstring)
  return "sequential" if backend == "cpu" else "associative"


def _compose(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
  """The affine map h -> a h + b of `earlier` followed by that of `later`."""
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _associative_states(a: Array, b: Array, reverse: bool) -> Array:
  """States of h_t = a_t h_{t-1} + b_t from a zero state. a, b: [time, *state] -> [time, *state]."""
  return jax.lax.associative_scan(_compose, (a, b), reverse=reverse)[1]


def _associative_states_fwd(a: Array, b: Array, reverse: bool) -> tuple[Array, tuple[Array, Array]]:
  hs = _associative_states(a, b, reverse)
  return hs, (a, hs)


def _associative_states_bwd(reverse: bool, residuals: tuple[Array, Array],
                            g: Array) -> tuple[Array, Array]:
  a, hs = residuals
  zero = jnp.zeros_like(a[:1])
  # "next" and "previous" in reading order: forward reads t = 0 .. T-1, reverse T-1 .. 0.
  if reverse:
    a_next, h_prev = jnp.concatenate([zero, a[:-1]]), jnp.concatenate([hs[1:], zero])
  else:
    a_next, h_prev = jnp.concatenate([a[1:], zero]), jnp.concatenate([zero, hs[:-1]])
  lam = _associative_states(a_next, g, not reverse)
  return lam * h_prev, lam


_associative_states.defvjp(_associative_states_fwd, _associative_states_bwd)


def _valid_mask(time_steps: int, length: Array | int, ndim: int) -> Array:
  """[time, 1, ...] booleans, True at the real steps."""
  valid = sequence_mask(length, time_steps)
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
  b = jnp.asarray(b, dtype)
  a = jnp.broadcast_to(jnp.asarray(a, dtype), b.shape)
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
    hs = _associative_states(a, b, reverse)
    h_final = hs[last]

  if valid is not None:
    hs = jnp.where(valid, hs, jnp.zeros_like(hs))
  return h_final, hs


def scan_cell(cell: Any, params: Any, xs: Array, length: Array | int | None = None,
              reverse: bool = False, carry: Any = None, method: str = "auto") -> tuple[Any, Array]:
  """`rnnlab.core.recurrent.scan` for a cell with a `LinearForm` (`cell.linear`), one sequence.

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


# ----------------------------------------------------------------------------- batched, in place

def _index(x: Array, t: Array) -> Array:
  return jax.lax.dynamic_index_in_dim(x, t, axis=1, keepdims=False)


def _write(buf: Array, value: Array, t: Array) -> Array:
  return jax.lax.dynamic_update_index_in_dim(buf, value, t, axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batched_sequential_states(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
  """States of h_t = a_t * h_{t-1} + b_t over a batch, batch-major, one sequential scan.

  a, b: [batch, time, *state] (padded steps already identities: a = 1, b = 0); h0:
  [batch, *state]; reverse: visit t = T-1 ... 0. Returns hs: [batch, time, *state], the state
  after each step, in the original time order.

  Each step reads a_t, b_t and writes h_t in place in the batch-major arrays (no [B, T] <-> [T, B]
  transposes), and the backward pass is written by hand: the adjoint recurrence run the other
  way, lambda_t = g_t + a_next lambda_next, then dL/da_t = lambda_t h_prev, dL/db_t = lambda_t and
  dL/dh0 = a_first lambda_first, all but the recurrence outside the loop (faster than autodiff
  of the vmapped per-sequence scan on XLA:CPU; experiments/results/benchmark.md has the timing).
  """
  return _sequential_forward(a, b, h0, reverse)


def _sequential_forward(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
  def body(carry, t):
    h, hs = carry
    h = _index(a, t) * h + _index(b, t)
    return (h, _write(hs, h, t)), None

  (_, hs), _ = jax.lax.scan(body, (h0, jnp.zeros_like(b)), jnp.arange(b.shape[1]),
                            reverse=reverse)
  return hs


def _batched_fwd(a, b, h0, reverse):
  hs = _sequential_forward(a, b, h0, reverse)
  return hs, (a, hs, h0)


def _batched_bwd(reverse, saved, g):
  a, hs, h0 = saved

  def body(carry, t):
    acc, lams = carry            # acc = a_next * lambda_next (zero before the last step)
    lam = _index(g, t) + acc
    return (_index(a, t) * lam, _write(lams, lam, t)), None

  (dh0, lams), _ = jax.lax.scan(body, (jnp.zeros_like(h0), jnp.zeros_like(g)),
                                jnp.arange(g.shape[1]), reverse=not reverse)
  first = h0[:, None]
  h_prev = (jnp.concatenate([hs[:, 1:], first], axis=1) if reverse
            else jnp.concatenate([first, hs[:, :-1]], axis=1))
  return lams * h_prev, lams, dh0


batched_sequential_states.defvjp(_batched_fwd, _batched_bwd)


def batched_scan_cell(cell: Any, params: Any, xs: Array, lengths: Array | None = None,
                      reverse: bool = False, carry: Any = None, method: str = "auto"
                      ) -> tuple[Any, Array]:
  """`scan_cell` over a batch: xs [batch, time, input], lengths [batch] or None, carry
  [batch, *state] or None -> (final carries [batch, *state], ys [batch, time, hidden]).

  The sequential method runs `batched_sequential_states` over the whole batch; the associative
  one runs `scan_cell` per sequence under `jax.vmap`. Same numbers and padding semantics.
  """
  check_method(method)
  time_steps = xs.shape[1]
  if method == "auto":
    method = choose_method(time_steps)
  if method != "sequential" or time_steps == 0:
    run = lambda x, n, c: scan_cell(cell, params, x, n, reverse, c, method)
    return jax.vmap(run, in_axes=(0, None if lengths is None else 0,
                                  None if carry is None else 0))(xs, lengths, carry)
  form: LinearForm = cell.linear
  a, b = jax.vmap(form.coefficients, in_axes=(None, 0))(params, xs)
  dtype = jnp.result_type(a, b) if carry is None else jnp.result_type(a, b, carry)
  b = jnp.asarray(b, dtype)
  a = jnp.asarray(a, dtype)
  a = a.reshape(a.shape[:1] + (1,) * (b.ndim - a.ndim) + a.shape[1:])  # [B, *state]: constant in t
  a = jnp.broadcast_to(a, b.shape)
  h0 = jnp.zeros((b.shape[0],) + b.shape[2:], dtype) if carry is None else jnp.asarray(carry, dtype)
  valid = None
  if lengths is not None:
    valid = sequence_mask(lengths, time_steps).reshape(
        (b.shape[0], time_steps) + (1,) * (b.ndim - 2))
    a = jnp.where(valid, a, jnp.ones_like(a))
    b = jnp.where(valid, b, jnp.zeros_like(b))
  hs = batched_sequential_states(a, b, h0, reverse)
  # Padded steps are identities, so the state after the last step visited is the final one.
  h_final = hs[:, 0] if reverse else hs[:, -1]
  if valid is not None:
    hs = jnp.where(valid, hs, jnp.zeros_like(hs))
  ys = jax.vmap(form.readout, in_axes=(None, 0, 0))(params, hs, xs)
  if valid is not None:
    ys = jnp.where(valid.reshape(valid.shape[:2] + (1,) * (ys.ndim - 2)), ys, jnp.zeros_like(ys))
  return h_final, ys


# ----------------------------------------------------------------------------- measurements

def benchmark(time_steps: tuple[int, ...] = (100, 1024, 4096), hidden: int = 128, batch: int = 64,
              repeats: int = 7) -> dict[tuple[int, str], float]:
  """Seconds of one jitted fwd+bwd of `linear_scan` (batched by vmap), per (T, method).

  The methods are timed alternately and the minimum over `repeats` calls is reported: on a
  machine shared with other jobs the minimum is the least disturbed measurement.
  """
  results = {}
  methods = ("sequential", "associative")
  for t in time_steps:
    ka, kb = jax.random.split(jax.random.PRNGKey(t))
    a = jax.random.uniform(ka, (batch, t, hidden), jnp.float32, 0.5, 1.0)
    b = jax.random.normal(kb, (batch, t, hidden), jnp.float32)
    fns = {}
    for method in methods:
      def loss(a, b, method=method):
        run = jax.vmap(lambda a, b: linear_scan(a, b, method=method)[1])
        return jnp.sum(run(a, b))
      fns[method] = jax.jit(jax.grad(loss, argnums=(0, 1)))
      jax.block_until_ready(fns[method](a, b))
    times = {m: [] for m in methods}
    for _ in range(repeats):
      for method in methods:
        start = time.perf_counter()
        jax.block_until_ready(fns[method](a, b))
        times[method].append(time.perf_counter() - start)
    for method in methods:
      results[(t, method)] = min(times[method])
  return results
