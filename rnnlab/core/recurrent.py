"""Running cells over time: a masked `jax.lax.scan`, bidirectional and stacked layers.

Everything here works on ONE unbatched sequence `xs: [time, features]`; batch with `jax.vmap`
(`batched_scan` does exactly `jax.vmap(scan, in_axes=(None, None, 0, 0))`).

Padding semantics (`length` = number of real steps; steps t >= length are padding):
  * the carry is frozen at padding: the final carry is the one after the last real step;
  * outputs at padding are exactly zero, and gradients at padded inputs are exactly zero;
  * `reverse=True` reads the real steps last-to-first, starting at step length - 1 (never at the
    padding), and returns outputs in the original time order;
  * length 0 returns the initial carry and all-zero outputs; lengths may be traced, in any order.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from rnnlab.core import layers, linear_recurrence
from rnnlab.core.base import Cell, Params, default_carry
from rnnlab.core.mask import sequence_mask

Array = jax.Array


def choose_runner(cell: Cell, method: str | None = None,
                  fused: bool = False) -> tuple[str, str | None]:
  """Which runner runs `cell`: the one dispatch of `scan` and `rnnlab.core.fused.layer`.

  Args:
    cell: the cell.
    method: None (the cell's own default, `cell.linear.method`), "sequential", "associative" or
      "auto" (see `scan`).
    fused: the caller has the fused batched layer, which runs cells with a `cell.fused_kind`.

  Returns:
    ("linear", method) for a cell with a linear form and a method (`linear_recurrence`);
    ("fused", None) when `fused` and the cell names its fused kind; else ("scan", None), the
    step-by-step masked scan.

  Raises:
    ValueError: an unknown method, or "associative" for a cell without a linear form.
  """
  if method is None and cell.linear is not None:
    method = cell.linear.method
  if method is not None:
    linear_recurrence.check_method(method)
    if cell.linear is not None:
      return "linear", method
    if method == "associative":
      raise ValueError(f"cell {cell.name!r} has no linear form; method='associative' needs one")
  if fused and cell.fused_kind is not None:
    return "fused", None
  return "scan", None


def scan(cell: Cell, params: Params, xs: Array, length: Array | int | None = None,
         reverse: bool = False, carry: Any = None,
         method: str | None = None) -> tuple[Any, Array]:
  """Runs `cell` over one sequence.

  Args:
    cell: the cell.
    params: its parameters.
    xs: [time, input].
    length: scalar number of real steps (None: all `time` steps are real).
    reverse: read the real steps from last to first.
    carry: initial carry (None: `cell.initial_carry` in the result dtype of params and xs).
    method: for a cell with a linear form (`cell.linear`: minGRU, minLSTM, LRU), "sequential",
      "associative" (parallel over time) or "auto" runs it with `rnnlab.core.linear_recurrence`, same
      semantics; None: the cell's own default (`cell.linear.method`), else this step-by-step scan.
      Other cells take None, "sequential" or "auto" (this scan); "associative" is an error.

  Returns:
    (final carry, ys: [time, hidden]) with ys in the original time order.
  """
  if xs.ndim != 2:
    raise ValueError(f"scan takes one unbatched sequence [time, features]; got shape {xs.shape}. "
                     "Use batched_scan (or jax.vmap) for batches.")
  if carry is None:
    carry = default_carry(cell, params, xs)
  runner, method = choose_runner(cell, method)
  if runner == "linear":
    return linear_recurrence.scan_cell(cell, params, xs, length, reverse, carry, method)

  if length is None:
    def body(c, x):
      return cell.step(params, c, x)
    return jax.lax.scan(body, carry, xs, reverse=reverse)

  # A reversed lax.scan visits t = T-1 .. 0: the padded steps (t >= length) come first and are
  # skipped with the carry still initial, so the first real update is at t = length - 1.
  valid = sequence_mask(length, xs.shape[0])

  def masked_body(c, inputs):
    x, ok = inputs
    new_c, y = cell.step(params, c, x)
    c = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_c, c)
    return c, jnp.where(ok, y, jnp.zeros_like(y))

  return jax.lax.scan(masked_body, carry, (xs, valid), reverse=reverse)


def batched_scan(cell: Cell, params: Params, xs: Array, lengths: Array | None = None,
                 reverse: bool = False, carry: Any = None) -> tuple[Any, Array]:
  """`scan` vmapped over a batch. xs: [batch, time, input], lengths: [batch] or None.

  Returns (carry with a leading [batch] axis, ys: [batch, time, hidden]).
  """
  carry_axis = None if carry is None else 0
  if lengths is None:
    fn = lambda x, c: scan(cell, params, x, None, reverse, c)
    return jax.vmap(fn, in_axes=(0, carry_axis))(xs, carry)
  fn = lambda x, n, c: scan(cell, params, x, n, reverse, c)
  return jax.vmap(fn, in_axes=(0, 0, carry_axis))(xs, lengths, carry)


def bidirectional(cell: Cell, params_fwd: Params, params_bwd: Params, xs: Array,
                  length: Array | int | None = None) -> tuple[tuple[Any, Any], Array]:
  """Forward and reverse scans of one sequence, outputs concatenated per step.

  xs: [time, input] -> ((carry_fwd, carry_bwd), ys: [time, 2 * hidden]); padded steps are zero.
  """
  return layers.layer(functools.partial(scan, cell), (params_fwd, params_bwd), xs, length)


def layer(cell: Cell, layer_params: Sequence[Params], xs: Array,
          length: Array | int | None = None) -> tuple[tuple[Any, ...], Array]:
  """One uni- (1 params dict) or bidirectional (2 dicts: fwd, bwd) layer over one sequence.

  xs: [time, input] -> (tuple of final carries, ys: [time, directions * hidden]).
  """
  return layers.layer(functools.partial(scan, cell), layer_params, xs, length)


def stack(cell: Cell, stack_params: Sequence[Sequence[Params]], xs: Array,
          length: Array | int | None = None, dropout_rate: float = 0.0,
          dropout_key: Array | None = None) -> tuple[list[tuple[Any, ...]], Array]:
  """Stacked layers over one sequence, each reading the previous layer's outputs.

  Args:
    stack_params: per layer, a sequence of 1 (unidirectional) or 2 (bidirectional) params dicts.
    xs: [time, input].
    dropout_rate: dropout between layers (not after the last); needs `dropout_key` when > 0.

  Returns:
    (per-layer tuples of final carries, ys of the last layer: [time, directions * hidden]).
  """
  drop = layers.dropout_between_layers(dropout_rate, dropout_key, batched=False)
  return layers.stack_layers(functools.partial(scan, cell), stack_params, xs, length, drop)
