"""Parallel-in-time cells: minGRU, minLSTM and LRU, whose state update is linear in the state.

Each is an ordinary `rnnlab.core.base.Cell` (registered in `rnnlab.core.cells` as "mingru", "minlstm",
"lru"): `step` runs one
unbatched example, so the masked `rnnlab.core.recurrent.scan` runs them unchanged. Each also carries a
`LinearForm` (`cell.linear`): the coefficients (a_t, b_t) of h_t = a_t * h_{t-1} + b_t, computed
for all steps at once from the inputs, and a readout from the states to the outputs, so that
`recurrent.scan(..., method="sequential" | "associative" | "auto")` runs them with
`rnnlab.core.linear_recurrence` (an associative scan is parallel over time). The factory option
`scan_method` sets the method `recurrent.scan` uses for the cell when none is passed, so models,
`bidirectional` and `stack` can use the parallel runner through the config alone.

Weights are stored for `x @ W` ([in, out]); H = hidden_size.

minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), params {w_i: [input, 2H], b: [2H]}, blocks
(z, h~), i.e. W_z = w_i[:, :H], W_h = w_i[:, H:], b_z = b[:H], b_h = b[H:]; carry h: [H]:
    z_t  = sigmoid(x_t W_z + b_z)
    h~_t = x_t W_h + b_h
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t;   y_t = h_t
  linear form: a_t = 1 - z_t, b_t = z_t * h~_t.

minLSTM (same paper), params {w_i: [input, 3H], b: [3H]}, blocks (f, i, h~); carry h: [H]:
    f_t = sigmoid(x_t W_f + b_f),   i_t = sigmoid(x_t W_i + b_i),   h~_t = x_t W_h + b_h
    f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t;   y_t = h_t
  linear form: a_t = f'_t, b_t = i'_t * h~_t. (f' is computed as sigmoid(log f - log i), which is
  the same number but stays finite when both gates underflow.)

LRU (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences"), state size
N = H (the hidden size), params
    {nu_log: [N], theta_log: [N], gamma_log: [N], B_re, B_im: [input, N], C_re, C_im: [N, H],
     D: [input, H]};
carry h: complex64 [N] (zeros initially; complex128 when params or inputs are float64):
    lambda = exp(-exp(nu_log) + i exp(theta_log))          (complex diagonal, |lambda| < 1)
    h_t = lambda * h_{t-1} + exp(gamma_log) * (x_t (B_re + i B_im))
    y_t = Re(h_t (C_re + i C_im)) + x_t D
  linear form: a_t = lambda, b_t = exp(gamma_log) * (x_t B).
  Init (options r_min=0.9, r_max=0.999, max_phase=2 pi): with u1, u2 ~ U[0, 1),
    nu_log = log(-log(u1 (r_max^2 - r_min^2) + r_min^2) / 2)   (|lambda|^2 uniform on the ring)
    theta_log = log(max_phase u2)                             (phase uniform on [0, max_phase])
    gamma_log = log(sqrt(1 - |lambda|^2)), a trained parameter as in the paper, initialised to the
      normalisation that keeps E|h|^2 independent of |lambda| for white inputs;
    B_re, B_im ~ N(0, 1 / (2 input)); C_re, C_im ~ N(0, 1 / N);
    D ~ N(0, 1 / input) (the paper's D is diagonal N(0, 1) with input = H; a full matrix here,
      since input and hidden sizes differ, with the same output variance).

minGRU and minLSTM init: input weights Glorot uniform (`input_init="glorot"`) or LeCun normal
(`"lecun"`), biases zero except minLSTM's forget block `forget_bias` (1.0, as rnnlab's LSTM).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.core.base import Array, Cell, Params, check_sizes, input_kernel, zeros_carry
from rnnlab.core.linear_recurrence import LinearForm, check_method


def _check_scan_method(scan_method: str | None) -> None:
  if scan_method is not None:
    check_method(scan_method)


def _identity_readout(params: Params, hs: Array, xs: Array) -> Array:
  del params, xs
  return hs


def _linear_step(coefficients, readout, params: Params, h: Array, x: Array) -> tuple[Array, Array]:
  """One step h = a h + b, y = readout(h), from a cell's linear form. x: [input], h: [*state]."""
  a, b = coefficients(params, x)
  h = a * h + b
  return h, readout(params, h, x)


