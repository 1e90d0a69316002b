"""Recurrent cells as pure functions.

A cell is an immutable record of pure functions on ONE unbatched example:

    params = cell.init(key, input_size, hidden_size)     # dict of arrays
    carry = cell.initial_carry(hidden_size)              # zeros
    carry, y = cell.step(params, carry, x_t)             # x_t: [input], y: [hidden]

Batching is `jax.vmap`; running over time is `rnnlab.core.recurrent.scan`. Weights are stored for
`x @ W` (shape [in, out]); gate blocks are laid out in PyTorch's order so that a PyTorch
`weight_ih_l0` is `w_i.T` (see `rnnlab.interop.convert`-style mappings in the tests).

Vanilla (Elman) cell, params {w_i: [input, H], w_h: [H, H], b: [H]}:
    h_t = act(x_t W_i + h_{t-1} W_h + b),   act = tanh (default) or relu;   y_t = h_t

LSTM cell (gates i, f, g, o), params {w_i: [input, 4H], w_h: [H, 4H], b: [4H]}; carry LSTMState(h, c):
    [i, f, g, o] = x_t W_i + h_{t-1} W_h + b
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t);   y_t = h_t
  (PyTorch's two bias sets b_ih + b_hh fold into the one b.)

GRU cell (gates r, z, n), "reset after" form of PyTorch/cuDNN/flax.linen (default),
params {w_i: [input, 3H], w_h: [H, 3H], b: [3H], b_hn: [H]}:
    [r, z]  = sigmoid(x_t W_i[:, :2H] + h_{t-1} W_h[:, :2H] + b[:2H])
    n       = tanh(x_t W_i[:, 2H:] + b[2H:] + r * (h_{t-1} W_h[:, 2H:] + b_hn))
    h_t     = (1 - z) * n + z * h_{t-1};   y_t = h_t
  With `reset_after=False` (Cho et al. 2014) there is no b_hn and
    n       = tanh(x_t W_i[:, 2H:] + (r * h_{t-1}) W_h[:, 2H:] + b[2H:]).

Initialisation (every choice is a keyword of `get`):
  * input weights: Glorot uniform (`input_init="glorot"`) or LeCun normal (`"lecun"`);
  * recurrent weights: orthogonal PER GATE (each [H, H] block is orthogonal, as flax.linen's
    LSTMCell; one orthogonal matrix over the fused kernel leaves each block with singular values
    near 0.5), or `"identity"` (IRNN), or `"glorot"`; multiplied by `recurrent_scale`;
  * biases zero; LSTM forget-gate bias `forget_bias` (1.0);
  * `init="chrono"` (Tallec & Ollivier 2018): LSTM forget bias log(U[1, chrono_t_max - 1]) and input
    bias its negative; GRU update-gate bias log(U[1, chrono_t_max - 1]) (z keeps the old state).

`irnn` (Le, Jaitly & Hinton 2015) is the vanilla cell with relu, identity recurrent weights and
zero biases.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Array]


class LSTMState(NamedTuple):
  """LSTM carry, named so (h, c) can never be swapped by accident. Each: [hidden]."""

  h: Array
  c: Array


@dataclasses.dataclass(frozen=True)
class Cell:
  """A recurrent cell: a name, its options and three pure functions.

  Attributes:
    name: registry name ("vanilla", "lstm", ...).
    init: (key, input_size, hidden_size) -> params.
    initial_carry: (hidden_size) -> zero carry for one example.
    step: (params, carry, x_t [input]) -> (carry, y_t [hidden]).
    num_gates: number of [H]-sized blocks in the fused kernels.
    options: the keyword options the cell was built with (for saving and display).
    linear: None, or for a cell whose update is linear in its state (minGRU, minLSTM, LRU) a
      `rnnlab.core.linear_recurrence.LinearForm`: lets `recurrent.scan` run it in parallel over time.
    hidden_size_of: params -> hidden size, for `recurrent.scan`'s default carry (None: the rows of
      params["w_h"]).
  """

  name: str
  init: Callable[[Array, int, int], Params]
  initial_carry: Callable[[int], Any]
  step: Callable[[Params, Any, Array], tuple[Any, Array]]
  num_gates: int
  options: tuple[tuple[str, Any], ...] = ()
  linear: Any = None
  hidden_size_of: Callable[[Params], int] | None = None


# ----------------------------------------------------------------------------- initialisers

def _input_kernel(key: Array, input_size: int, out: int, kind: str) -> Array:
  if kind == "glorot":
    return jax.nn.initializers.glorot_uniform()(key, (input_size, out), jnp.float32)
  if kind == "lecun":
    return jax.nn.initializers.lecun_normal()(key, (input_size, out), jnp.float32)
  raise ValueError(f"input_init must be 'glorot' or 'lecun', got {kind!r}")


def _recurrent_kernel(key: Array, hidden: int, num_gates: int, kind: str, scale: float) -> Array:
  """[hidden, num_gates * hidden]; each gate's [hidden, hidden] block initialised on its own."""
  keys = jax.random.split(key, num_gates)
  if kind == "orthogonal":
    blocks = [jax.nn.initializers.orthogonal()(k, (hidden, hidden), jnp.float32) for k in keys]
  elif kind == "identity":
    blocks = [jnp.eye(hidden, dtype=jnp.float32) for _ in keys]
  elif kind == "glorot":
    blocks = [jax.nn.initializers.glorot_uniform()(k, (hidden, hidden), jnp.float32) for k in keys]
  else:
    raise ValueError(f"recurrent_init must be 'orthogonal', 'identity' or 'glorot', got {kind!r}")
  return scale * jnp.concatenate(blocks, axis=1)


