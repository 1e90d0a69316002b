"""The `Cell` record and what every cell module shares: initialisers and the default carry.

Both `rnnlab.core.cells` (vanilla, LSTM, GRU and the registry) and `rnnlab.core.linear_cells`
(minGRU, minLSTM, LRU) build `Cell`s from these, so neither imports the other's internals.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class Cell:
  """A recurrent cell: a name, its options and three pure functions.

  Attributes:
    name: registry name ("vanilla", "lstm", ...).
    init: (key, input_size, hidden_size) -> params.
    initial_carry: (hidden_size, dtype=float32) -> zero carry for one example; `dtype` is the real
      dtype of the computation (a complex carry takes the matching complex dtype).
    step: (params, carry, x_t [input]) -> (carry, y_t [hidden]).
    num_gates: number of [H]-sized blocks in the fused kernels (the one source of gate counts).
    options: the keyword options the cell was built with (for saving and display).
    linear: None, or for a cell whose update is linear in its state (minGRU, minLSTM, LRU) a
      `rnnlab.core.linear_recurrence.LinearForm`: lets `recurrent.scan` run it in parallel over time.
    hidden_size_of: params -> hidden size, for `recurrent.scan`'s default carry (None: the rows of
      params["w_h"]).
    fused_kind: which implementation of `rnnlab.core.fused.layer` runs this cell ("lstm", "gru",
      "tanh", "relu"), or None for the reference path. Set by the factory that wrote `step`, so a
      cell rebuilt with another step (`dataclasses.replace(cell, step=..., fused_kind=None)`)
      says so explicitly instead of being recognised by function identity.
  """

  name: str
  init: Callable[[Array, int, int], Params]
  initial_carry: Callable[..., Any]
  step: Callable[[Params, Any, Array], tuple[Any, Array]]
  num_gates: int
  options: tuple[tuple[str, Any], ...] = ()
  linear: Any = None
  hidden_size_of: Callable[[Params], int] | None = None
  fused_kind: str | None = None


def default_carry(cell: Cell, params: Params, xs: Array) -> Any:
  """The zero carry of one example, in the dtype of the computation.

  params: the cell's params; xs: [time, input] (any leading axes; only the dtype is read). The
  dtype is `jnp.result_type` of params and inputs, so float64 weights (converted ones, or x64
  runs) get a float64 (LRU: complex128) carry instead of one that `lax.scan` refuses.
  """
  hidden = (cell.hidden_size_of(params) if cell.hidden_size_of is not None
            else params["w_h"].shape[0])
  dtype = jnp.result_type(*jax.tree_util.tree_leaves(params), xs)
  return cell.initial_carry(hidden, dtype)


def zeros_carry(hidden_size: int, dtype: Any = jnp.float32) -> Array:
  """[hidden] zeros: the carry of every single-state real cell."""
  return jnp.zeros((hidden_size,), dtype)


def check_sizes(input_size: int, hidden_size: int) -> None:
  if int(input_size) < 1 or int(hidden_size) < 1:
    raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")


def input_kernel(key: Array, input_size: int, out: int, kind: str) -> Array:
  """[input, out] input weights: Glorot uniform ("glorot") or LeCun normal ("lecun")."""
  if kind == "glorot":
    return jax.nn.initializers.glorot_uniform()(key, (input_size, out), jnp.float32)
  if kind == "lecun":
    return jax.nn.initializers.lecun_normal()(key, (input_size, out), jnp.float32)
  raise ValueError(f"input_init must be 'glorot' or 'lecun', got {kind!r}")