def _fused_init(key: Array, input_size: int, hidden_size: int, *, num_gates: int,
                input_init: str, biases: tuple[float, ...]) -> Params:
  check_sizes(input_size, hidden_size)
  return {
      "w_i": input_kernel(key, input_size, num_gates * hidden_size, input_init),
      "b": jnp.concatenate([jnp.full((hidden_size,), v, jnp.float32) for v in biases]),
  }


def _fused_hidden_size(params: Params, num_gates: int) -> int:
  return params["b"].shape[0] // num_gates


# ----------------------------------------------------------------------------- minGRU

def mingru_coefficients(params: Params, xs: Array) -> tuple[Array, Array]:
  """xs: [..., input] -> (a = 1 - z, b = z * h~), each [..., H]."""
  pre = xs @ params["w_i"] + params["b"]
  z_pre, h_tilde = jnp.split(pre, 2, axis=-1)
  z = jax.nn.sigmoid(z_pre)  # one sigmoid pass over [..., H]: 1 - z for a
  return 1.0 - z, z * h_tilde


def make_mingru(input_init: str = "glorot", scan_method: str | None = None) -> Cell:
  """minGRU; see the module docstring. `scan_method`: default method of `recurrent.scan`."""
  _check_scan_method(scan_method)
  init = functools.partial(_fused_init, num_gates=2, input_init=input_init, biases=(0.0, 0.0))
  return Cell("mingru", init, zeros_carry,
              functools.partial(_linear_step, mingru_coefficients, _identity_readout), 2,
              (("input_init", input_init), ("scan_method", scan_method)),
              linear=LinearForm(mingru_coefficients, _identity_readout, scan_method),
              hidden_size_of=functools.partial(_fused_hidden_size, num_gates=2))


# ----------------------------------------------------------------------------- minLSTM

def minlstm_coefficients(params: Params, xs: Array) -> tuple[Array, Array]:
  """xs: [..., input] -> (a = f', b = i' * h~), each [..., H]."""
  pre = xs @ params["w_i"] + params["b"]
  f_pre, i_pre, h_tilde = jnp.split(pre, 3, axis=-1)
  # f' = f / (f + i) = sigmoid(log f - log i); i' = 1 - f' = sigmoid(log i - log f).
  d = jax.nn.log_sigmoid(f_pre) - jax.nn.log_sigmoid(i_pre)
  return jax.nn.sigmoid(d), jax.nn.sigmoid(-d) * h_tilde


def make_minlstm(input_init: str = "glorot", forget_bias: float = 1.0,
                 scan_method: str | None = None) -> Cell:
  """minLSTM; see the module docstring. `scan_method`: default method of `recurrent.scan`."""
  _check_scan_method(scan_method)
  init = functools.partial(_fused_init, num_gates=3, input_init=input_init,
                           biases=(forget_bias, 0.0, 0.0))
  return Cell("minlstm", init, zeros_carry,
              functools.partial(_linear_step, minlstm_coefficients, _identity_readout), 3,
              (("input_init", input_init), ("forget_bias", forget_bias),
               ("scan_method", scan_method)),
              linear=LinearForm(minlstm_coefficients, _identity_readout, scan_method),
              hidden_size_of=functools.partial(_fused_hidden_size, num_gates=3))


# ----------------------------------------------------------------------------- LRU