def _chrono_bias(key: Array, hidden: int, t_max: float) -> Array:
  if t_max <= 2:
    raise ValueError(f"chrono_t_max must be > 2 (it bounds U[1, t_max - 1]), got {t_max}")
  return jnp.log(jax.random.uniform(key, (hidden,), jnp.float32, 1.0, t_max - 1.0))


def _init_fused(key: Array, input_size: int, hidden_size: int, num_gates: int, input_init: str,
                recurrent_init: str, recurrent_scale: float) -> Params:
  _check_sizes(input_size, hidden_size)
  k_i, k_h = jax.random.split(key)
  return {
      "w_i": _input_kernel(k_i, input_size, num_gates * hidden_size, input_init),
      "w_h": _recurrent_kernel(k_h, hidden_size, num_gates, recurrent_init, recurrent_scale),
      "b": jnp.zeros((num_gates * hidden_size,), jnp.float32),
  }


def _check_sizes(input_size: int, hidden_size: int) -> None:
  if int(input_size) < 1 or int(hidden_size) < 1:
    raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")


# ----------------------------------------------------------------------------- vanilla

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def vanilla_step(params: Params, h: Array, x: Array, activation: str = "tanh") -> tuple[Array, Array]:
  """h_t = act(x W_i + h W_h + b). x: [input], h: [H] -> (h_t, h_t)."""
  h = _ACTIVATIONS[activation](x @ params["w_i"] + h @ params["w_h"] + params["b"])
  return h, h


def _zeros_carry(hidden_size: int) -> Array:
  return jnp.zeros((hidden_size,), jnp.float32)


def make_vanilla(activation: str = "tanh", input_init: str = "glorot",
                 recurrent_init: str = "orthogonal", recurrent_scale: float = 1.0,
                 name: str = "vanilla") -> Cell:
  """Elman cell; see the module docstring for the equations."""
  if activation not in _ACTIVATIONS:
    raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
  init = functools.partial(_init_fused, num_gates=1, input_init=input_init,
                           recurrent_init=recurrent_init, recurrent_scale=recurrent_scale)
  return Cell(name, lambda key, i, h: init(key, i, h), _zeros_carry,
              functools.partial(vanilla_step, activation=activation), 1,
              (("activation", activation), ("input_init", input_init),
               ("recurrent_init", recurrent_init), ("recurrent_scale", recurrent_scale)))


# ----------------------------------------------------------------------------- LSTM

