"""What the weight converters share: rnnlab's parameter layout, its checks and the GRU bias fold.

rnnlab stores weights for `x @ W` (kernels [in, gates * H]) with PyTorch's gate order: vanilla one
block, LSTM (i, f, g, o), GRU (r, z, n), and ONE bias `b` per cell (plus `b_hn` [H] for the
reset-after GRU, the bias inside the reset product). See `rnnlab.core.cells` for the equations; the
number of gate blocks is the cell's own `Cell.num_gates`. An encoder (`models.RecurrentEncoder`)
is `{"layer{k}_fwd": cell params, "layer{k}_bwd": ...}`.

Cell names: "vanilla" and "irnn" share one layout (the activation is not a weight: pick tanh or
relu when building either side), "lstm", "gru" (`reset_after` is read from the presence of `b_hn`).

Peers that keep an input and a recurrent bias (PyTorch, Keras' reset-after GRU) fold them:
    vanilla, LSTM:  b = b_input + b_recurrent                 (the two only ever add)
    GRU:            b = [b_ir + b_hr, b_iz + b_hz, b_in],  b_hn = b_hn   (r multiplies b_hn)
and unfold them as b_input = b, b_recurrent = (0, 0, b_hn) for the GRU (zeros otherwise), so
rnnlab -> peer -> rnnlab is exact. One converter module per peer: `torch_weights`,
`flax_weights`, `keras_weights`.

Arrays coming into rnnlab are returned as jax arrays (dtype kept; float64 becomes float32 unless
x64 is on). PyTorch tensors are accepted wherever arrays are (detached to numpy).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.core import cells

Array = jax.Array
Params = dict[str, Array]
EncoderParams = dict[str, Params]

# rnnlab cell name -> its parameter layout; irnn is the vanilla cell with other initial values.
_LAYOUTS = {"vanilla": "vanilla", "irnn": "vanilla", "lstm": "lstm", "gru": "gru"}
_LAYER_KEY = re.compile(r"^layer(\d+)_(fwd|bwd)$")


def kind(cell_name: str) -> tuple[str, int]:
  """(layout: "vanilla" / "lstm" / "gru", number of [H] gate blocks) of a convertible cell.

  Raises:
    ValueError: a cell no peer has (the message lists the convertible ones).
  """
  if cell_name not in _LAYOUTS:
    raise ValueError(f"cannot convert cell {cell_name!r}; convertible cells: {', '.join(_LAYOUTS)}")
  return _LAYOUTS[cell_name], cells.get(cell_name).num_gates


def to_numpy(x: Any) -> np.ndarray:
  """numpy view of a numpy/jax array or a torch tensor (detached, moved to CPU)."""
  if hasattr(x, "detach"):  # torch.Tensor, without importing torch
    x = x.detach().cpu().numpy()
  return np.asarray(x)


def jnp_tree(tree: Mapping[str, Any]) -> Params:
  """{name: array} with every array as a jax array."""
  return {k: jnp.asarray(v) for k, v in tree.items()}


def unwrap(tree: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
  """Strips single-key wrappers such as {"params": ...} or nn.RNN's {"cell": ...}."""
  while len(tree) == 1 and next(iter(tree)) in names:
    tree = tree[next(iter(tree))]
  return tree


def directions(bidirectional: bool) -> tuple[str, ...]:
  """The encoder's direction suffixes: ("fwd",) or ("fwd", "bwd")."""
  return ("fwd", "bwd") if bidirectional else ("fwd",)


def check_cell_params(params: Mapping[str, Any], cell_name: str, where: str) -> int:
  """Validates one rnnlab cell's params (w_i [in, G*H], w_h [H, G*H], b [G*H], b_hn [H]);
  returns H."""
  layout, gates = kind(cell_name)
  for key in ("w_i", "w_h", "b"):
    if key not in params:
      raise ValueError(f"{where}: rnnlab {cell_name} params lack {key!r}; "
                       f"got keys {sorted(params)}")
  hidden = params["w_h"].shape[0]
  expect = {"w_h": (hidden, gates * hidden), "b": (gates * hidden,)}
  if "b_hn" in params:
    if layout != "gru":
      raise ValueError(f"{where}: 'b_hn' only exists in GRU params, not {cell_name}")
    expect["b_hn"] = (hidden,)
  for key, shape in expect.items():
    if tuple(params[key].shape) != shape:
      raise ValueError(f"{where}: {cell_name} param {key!r} has shape {tuple(params[key].shape)}, "
                       f"expected {shape} (hidden {hidden}, {gates} gate blocks)")
  if params["w_i"].ndim != 2 or params["w_i"].shape[1] != gates * hidden:
    raise ValueError(f"{where}: {cell_name} param 'w_i' has shape {tuple(params['w_i'].shape)}, "
                     f"expected [input, {gates * hidden}]")
  return hidden


def encoder_layout(params: Mapping[str, Any]) -> tuple[int, bool]:
  """(num_layers, bidirectional) of a `RecurrentEncoder` parameter tree.

  Accepts the tree itself or flax variables {"params": tree}.

  Raises:
    ValueError: keys that are not `layer{k}_fwd`/`layer{k}_bwd`, missing layers, or a direction
      missing from some layer.
  """
  params = unwrap(params, "params")
  found: dict[int, set[str]] = {}
  for key in params:
    m = _LAYER_KEY.match(key)
    if m is None:
      raise ValueError(f"not a RecurrentEncoder parameter tree: unexpected key {key!r} "
                       "(expected layer{k}_fwd / layer{k}_bwd)")
    found.setdefault(int(m.group(1)), set()).add(m.group(2))
  if not found:
    raise ValueError("empty encoder parameter tree")
  num_layers = max(found) + 1
  bidirectional = "bwd" in found.get(0, set())
  want = set(directions(bidirectional))
  for k in range(num_layers):
    if found.get(k) != want:
      raise ValueError(f"encoder layer {k} has directions {sorted(found.get(k, []))}, "
                       f"expected {sorted(want)}")
  return num_layers, bidirectional


def fold_biases(cell_name: str, b_input: np.ndarray, b_recurrent: np.ndarray) -> Params:
  """A peer's input and recurrent biases [G*H] -> {"b"} (+ {"b_hn"} for the GRU), numpy.

  The GRU's n block of the recurrent bias sits inside the reset product, so it stays apart.
  """
  layout, gates = kind(cell_name)
  if layout != "gru":
    return {"b": b_input + b_recurrent}
  n = (gates - 1) * (b_input.shape[-1] // gates)  # n is the last gate block
  return {"b": np.concatenate([b_input[:n] + b_recurrent[:n], b_input[n:]]),
          "b_hn": b_recurrent[n:]}


def recurrent_bias(params: Mapping[str, np.ndarray], cell_name: str) -> np.ndarray:
  """The peer's recurrent bias [G*H] that `fold_biases` folds back into `params`: zeros, except
  the GRU's n block, which is b_hn (the input bias is all of b)."""
  b_rec = np.zeros_like(params["b"])
  if "b_hn" in params:
    b_rec[-params["b_hn"].shape[0]:] = params["b_hn"]
  return b_rec