def lru_lambda(params: Params) -> Array:
  """The complex diagonal lambda = exp(-exp(nu_log) + i exp(theta_log)): [N] complex64."""
  return jnp.exp(jax.lax.complex(-jnp.exp(params["nu_log"]), jnp.exp(params["theta_log"])))


def lru_coefficients(params: Params, xs: Array) -> tuple[Array, Array]:
  """xs: [..., input] -> (a = lambda: [N], b = exp(gamma_log) * (x B): [..., N]), complex64."""
  gamma = jnp.exp(params["gamma_log"])
  bx = jax.lax.complex(xs @ params["B_re"], xs @ params["B_im"])
  return lru_lambda(params), gamma * bx


def lru_readout(params: Params, hs: Array, xs: Array) -> Array:
  """Re(h C) + x D. hs: [..., N] complex, xs: [..., input] -> [..., H] float32."""
  return (jnp.real(hs) @ params["C_re"] - jnp.imag(hs) @ params["C_im"]) + xs @ params["D"]


def _lru_init(key: Array, input_size: int, hidden_size: int, *, r_min: float, r_max: float,
              max_phase: float) -> Params:
  check_sizes(input_size, hidden_size)
  n = hidden_size
  k_u1, k_u2, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
  # u ~ U(0, 1) away from 0 so the logs below stay finite.
  tiny = jnp.finfo(jnp.float32).tiny
  u1 = jax.random.uniform(k_u1, (n,), jnp.float32, tiny, 1.0)
  u2 = jax.random.uniform(k_u2, (n,), jnp.float32, tiny, 1.0)
  nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
  theta_log = jnp.log(max_phase * u2)
  modulus = jnp.exp(-jnp.exp(nu_log))
  normal = lambda k, shape, std: std * jax.random.normal(k, shape, jnp.float32)
  return {
      "nu_log": nu_log,
      "theta_log": theta_log,
      "gamma_log": 0.5 * jnp.log1p(-modulus ** 2),
      "B_re": normal(k_bre, (input_size, n), 1.0 / math.sqrt(2 * input_size)),
      "B_im": normal(k_bim, (input_size, n), 1.0 / math.sqrt(2 * input_size)),
      "C_re": normal(k_cre, (n, hidden_size), 1.0 / math.sqrt(n)),
      "C_im": normal(k_cim, (n, hidden_size), 1.0 / math.sqrt(n)),
      "D": normal(k_d, (input_size, hidden_size), 1.0 / math.sqrt(input_size)),
  }


def _lru_carry(hidden_size: int, dtype: Any = jnp.float32) -> Array:
  """[hidden] complex zeros: complex64 for float32 work, complex128 for float64."""
  return jnp.zeros((hidden_size,), jnp.result_type(dtype, jnp.complex64))


def _lru_hidden_size(params: Params) -> int:
  return params["C_re"].shape[1]


def make_lru(r_min: float = 0.9, r_max: float = 0.999, max_phase: float = 2 * math.pi,
             scan_method: str | None = None) -> Cell:
  """LRU; see the module docstring. The carry is complex64 [hidden]."""
  if not 0.0 <= r_min <= r_max < 1.0:
    raise ValueError(f"LRU needs 0 <= r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}")
  if not max_phase > 0.0:
    raise ValueError(f"LRU needs max_phase > 0, got {max_phase}")
  _check_scan_method(scan_method)
  init = functools.partial(_lru_init, r_min=r_min, r_max=r_max, max_phase=max_phase)
  return Cell("lru", init, _lru_carry,
              functools.partial(_linear_step, lru_coefficients, lru_readout), 1,
              (("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase),
               ("scan_method", scan_method)),
              linear=LinearForm(lru_coefficients, lru_readout, scan_method),
              hidden_size_of=_lru_hidden_size)


# Registered by `rnnlab.core.cells` (this module does not import it: no cycle).
FACTORIES: dict[str, Any] = {"mingru": make_mingru, "minlstm": make_minlstm, "lru": make_lru}