def lstm_step(params: Params, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
  """One LSTM step, gates (i, f, g, o). x: [input], carry.h/c: [H] -> (LSTMState, h_t)."""
  gates = x @ params["w_i"] + carry.h @ params["w_h"] + params["b"]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return LSTMState(h, c), h


def _lstm_carry(hidden_size: int) -> LSTMState:
  return LSTMState(_zeros_carry(hidden_size), _zeros_carry(hidden_size))


def _lstm_init(key: Array, input_size: int, hidden_size: int, *, input_init: str,
               recurrent_init: str, recurrent_scale: float, forget_bias: float, init: str,
               chrono_t_max: float) -> Params:
  k_w, k_b = jax.random.split(key)
  params = _init_fused(k_w, input_size, hidden_size, 4, input_init, recurrent_init,
                       recurrent_scale)
  H = hidden_size
  if init == "chrono":
    b_f = _chrono_bias(k_b, H, chrono_t_max)
    params["b"] = params["b"].at[H:2 * H].set(b_f).at[:H].set(-b_f)
  else:
    params["b"] = params["b"].at[H:2 * H].set(forget_bias)
  return params


def make_lstm(input_init: str = "glorot", recurrent_init: str = "orthogonal",
              recurrent_scale: float = 1.0, forget_bias: float = 1.0, init: str = "standard",
              chrono_t_max: float = 100.0) -> Cell:
  """LSTM with PyTorch gate order (i, f, g, o); see the module docstring."""
  _check_init(init)
  init_fn = functools.partial(
      _lstm_init, input_init=input_init, recurrent_init=recurrent_init,
      recurrent_scale=recurrent_scale, forget_bias=forget_bias, init=init,
      chrono_t_max=chrono_t_max)
  return Cell("lstm", init_fn, _lstm_carry, lstm_step, 4,
              (("input_init", input_init), ("recurrent_init", recurrent_init),
               ("recurrent_scale", recurrent_scale), ("forget_bias", forget_bias),
               ("init", init), ("chrono_t_max", chrono_t_max)))


# ----------------------------------------------------------------------------- GRU

def gru_step(params: Params, h: Array, x: Array, reset_after: bool = True) -> tuple[Array, Array]:
  """One GRU step, gates (r, z, n). x: [input], h: [H] -> (h_t, h_t)."""
  H = h.shape[-1]
  xi = x @ params["w_i"] + params["b"]
  if reset_after:
    hh = h @ params["w_h"]
    rz = jax.nn.sigmoid(xi[..., :2 * H] + hh[..., :2 * H])
    r, z = rz[..., :H], rz[..., H:]
    n = jnp.tanh(xi[..., 2 * H:] + r * (hh[..., 2 * H:] + params["b_hn"]))
  else:
    rz = jax.nn.sigmoid(xi[..., :2 * H] + h @ params["w_h"][:, :2 * H])
    r, z = rz[..., :H], rz[..., H:]
    n = jnp.tanh(xi[..., 2 * H:] + (r * h) @ params["w_h"][:, 2 * H:])
  h = (1.0 - z) * n + z * h
  return h, h


def _gru_init(key: Array, input_size: int, hidden_size: int, *, input_init: str,
              recurrent_init: str, recurrent_scale: float, reset_after: bool, init: str,
              chrono_t_max: float) -> Params:
  k_w, k_b = jax.random.split(key)
  params = _init_fused(k_w, input_size, hidden_size, 3, input_init, recurrent_init,
                       recurrent_scale)
  H = hidden_size
  if init == "chrono":
    params["b"] = params["b"].at[H:2 * H].set(_chrono_bias(k_b, H, chrono_t_max))
  if reset_after:
    params["b_hn"] = jnp.zeros((H,), jnp.float32)
  return params


def make_gru(input_init: str = "glorot", recurrent_init: str = "orthogonal",
             recurrent_scale: float = 1.0, reset_after: bool = True, init: str = "standard",
             chrono_t_max: float = 100.0) -> Cell:
  """GRU with PyTorch gate order (r, z, n); see the module docstring."""
  _check_init(init)
  init_fn = functools.partial(
      _gru_init, input_init=input_init, recurrent_init=recurrent_init,
      recurrent_scale=recurrent_scale, reset_after=reset_after, init=init,
      chrono_t_max=chrono_t_max)
  return Cell("gru", init_fn, _zeros_carry, functools.partial(gru_step, reset_after=reset_after), 3,
              (("input_init", input_init), ("recurrent_init", recurrent_init),
               ("recurrent_scale", recurrent_scale), ("reset_after", reset_after),
               ("init", init), ("chrono_t_max", chrono_t_max)))


def _check_init(init: str) -> None:
  if init not in ("standard", "chrono"):
    raise ValueError(f"init must be 'standard' or 'chrono', got {init!r}")


# ----------------------------------------------------------------------------- registry

def make_irnn(input_init: str = "glorot", recurrent_scale: float = 1.0) -> Cell:
  """IRNN (Le et al. 2015): relu vanilla cell, identity recurrent weights, zero biases."""
  return make_vanilla(activation="relu", input_init=input_init, recurrent_init="identity",
                      recurrent_scale=recurrent_scale, name="irnn")


_REGISTRY: dict[str, Callable[..., Cell]] = {
    "vanilla": make_vanilla,
    "lstm": make_lstm,
    "gru": make_gru,
    "irnn": make_irnn,
}


def names() -> list[str]:
  """The registered cell names."""
  return sorted(_REGISTRY)


def get(name: str, **options: Any) -> Cell:
  """Returns the cell called `name`, built with `options` (see each `make_*`).

  Raises:
    ValueError: unknown name (the message lists the known ones) or unknown option.
  """
  if name not in _REGISTRY:
    raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(names())}")
  factory = _REGISTRY[name]
  try:
    return factory(**options)
  except TypeError as e:
    raise ValueError(f"bad option for cell {name!r}: {e}") from None


def register(name: str, factory: Callable[..., Cell]) -> None:
  """Adds a cell factory to the registry (for new cells defined outside this module)."""
  _REGISTRY[name] = factory


def accepted_options(name: str) -> list[str]:
  """The keyword options the factory of cell `name` accepts."""
  get(name)  # unknown name -> the listing error
  return list(inspect.signature(_REGISTRY[name]).parameters)


# Cells defined in their own modules register themselves on import (kept last: they import Cell).
from rnnlab.core import linear_cells as _parallel_cells  # noqa: E402,F401
