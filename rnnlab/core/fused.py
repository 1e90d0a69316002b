"""A fast batched recurrent layer: one scan over a whole batch, with a hand-written backward pass.

`layer(cell, params, xs, lengths, reverse, carry)` computes exactly what `recurrent.batched_scan`
computes (the same padding semantics: carry frozen and outputs zero at padded steps, zero gradients
at padded inputs, `reverse` starting at the last real step, length 0 allowed), for the vanilla
(tanh or relu), LSTM and GRU ("reset after") cells, the ones whose `Cell.fused_kind` is set; `stack`
is the batched `recurrent.stack` (both stacks are `rnnlab.core.layers.stack_layers`). Which runner
runs a cell is `recurrent.choose_runner`: a cell with a linear form and a scan method (minGRU,
minLSTM, LRU) runs `linear_recurrence.batched_scan_cell`; any other cell falls back to
`recurrent.batched_scan`. The forward activations are the cells' own gate blocks
(`cells.lstm_gates`, `cells.gru_gates`, `cells.vanilla_gates`); only the backward's derivative
formulas below are written here.
`models.RecurrentEncoder` runs on it.

What it does differently from JAX's autodiff of `jax.vmap(recurrent.scan)`:

  * a `jax.custom_vjp`: the forward scan saves the activated gates (each its own time-major
    [T, B, H] array), so the backward scan evaluates no sigmoid and only one tanh (LSTM), and
    carries only the state cotangents (and, for the LSTM, c_t);
  * the backward scan does one [B, H] x [H, H] matmul per gate and step (dh_{t-1}) and emits the
    per-step gate cotangents dG_t; the weight gradients are then one contraction over all
    N = time * batch rows per gate, outside the loop:
        [dW_i; dW_h; db][:, k] = [x_t, h_{t-1}, 1]^T dG_k,      dx_t = sum_k dG_k W_i[:, k]^T
    (autodiff accumulates dW_h, dW_i and db with small matmuls inside every step);
  * inputs and outputs stay batch-major and are read/written one step at a time in place, with
    no [B, T, .] <-> [T, B, .] transposes.
The layout choices were measured on XLA:CPU (experiments/results/benchmark.md has the numbers and
what did not help).

A per-example `jax.vmap` of a custom VJP would materialise per-example weight gradients, so the
layer takes the batch as an explicit axis. It may itself be vmapped (e.g. over seeds).

Backward equations (m_t: the step is real; s' = s(1 - s) for a sigmoid output s, t' = 1 - t^2
for a tanh output t; dh, dc: cotangents of the carry after step t; dy_t of the output):
  LSTM, saved (i, f, g, o) activated, c_t and c_{t-1}:
    dh~ = dh + dy_t;  dc~ = dc + dh~ o tanh'(c_t)
    dG = [dc~ g i', dc~ c_{t-1} f', dc~ i g', dh~ tanh(c_t) o']
    dh_{t-1} = dG W_h^T,  dc_{t-1} = dc~ f                                   (if m_t)
  GRU, saved (r, z, n) activated and hn = h_{t-1} W_hn + b_hn:
    dh~ = dh + dy_t;  dn = dh~ (1 - z) n';  dz = dh~ (h_{t-1} - n) z';  dr = dn hn r'
    dG_x = [dr, dz, dn],  dG_h = [dr, dz, dn r],  db_hn = sum dn r
    dh_{t-1} = dG_h W_h^T + dh~ z                                            (if m_t)
  Vanilla: dG = dh~ act'(h_t);  dh_{t-1} = dG W_h^T                          (if m_t)
  At padded steps (not m_t): dG = 0 and the carry cotangent passes through unchanged.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from rnnlab.core import cells, layers, linear_recurrence, recurrent
from rnnlab.core.base import Cell, Params, default_carry
from rnnlab.core.cells import LSTMState
from rnnlab.core.mask import sequence_mask

Array = jax.Array


# ----------------------------------------------------------------------------- cell kinds

def kind_of(cell: Cell) -> str | None:
  """Which fused implementation runs `cell`: "lstm", "gru", "tanh", "relu" or None (unsupported).

  Read from the cell's own `fused_kind`, set by the factory that wrote its step: options that only
  change initialisation (forget bias, chrono, recurrent init) keep the fast path, and a cell
  rebuilt with another step must say which kind (if any) runs it.
  """
  return cell.fused_kind


def supports(cell: Cell) -> bool:
  """True when `layer` runs `cell` with the fused implementation (else it falls back)."""
  return recurrent.choose_runner(cell, fused=True)[0] == "fused"


# ----------------------------------------------------------------------------- the layer

def layer(cell: Cell, params: Params, xs: Array, lengths: Array | None = None,
          reverse: bool = False, carry: Any = None) -> tuple[Any, Array]:
  """`recurrent.batched_scan`, fused over the batch.

  Args:
    cell: the cell (unsupported cells run `recurrent.batched_scan`).
    params: its parameters (shared by the batch).
    xs: [batch, time, input].
    lengths: [batch] real steps, or None (all steps real).
    reverse: read the real steps last-to-first.
    carry: initial carry with a leading [batch] axis, or None (zeros in the result dtype of
      params and xs).

  Returns:
    (final carry with a leading [batch] axis, ys: [batch, time, hidden]).
  """
  runner, method = recurrent.choose_runner(cell, fused=True)
  if xs.ndim != 3:
    runner = "scan"   # batched_scan reports the shape
  if runner == "linear":
    return linear_recurrence.batched_scan_cell(cell, params, xs, lengths, reverse, carry, method)
  if runner == "scan":
    return recurrent.batched_scan(cell, params, xs, lengths, reverse, carry)
  kind = cell.fused_kind
  if carry is None:
    carry = jax.tree_util.tree_map(lambda z: jnp.broadcast_to(z, (xs.shape[0],) + z.shape),
                                   default_carry(cell, params, xs))
  if kind == "lstm":
    h0, c0 = carry.h, carry.c
  else:
    h0, c0 = carry, None
  mask = None if lengths is None else sequence_mask(lengths, xs.shape[1]).T   # [T, B]
  h, c, ys = _fused(kind, cell.num_gates, reverse, params, xs, mask, h0, c0)
  final = LSTMState(h, c) if kind == "lstm" else h
  return final, ys


def stack(cell: Cell, stack_params: Sequence[Sequence[Params]], xs: Array,
          lengths: Array | None = None, dropout_rate: float = 0.0,
          dropout_keys: Array | None = None) -> tuple[list[tuple[Any, ...]], Array]:
  """`jax.vmap(recurrent.stack)` over a batch, each layer run by `layer`.

  Args:
    stack_params: per layer, 1 (unidirectional) or 2 (forward, backward) params dicts.
    xs: [batch, time, input]; lengths: [batch] or None.
    dropout_rate: dropout between layers; needs `dropout_keys` ([batch] keys, one per example,
      drawn exactly as `recurrent.stack` draws them for that example) when > 0.

  Returns:
    (per-layer tuples of final carries, each with a leading [batch] axis;
     ys of the last layer: [batch, time, directions * hidden]).
  """
  drop = layers.dropout_between_layers(dropout_rate, dropout_keys, batched=True)
  return layers.stack_layers(functools.partial(layer, cell), stack_params, xs, lengths, drop)


def _select(mask_t: Array | None, new: Array, old: Array) -> Array:
  return new if mask_t is None else jnp.where(mask_t[:, None], new, old)


def _blocks(a: Array, n: int) -> list[Array]:
  """[..., n * H] -> n arrays [..., H] (gate blocks)."""
  H = a.shape[-1] // n
  return [a[..., k * H:(k + 1) * H] for k in range(n)]


def _forward(kind: str, reverse: bool, params: Params, xs: Array, mask: Array | None, h0: Array,
             c0: Array | None, save: bool):
  """The forward scan. xs: [B, T, I] (batch-major), mask: [T, B] or None.

  Returns (h_T, c_T, ys [B, T, H], residuals: a tuple of time-major [T, B, H] arrays, or () if
  not `save`). Layouts, as measured on XLA:CPU: the inputs and outputs stay batch-major, read and
  written one [B, .] step at a time in place (no [B, T, H] <-> [T, B, H] transposes, which cost
  more than the strided accesses); the residuals are time-major, and each is its own array (not
  one packed [B, k * H] block): the backward's pointwise fusions run several times faster on
  separate arrays than on column slices of a packed one.
  """
  w_i, w_h, b = params["w_i"], params["w_h"], params["b"]
  B, T, _ = xs.shape
  H = w_h.shape[0]

  def body(state, inputs):
    h, c, ys = state
    t, m = inputs
    xw = jax.lax.dynamic_index_in_dim(xs, t, axis=1, keepdims=False) @ w_i
    # The activations come from the cell's own gate block; only the layout is this module's.
    if kind == "lstm":
      (h_new, c_new), gates = cells.lstm_gates(xw + h @ w_h + b, c)
      res = (h, c) + tuple(gates)
    elif kind == "gru":
      h_new, gates = cells.gru_gates(xw + b, h @ w_h, h, params["b_hn"])
      c_new = None
      res = (h,) + tuple(gates)
    else:
      h_new = cells.vanilla_gates(xw + h @ w_h + b, kind)
      c_new = None
      res = (h,)
    y = h_new if m is None else jnp.where(m[:, None], h_new, 0.0)
    ys = jax.lax.dynamic_update_index_in_dim(ys, y, t, axis=1)
    h_new = _select(m, h_new, h)
    if c_new is not None:
      c_new = _select(m, c_new, c)
    return (h_new, c_new, ys), (res if save else ())

  ys = jnp.zeros((B, T, H), h0.dtype)   # the carry's dtype: float64 for float64 weights
  (h, c, ys), res = jax.lax.scan(body, (h0, c0, ys), (jnp.arange(T), mask), reverse=reverse)
  return h, c, ys, res


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused(kind: str, num_gates: int, reverse: bool, params: Params, xs: Array,
           mask: Array | None, h0: Array, c0: Array | None):
  h, c, ys, _ = _forward(kind, reverse, params, xs, mask, h0, c0, save=False)
  return h, c, ys


def _fused_fwd(kind, num_gates, reverse, params, xs, mask, h0, c0):
  """Forward with residuals: the saved state (h0 unused by the backward, kept for clarity)."""
  h, c, ys, res = _forward(kind, reverse, params, xs, mask, h0, c0, save=True)
  return (h, c, ys), (params, xs, mask, h0, c, ys, res)


def _fused_bwd(kind, num_gates, reverse, saved, cts):
  """Backward scan (opposite time order) emitting per-gate cotangents, then big matmuls.

  cts: cotangents of (h_T [B, H], c_T [B, H] or None, ys [B, T, H]).
  """
  params, xs, mask, h0, c_T, ys, res = saved
  dh_T, dc_T, dys = cts
  w_h = params["w_h"]
  w_h_t = _blocks(w_h, num_gates)   # dh_{t-1} = sum_k dG_k @ w_h[:, k].T

  def back(dg: Array, w: Array) -> Array:
    return jax.lax.dot_general(dg, w, (((1,), (1,)), ((), ())))   # dg @ w.T

  def body(state, inputs):
    dh, dc, c_t = state
    t, m, r = inputs
    dh_tot = dh + jax.lax.dynamic_index_in_dim(dys, t, axis=1, keepdims=False)
    direct, dc_prev, c_prev = None, None, None
    if kind == "lstm":
      c_prev, i, f, g, o = r
      tc = jnp.tanh(c_t)
      dct = dc + dh_tot * o * (1.0 - tc * tc)
      d_x = [dct * g * i * (1.0 - i), dct * c_prev * f * (1.0 - f), dct * i * (1.0 - g * g),
             dh_tot * tc * o * (1.0 - o)]
      dc_prev = dct * f
    elif kind == "gru":
      h_p, rr, z, n, hn = r
      dn = dh_tot * (1.0 - z) * (1.0 - n * n)
      dz = dh_tot * (h_p - n) * z * (1.0 - z)
      dr = dn * hn * rr * (1.0 - rr)
      d_x = [dr, dz, dn, dn * rr]   # the last: cotangent of hn (h-side n gate, and b_hn)
      direct = dh_tot * z
    else:
      y = jax.lax.dynamic_index_in_dim(ys, t, axis=1, keepdims=False)
      deriv = (1.0 - y * y) if kind == "tanh" else (y > 0).astype(y.dtype)
      d_x = [dh_tot * deriv]
    if m is not None:
      # Selects, not products with the mask: padded steps give exact zeros even if their
      # (unused) activations are not finite.
      keep = m[:, None]
      d_x = [jnp.where(keep, d, 0.0) for d in d_x]
    d_h = d_x[:2] + d_x[3:] if kind == "gru" else d_x
    dh_prev = back(d_h[0], w_h_t[0])
    for d, w in zip(d_h[1:], w_h_t[1:]):
      dh_prev = dh_prev + back(d, w)
    if direct is not None:
      dh_prev = dh_prev + direct
    if m is not None:
      dh_prev = jnp.where(keep, dh_prev, dh)
      if dc_prev is not None:
        dc_prev = jnp.where(keep, dc_prev, dc)
    return (dh_prev, dc_prev, c_prev), tuple(d_x)

  steps = jnp.arange(dys.shape[1])
  if kind == "lstm":
    if dc_T is None:
      dc_T = jnp.zeros_like(dh_T)
    scanned = (steps, mask, res[1:])   # h_{t-1} (res[0]) is only needed after the scan
    init = (dh_T, dc_T, c_T)
  else:
    scanned = (steps, mask, res if kind == "gru" else ())
    init = (dh_T, None, None)
  (dh0, dc0, _), d_x = jax.lax.scan(body, init, scanned, reverse=not reverse)

  grads, dxs, dmask = _weight_grads(kind, num_gates, params, xs, mask, res[0], d_x)
  return grads, dxs, dmask, dh0, dc0


def _weight_grads(kind: str, num_gates: int, params: Params, xs: Array, mask: Array | None,
                  h_prev: Array, d_x: tuple[Array, ...]) -> tuple[Params, Array, None]:
  """Weight, bias and input gradients from the per-step gate cotangents: large matmuls.

  xs: [B, T, I]; mask: [T, B] or None; h_prev: [T, B, H] (h_{t-1}); d_x: per-gate cotangents
  [T, B, H] (GRU: r, z, n of the x side, then the h-side n cotangent). Returns (grads like params,
  dxs [B, T, I], None for the mask).

  With N = time * batch rows and M = [x_t, h_{t-1}, 1] stacked over rows ([N, I + H + 1]), one
  contraction over the rows per gate block k gives M^T dG_k = [dW_i[:, k]; dW_h[:, k]; db_k].
  dx_t = sum_k dG_k W_i[:, k]^T.
  """
  B, T, I = xs.shape
  H = params["w_h"].shape[0]
  N = T * B
  xs = jnp.swapaxes(xs, 0, 1)   # time-major rows, as the cotangents
  if mask is not None:   # padded inputs may hold anything (even NaN): keep them out of dW_i
    xs = jnp.where(mask[..., None], xs, 0.0)
  rows = lambda a: a.reshape(N, a.shape[-1])
  x_rows = rows(xs)
  h_rows = rows(h_prev)
  ones = jnp.ones((N, 1), xs.dtype)
  # Contracting the leading (row) axis: XLA:CPU measured faster this way than transposing the
  # operands to [features, N] first (the transposing concatenation alone cost more).
  tdot = lambda a, g: jax.lax.dot_general(a, g, (((0,), (0,)), ((), ())))   # a.T @ g
  g_x = [rows(d) for d in d_x[:num_gates]]
  full = jnp.concatenate([x_rows, h_rows, ones], axis=1)
  dw_i, dw_h, db = [], [], []
  for g in (g_x[:2] if kind == "gru" else g_x):
    p = tdot(full, g)
    dw_i.append(p[:I]); dw_h.append(p[I:I + H]); db.append(p[I + H])
  grads = {}
  if kind == "gru":   # the n gate: x-side cotangent dn, h-side (and b_hn) cotangent dn * r
    p = tdot(jnp.concatenate([x_rows, ones], axis=1), g_x[2])
    dw_i.append(p[:I]); db.append(p[I])
    dhn = rows(d_x[3])
    dw_h.append(tdot(h_rows, dhn))
    grads["b_hn"] = jnp.sum(dhn, axis=0)
  grads.update(w_i=jnp.concatenate(dw_i, axis=1), w_h=jnp.concatenate(dw_h, axis=1),
               b=jnp.concatenate(db))
  w_i = _blocks(params["w_i"], num_gates)
  dxs = sum(jax.lax.dot_general(g, w, (((1,), (1,)), ((), ()))) for g, w in zip(g_x, w_i))
  grads = {k: grads.get(k, jnp.zeros_like(v)) for k, v in params.items()}
  return grads, jnp.swapaxes(dxs.reshape(T, B, I), 0, 1), None


_fused.defvjp(_fused_fwd, _fused_bwd)
