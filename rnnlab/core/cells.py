"""Recurrent cells as pure functions.

A cell is an immutable record of pure functions on ONE unbatched example:

    params = cell.init(key, input_size, hidden_size)     # dict of arrays
    carry = cell.initial_carry(hidden_size)              # zeros
    carry, y = cell.step(params, carry, x_t)             # x_t: [input], y: [hidden]

Batching is `jax.vmap`; running over time is `rnnlab.core.recurrent.scan`. Each classic cell's
math after the matmuls is its gate block (`vanilla_gates`, `lstm_gates`, `gru_gates`): functions of
arrays [..., features] that work on one example [H] and on a batch [B, H] alike, called by the
cell's `step` and by the fused batched layer (`rnnlab.core.fused`), so the equations below are
written once. Weights are stored for
`x @ W` (shape [in, out]); gate blocks are laid out in PyTorch's order so that a PyTorch
`weight_ih_l0` is `w_i.T` (see `rnnlab.interop.torch_weights`).

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

import functools
import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

# linear_cells builds on base, not on this module, so importing it here (for the registry) is
# not a cycle.
from rnnlab.core import linear_cells
from rnnlab.core.base import Array, Cell, Params, check_sizes, input_kernel, zeros_carry


class LSTMState(NamedTuple):
  """LSTM carry, named so (h, c) can never be swapped by accident. Each: [hidden]."""

  h: Array
  c: Array


class LSTMGates(NamedTuple):
  """The LSTM's activated gates, each [..., H]: what its hand-written backward reads."""

  i: Array
  f: Array
  g: Array
  o: Array


class GRUGates(NamedTuple):
  """The reset-after GRU's activated gates and hn = h_{t-1} W_hn + b_hn, each [..., H]."""

  r: Array
  z: Array
  n: Array
  hn: Array


# ----------------------------------------------------------------------------- initialisers

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
  check_sizes(input_size, hidden_size)
  k_i, k_h = jax.random.split(key)
  return {
      "w_i": input_kernel(k_i, input_size, num_gates * hidden_size, input_init),
      "w_h": _recurrent_kernel(k_h, hidden_size, num_gates, recurrent_init, recurrent_scale),
      "b": jnp.zeros((num_gates * hidden_size,), jnp.float32),
  }


# ----------------------------------------------------------------------------- vanilla

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def vanilla_gates(pre: Array, activation: str = "tanh") -> Array:
  """The vanilla gate block. pre: [..., H] = x W_i + h W_h + b -> h_t: [..., H]."""
  return _ACTIVATIONS[activation](pre)


def vanilla_step(params: Params, h: Array, x: Array, activation: str = "tanh") -> tuple[Array, Array]:
  """h_t = act(x W_i + h W_h + b). x: [input], h: [H] -> (h_t, h_t)."""
  h = vanilla_gates(x @ params["w_i"] + h @ params["w_h"] + params["b"], activation)
  return h, h


def make_vanilla(activation: str = "tanh", input_init: str = "glorot",
                 recurrent_init: str = "orthogonal", recurrent_scale: float = 1.0,
                 name: str = "vanilla") -> Cell:
  """Elman cell; see the module docstring for the equations."""
  if activation not in _ACTIVATIONS:
    raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
  init = functools.partial(_init_fused, num_gates=1, input_init=input_init,
                           recurrent_init=recurrent_init, recurrent_scale=recurrent_scale)
  return Cell(name, lambda key, i, h: init(key, i, h), zeros_carry,
              functools.partial(vanilla_step, activation=activation), 1,
              (("activation", activation), ("input_init", input_init),
               ("recurrent_init", recurrent_init), ("recurrent_scale", recurrent_scale)),
              fused_kind=activation)


# ----------------------------------------------------------------------------- LSTM

