"""Weights between rnnlab and flax.linen's SimpleCell, LSTMCell / OptimizedLSTMCell and GRUCell.

One cell's params (`nn.RNN` nests them under "cell"; each entry a Dense) against rnnlab's
(`rnnlab.interop.layout`):
    SimpleCell:        i {kernel [in, H], bias [H]}, h {kernel [H, H]}
                       w_i = i.kernel, w_h = h.kernel, b = i.bias      (residual=True has no match)
    LSTMCell and OptimizedLSTMCell (same tree), gates g in (i, f, g, o):
                       i{g} {kernel [in, H]}, h{g} {kernel [H, H], bias [H]}
                       w_i = concat_g i{g}.kernel, w_h = concat_g h{g}.kernel,
                       b = concat_g h{g}.bias
    GRUCell, gates (r, z, n), reset-after:
                       ir, iz, in {kernel, bias}; hr, hz {kernel}; hn {kernel, bias}
                       b = concat(ir.bias, iz.bias, in.bias), b_hn = hn.bias
No bias is folded, so both round trips are exact. flax's LSTM carry is (c, h), rnnlab's is
LSTMState(h, c): use `carry_to_flax` / `carry_from_flax`, never a bare tuple. flax trees are jax
arrays both ways.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from rnnlab.core.cells import LSTMState
from rnnlab.interop import layout
from rnnlab.interop.layout import Array, Params

# flax names each gate's Dense after the gate, in rnnlab's (PyTorch's) gate order.
_GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
_CLASS = {"vanilla": "SimpleCell", "lstm": "LSTMCell", "gru": "GRUCell"}


def _dense(tree: Mapping[str, Any], name: str, cls: str, bias: bool) -> tuple[np.ndarray, ...]:
  """(kernel,) or (kernel, bias) of the Dense `name` of a flax cell's params."""
  if name not in tree:
    raise ValueError(f"flax {cls} params lack {name!r}; got keys {sorted(tree)}")
  wanted = ("kernel", "bias") if bias else ("kernel",)
  missing = [w for w in wanted if w not in tree[name]]
  if missing:
    raise ValueError(f"flax {cls} params {name!r} lack {missing}; got {sorted(tree[name])}")
  return tuple(layout.to_numpy(tree[name][w]) for w in wanted)


def from_flax(params: Mapping[str, Any], cell_name: str) -> Params:
  """One flax.linen cell's params -> rnnlab cell params.

  Args:
    params: the params of SimpleCell (cell_name "vanilla"/"irnn"), LSTMCell or OptimizedLSTMCell
      ("lstm"), or GRUCell ("gru"); wrappers {"params": ...} and nn.RNN's {"cell": ...} are
      stripped (for nn.Bidirectional pass its "forward_rnn" / "backward_rnn" subtree). Kernels
      [in, H] / [H, H], biases [H] (module docstring).
    cell_name: the rnnlab cell.

  Returns:
    rnnlab params: w_i [in, G*H], w_h [H, G*H], b [G*H] (+ b_hn [H] for GRU).
  """
  cell_layout, _ = layout.kind(cell_name)
  cls = _CLASS[cell_layout]
  tree = layout.unwrap(params, "params", "cell")
  if cell_layout == "vanilla":
    w_i, b = _dense(tree, "i", cls, True)
    (w_h,) = _dense(tree, "h", cls, False)
    out = {"w_i": w_i, "w_h": w_h, "b": b}
  elif cell_layout == "lstm":
    gates = _GATE_NAMES["lstm"]
    ins = [_dense(tree, f"i{g}", cls, False)[0] for g in gates]
    hs = [_dense(tree, f"h{g}", cls, True) for g in gates]
    out = {"w_i": np.concatenate(ins, axis=1), "w_h": np.concatenate([k for k, _ in hs], axis=1),
           "b": np.concatenate([b for _, b in hs])}
  else:
    gates = _GATE_NAMES["gru"]
    ins = [_dense(tree, f"i{g}", cls, True) for g in gates]
    hs = [_dense(tree, f"h{g}", cls, g == "n") for g in gates]
    out = {"w_i": np.concatenate([k for k, _ in ins], axis=1),
           "w_h": np.concatenate([h[0] for h in hs], axis=1),
           "b": np.concatenate([b for _, b in ins]), "b_hn": hs[-1][1]}
  layout.check_cell_params(out, cell_name, "from_flax")
  return layout.jnp_tree(out)


def to_flax(params: Mapping[str, Any], cell_name: str) -> dict[str, dict[str, Array]]:
  """rnnlab cell params -> the params of flax.linen's SimpleCell / (Optimized)LSTMCell / GRUCell.

  Returns the cell's own tree (wrap as {"params": {"cell": tree}} for `nn.RNN(cell)`), jax arrays.

  Raises:
    ValueError: a GRU with reset_after=False (flax's GRUCell is reset-after), bad shapes.
  """
  cell_layout, gates = layout.kind(cell_name)
  p = {n: layout.to_numpy(v) for n, v in params.items()}
  layout.check_cell_params(p, cell_name, "to_flax")
  j = jnp.asarray
  if cell_layout == "vanilla":
    return {"i": {"kernel": j(p["w_i"]), "bias": j(p["b"])}, "h": {"kernel": j(p["w_h"])}}
  if cell_layout == "gru" and "b_hn" not in p:
    raise ValueError("a GRU with reset_after=False has no flax.linen equivalent (GRUCell applies "
                     "the reset gate after the recurrent matmul)")
  # LSTM: the bias sits in the recurrent Dense; GRU: in the input Dense (and hn's for b_hn).
  bias_side = "h" if cell_layout == "lstm" else "i"
  out = {}
  blocks = (np.split(p[k], gates, axis=-1) for k in ("w_i", "w_h", "b"))
  for g, w_i, w_h, b in zip(_GATE_NAMES[cell_layout], *blocks):
    out[f"i{g}"] = {"kernel": j(w_i)}
    out[f"h{g}"] = {"kernel": j(w_h)}
    out[f"{bias_side}{g}"]["bias"] = j(b)
  if cell_layout == "gru":
    out["hn"]["bias"] = j(p["b_hn"])
  return out


def carry_from_flax(carry: Any, cell_name: str) -> Any:
  """flax carry -> rnnlab carry: LSTM (c, h) -> LSTMState(h, c); others unchanged ([..., H])."""
  if layout.kind(cell_name)[0] != "lstm":
    return carry
  c, h = carry
  return LSTMState(h=h, c=c)


def carry_to_flax(carry: Any, cell_name: str) -> Any:
  """rnnlab carry -> flax carry: LSTMState(h, c) -> (c, h); others unchanged ([..., H])."""
  if layout.kind(cell_name)[0] != "lstm":
    return carry
  if not isinstance(carry, LSTMState):
    raise ValueError(f"expected an LSTMState(h, c) (an unnamed pair is ambiguous), got "
                     f"{type(carry).__name__}")
  return (carry.c, carry.h)