def lstm_gates(pre: Array, c: Array) -> tuple[LSTMState, LSTMGates]:
  """The LSTM gate block, gates (i, f, g, o).

  pre: [..., 4H] = x W_i + h_{t-1} W_h + b; c: [..., H] = c_{t-1}.
  Returns (LSTMState(h_t, c_t), the activated gates), each [..., H].
  """
  zi, zf, zg, zo = jnp.split(pre, 4, axis=-1)
  gates = LSTMGates(jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo))
  c = gates.f * c + gates.i * gates.g
  return LSTMState(gates.o * jnp.tanh(c), c), gates


def lstm_step(params: Params, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
  """One LSTM step, gates (i, f, g, o). x: [input], carry.h/c: [H] -> (LSTMState, h_t)."""
  carry, _ = lstm_gates(x @ params["w_i"] + carry.h @ params["w_h"] + params["b"], carry.c)
  return carry, carry.h


def _lstm_carry(hidden_size: int, dtype: Any = jnp.float32) -> LSTMState:
  return LSTMState(zeros_carry(hidden_size, dtype), zeros_carry(hidden_size, dtype))


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
               ("init", init), ("chrono_t_max", chrono_t_max)),
              fused_kind="lstm")


# ----------------------------------------------------------------------------- GRU

def gru_gates(x_pre: Array, h_pre: Array, h: Array, b_hn: Array) -> tuple[Array, GRUGates]:
  """The reset-after GRU gate block, gates (r, z, n).

  x_pre: [..., 3H] = x W_i + b; h_pre: [..., 3H] = h_{t-1} W_h; h: [..., H] = h_{t-1};
  b_hn: [H]. Returns (h_t, the activated gates and hn), each [..., H].
  """
  H = h.shape[-1]
  rz = jax.nn.sigmoid(x_pre[..., :2 * H] + h_pre[..., :2 * H])
  r, z = rz[..., :H], rz[..., H:]
  hn = h_pre[..., 2 * H:] + b_hn
  n = jnp.tanh(x_pre[..., 2 * H:] + r * hn)
  return _gru_blend(z, n, h), GRUGates(r, z, n, hn)


def _gru_blend(z: Array, n: Array, h: Array) -> Array:
  """h_t = (1 - z) n + z h_{t-1}: both GRU forms end here."""
  return (1.0 - z) * n + z * h


def gru_step(params: Params, h: Array, x: Array, reset_after: bool = True) -> tuple[Array, Array]:
  """One GRU step, gates (r, z, n). x: [input], h: [H] -> (h_t, h_t)."""
  xi = x @ params["w_i"] + params["b"]
  if reset_after:
    h, _ = gru_gates(xi, h @ params["w_h"], h, params["b_hn"])
    return h, h
  # Cho et al.: the reset multiplies h before its matmul, so n's pre-activation needs r first.
  H = h.shape[-1]
  rz = jax.nn.sigmoid(xi[..., :2 * H] + h @ params["w_h"][:, :2 * H])
  r, z = rz[..., :H], rz[..., H:]
  n = jnp.tanh(xi[..., 2 * H:] + (r * h) @ params["w_h"][:, 2 * H:])
  h = _gru_blend(z, n, h)
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
  return Cell("gru", init_fn, zeros_carry, functools.partial(gru_step, reset_after=reset_after), 3,
              (("input_init", input_init), ("recurrent_init", recurrent_init),
               ("recurrent_scale", recurrent_scale), ("reset_after", reset_after),
               ("init", init), ("chrono_t_max", chrono_t_max)),
              fused_kind="gru" if reset_after else None)   # fused runs the reset-after form only


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
    **linear_cells.FACTORIES,
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
  """Adds a cell factory to the registry (for new cells defined outside rnnlab.core)."""
  _REGISTRY[name] = factory


def accepted_options(name: str) -> list[str]:
  """The keyword options the factory of cell `name` accepts."""
  get(name)  # unknown name -> the listing error
  return list(inspect.signature(_REGISTRY[name]).parameters)

