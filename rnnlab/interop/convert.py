"""Weight converters between rnnlab and PyTorch, flax.linen and Keras 3.

rnnlab stores weights for `x @ W` (kernels [in, gates * H]) with PyTorch's gate order: vanilla one
block, LSTM (i, f, g, o), GRU (r, z, n), and ONE bias `b` per cell (plus `b_hn` [H] for the
reset-after GRU, the bias inside the reset product). See `rnnlab.core.cells` for the equations. An
encoder (`models.RecurrentEncoder`) is `{"layer{k}_fwd": cell params, "layer{k}_bwd": ...}`.

Cell names: "vanilla" and "irnn" share one layout (the activation is not a weight: pick tanh or
relu when building either side), "lstm", "gru" (`reset_after` is read from the presence of `b_hn`).

PyTorch (nn.RNN / nn.LSTM / nn.GRU state_dict; k = layer, `_reverse` suffix = backward direction):
    weight_ih_l{k}  [G*H, in]  = w_i.T          weight_hh_l{k}  [G*H, H] = w_h.T
    bias_ih_l{k} + bias_hh_l{k}                 -> b   (vanilla, LSTM: the two biases only add)
    GRU: b = [b_ir + b_hr, b_iz + b_hz, b_in],  b_hn = bias_hh_l{k}[2H:]  (r multiplies it)
  Gate orders already agree. The fold loses the split: `to_torch` writes all of `b` into
  `bias_ih` and zeros into `bias_hh`, except GRU's n part of `bias_hh`, which is `b_hn`. So
  rnnlab -> torch -> rnnlab is exact, and torch -> rnnlab -> torch gives the same function but
  not the same two bias vectors. Not convertible: `proj_size > 0` (weight_hr), GRU with
  reset_after=False (PyTorch has only the reset-after form). Final states: torch's (h_n, c_n),
  each [layers * directions, batch, H], map to the encoder's carries with `carries_from_torch` /
  `carries_to_torch`.

flax.linen (one cell's params; `nn.RNN` nests them under "cell"; each entry a Dense):
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
  LSTMState(h, c): use `carry_to_flax` / `carry_from_flax`, never a bare tuple.

Keras 3 (SimpleRNN / LSTM / GRU `get_weights()` = [kernel, recurrent_kernel, bias]):
    kernel [in, G*H] = w_i, recurrent_kernel [H, G*H] = w_h, in Keras' gate order:
    SimpleRNN: bias [H] = b.
    LSTM: gates (i, f, c, o) = rnnlab's (i, f, g, o), bias [4H] = b; no reordering.
    GRU: gates (z, r, h): the first two blocks are swapped relative to rnnlab's (r, z, n), in every
         kernel and bias. Keras' update rule h = z * h_prev + (1 - z) * hh is rnnlab's.
      reset_after=True  (Keras default): bias [2, 3H] = (input bias, recurrent bias);
         b = input + recurrent for z, r; b's n part = input h part; b_hn = recurrent h part.
         `to_keras` writes b as the input bias and (0, 0, b_hn) as the recurrent bias.
      reset_after=False: bias [3H] (reordered) = b; rnnlab's gru with reset_after=False.
  Keras' states are [h] or [h, c] (LSTMState's field order). `keras.layers.Bidirectional` holds a
  forward and a backward layer; `from_keras_layers` / `to_keras_layers` map whole stacks.
  Only Keras' default activations match (tanh; recurrent sigmoid); SimpleRNN may also use relu.

Arrays coming into rnnlab are returned as jax arrays (dtype kept; float64 becomes float32 unless
x64 is on); arrays going to torch and Keras are numpy arrays (`torch.from_numpy` makes tensors);
flax trees are jax arrays. PyTorch tensors are accepted wherever arrays are (detached to numpy).
torch and keras are imported only by the functions that build their modules.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.core import cells
from rnnlab.core.cells import LSTMState

Array = jax.Array
Params = dict[str, Array]
EncoderParams = dict[str, Params]

# rnnlab cell name -> layout kind (vanilla and irnn share one); the gate counts are the cells'.
_LAYOUTS = {"vanilla": "vanilla", "irnn": "vanilla", "lstm": "lstm", "gru": "gru"}
_LAYER_KEY = re.compile(r"^layer(\d+)_(fwd|bwd)$")


# ----------------------------------------------------------------------------- helpers

def _kind(cell_name: str) -> tuple[str, int]:
  """(layout kind, number of gate blocks) of a convertible cell."""
  if cell_name not in _LAYOUTS:
    raise ValueError(f"cannot convert cell {cell_name!r}; convertible cells: {', '.join(_LAYOUTS)}")
  return _LAYOUTS[cell_name], cells.get(cell_name).num_gates


def _np(x: Any) -> np.ndarray:
  """numpy view of a numpy/jax array or a torch tensor (detached, moved to CPU)."""
  if hasattr(x, "detach"):  # torch.Tensor, without importing torch
    x = x.detach().cpu().numpy()
  return np.asarray(x)


def _jnp_tree(tree: Mapping[str, Any]) -> Params:
  return {k: jnp.asarray(v) for k, v in tree.items()}


def _unwrap(tree: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
  """Strips single-key wrappers such as {"params": ...} or nn.RNN's {"cell": ...}."""
  while len(tree) == 1 and next(iter(tree)) in names:
    tree = tree[next(iter(tree))]
  return tree


def _swap_zr(a: np.ndarray, hidden: int) -> np.ndarray:
  """Swaps the first two [H] gate blocks on the last axis: Keras (z, r, h) <-> rnnlab (r, z, n)."""
  return np.concatenate([a[..., hidden:2 * hidden], a[..., :hidden], a[..., 2 * hidden:]], axis=-1)


def _check_cell_params(params: Mapping[str, Any], cell_name: str, where: str) -> int:
  """Validates one rnnlab cell's params; returns H."""
  kind, gates = _kind(cell_name)
  for key in ("w_i", "w_h", "b"):
    if key not in params:
      raise ValueError(f"{where}: rnnlab {cell_name} params lack {key!r}; "
                       f"got keys {sorted(params)}")
  w_h = params["w_h"]
  hidden = w_h.shape[0]
  expect = {"w_h": (hidden, gates * hidden), "b": (gates * hidden,)}
  if "b_hn" in params:
    if kind != "gru":
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
  params = _unwrap(params, "params")
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
  want = {"fwd", "bwd"} if bidirectional else {"fwd"}
  for k in range(num_layers):
    if found.get(k) != want:
      raise ValueError(f"encoder layer {k} has directions {sorted(found.get(k, []))}, "
                       f"expected {sorted(want)}")
  return num_layers, bidirectional


def _directions(bidirectional: bool) -> tuple[str, ...]:
  return ("fwd", "bwd") if bidirectional else ("fwd",)


# ----------------------------------------------------------------------------- PyTorch

def _torch_cell_from(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
                     cell_name: str, where: str) -> Params:
  kind, gates = _kind(cell_name)
  hidden = w_hh.shape[-1]
  if (w_hh.shape != (gates * hidden, hidden) or w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden
      or b_ih.shape != (gates * hidden,) or b_hh.shape != (gates * hidden,)):
    raise ValueError(
        f"{where}: shapes weight_ih {w_ih.shape}, weight_hh {w_hh.shape}, bias_ih {b_ih.shape}, "
        f"bias_hh {b_hh.shape} do not fit a torch {cell_name} ({gates} gate blocks of H={hidden}: "
        f"expected [{gates * hidden}, in], [{gates * hidden}, {hidden}], [{gates * hidden}] x2)")
  out = {"w_i": w_ih.T, "w_h": w_hh.T}
  if kind == "gru":
    # r and z see b_i + b_h; n sees b_in outside and b_hn inside the reset product.
    out["b"] = np.concatenate([b_ih[:2 * hidden] + b_hh[:2 * hidden], b_ih[2 * hidden:]])
    out["b_hn"] = b_hh[2 * hidden:]
  else:
    out["b"] = b_ih + b_hh
  return _jnp_tree(out)


def from_torch(state_dict: Mapping[str, Any], cell_name: str, num_layers: int | None = None,
               bidirectional: bool | None = None, prefix: str = "") -> EncoderParams:
  """A PyTorch nn.RNN / nn.LSTM / nn.GRU state_dict -> `RecurrentEncoder` params.

  Args:
    state_dict: `module.state_dict()` (torch tensors or arrays): weight_ih_l{k} [G*H, in],
      weight_hh_l{k} [G*H, H], bias_ih_l{k} [G*H], bias_hh_l{k} [G*H], and `_reverse` twins.
    cell_name: "vanilla" / "irnn" (nn.RNN, tanh / relu), "lstm" or "gru".
    num_layers, bidirectional: checked against the keys when given, read from them when None.
    prefix: key prefix to select, e.g. "encoder.rnn." for a submodule of a larger model.

  Returns:
    {"layer{k}_fwd": cell params, "layer{k}_bwd": ...} with jax arrays; biases folded as in the
    module docstring.

  Raises:
    ValueError: unknown cell, missing or unexpected keys (bias=False or proj_size modules
      included), shapes that do not fit the cell.
  """
  _kind(cell_name)
  sd = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
  if not sd:
    raise ValueError(f"no state_dict keys start with prefix {prefix!r}")
  if any(k.startswith("weight_hr") for k in sd):
    raise ValueError("torch LSTM with proj_size > 0 (weight_hr_l*) has no rnnlab equivalent")
  found_layers = {int(m.group(1)) for k in sd if (m := re.match(r"weight_ih_l(\d+)", k))}
  if num_layers is None:
    num_layers = max(found_layers) + 1 if found_layers else 0
  if bidirectional is None:
    bidirectional = any(k.endswith("_reverse") for k in sd)
  if num_layers < 1:
    raise ValueError(f"no weight_ih_l0 in state_dict; keys: {sorted(sd)}")

  params: EncoderParams = {}
  used = set()
  for k in range(num_layers):
    for d in _directions(bidirectional):
      suffix = f"_l{k}" + ("_reverse" if d == "bwd" else "")
      names = [f"{n}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
      missing = [n for n in names if n not in sd]
      if missing:
        raise ValueError(f"state_dict lacks {missing} (prefix {prefix!r}) for a {num_layers}-layer"
                         f"{' bidirectional' if bidirectional else ''} torch {cell_name}; "
                         f"present keys: {sorted(sd)}. (bias=False modules are not supported.)")
      used.update(names)
      params[f"layer{k}_{d}"] = _torch_cell_from(*(_np(sd[n]) for n in names),
                                                 cell_name=cell_name, where=f"layer {k} {d}")
  extra = sorted(set(sd) - used)
  if extra:
    raise ValueError(f"unexpected state_dict keys {extra} for num_layers={num_layers}, "
                     f"bidirectional={bidirectional}")
  for k in range(1, num_layers):
    want = params[f"layer{k - 1}_fwd"]["w_h"].shape[0] * (2 if bidirectional else 1)
    got = params[f"layer{k}_fwd"]["w_i"].shape[0]
    if got != want:
      raise ValueError(f"layer {k} reads {got} features but layer {k - 1} outputs {want}")
  return params


def to_torch(params: Mapping[str, Any], cell_name: str, prefix: str = "") -> dict[str, np.ndarray]:
  """`RecurrentEncoder` params -> a PyTorch nn.RNN / nn.LSTM / nn.GRU state_dict of numpy arrays.

  The folded bias goes to bias_ih_l{k} and bias_hh_l{k} is zero, except GRU's n block of bias_hh,
  which is b_hn (see the module docstring). Load with
  `module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`.

  Args:
    params: {"layer{k}_fwd"/"layer{k}_bwd": cell params} (or flax variables {"params": ...}).
    cell_name: "vanilla", "irnn", "lstm" or "gru" (reset-after only).
    prefix: prepended to every key.

  Returns:
    {prefix + "weight_ih_l0": [G*H, in], ...} float arrays, the keys PyTorch uses.
  """
  kind, _ = _kind(cell_name)
  params = _unwrap(params, "params")
  num_layers, bidirectional = encoder_layout(params)
  out: dict[str, np.ndarray] = {}
  for k in range(num_layers):
    for d in _directions(bidirectional):
      p = {n: _np(v) for n, v in params[f"layer{k}_{d}"].items()}
      hidden = _check_cell_params(p, cell_name, f"layer{k}_{d}")
      if kind == "gru" and "b_hn" not in p:
        raise ValueError("a GRU with reset_after=False has no PyTorch equivalent (torch's GRU "
                         "applies the reset gate after the recurrent matmul)")
      suffix = f"_l{k}" + ("_reverse" if d == "bwd" else "")
      b_hh = np.zeros_like(p["b"])
      if kind == "gru":
        b_hh[2 * hidden:] = p["b_hn"]
      out[f"{prefix}weight_ih{suffix}"] = np.ascontiguousarray(p["w_i"].T)
      out[f"{prefix}weight_hh{suffix}"] = np.ascontiguousarray(p["w_h"].T)
      out[f"{prefix}bias_ih{suffix}"] = np.array(p["b"])
      out[f"{prefix}bias_hh{suffix}"] = b_hh
  return out


def to_torch_module(params: Mapping[str, Any], cell_name: str, activation: str | None = None,
                    batch_first: bool = True) -> Any:
  """Builds a torch nn.RNN / nn.LSTM / nn.GRU holding `to_torch(params)`.

  Args:
    params: `RecurrentEncoder` params.
    cell_name: "vanilla", "irnn", "lstm" or "gru".
    activation: nn.RNN's nonlinearity ("tanh" / "relu"); None: relu for "irnn", else tanh.
    batch_first: the module's input layout ([batch, time, features] when True).

  Returns:
    the torch module (float32, CPU, eval mode).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("to_torch_module needs PyTorch: pip install torch "
                      "(CPU build: pip install torch --index-url "
                      "https://download.pytorch.org/whl/cpu)") from e
  kind, _ = _kind(cell_name)
  sd = to_torch(params, cell_name)
  num_layers, bidirectional = encoder_layout(_unwrap(params, "params"))
  hidden, input_size = sd["weight_hh_l0"].shape[1], sd["weight_ih_l0"].shape[1]
  kwargs = dict(input_size=input_size, hidden_size=hidden, num_layers=num_layers,
                bidirectional=bidirectional, batch_first=batch_first)
  if kind == "lstm":
    module = torch.nn.LSTM(**kwargs)
  elif kind == "gru":
    module = torch.nn.GRU(**kwargs)
  else:
    if activation is None:
      activation = "relu" if cell_name == "irnn" else "tanh"
    module = torch.nn.RNN(nonlinearity=activation, **kwargs)
  module.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sd.items()})
  return module.eval()


def carries_from_torch(h_n: Any, c_n: Any = None, *,
                       bidirectional: bool) -> list[tuple[Any, ...]]:
  """torch final states -> the encoder's carries.

  Args:
    h_n, c_n: [layers * directions, batch, H] (c_n only for LSTM), torch's layout (layer-major,
      forward before reverse).
    bidirectional: whether there are two directions per layer.

  Returns:
    per layer, a tuple per direction of carries [batch, H] (LSTMState(h, c) for LSTM), the
    structure `RecurrentEncoder` returns.
  """
  h = jnp.asarray(_np(h_n))
  c = None if c_n is None else jnp.asarray(_np(c_n))
  dirs = 2 if bidirectional else 1
  if h.ndim != 3 or h.shape[0] % dirs:
    raise ValueError(f"h_n must be [layers * {dirs}, batch, H], got {h.shape}")
  if c is not None and c.shape != h.shape:
    raise ValueError(f"c_n shape {c.shape} differs from h_n shape {h.shape}")
  out = []
  for k in range(h.shape[0] // dirs):
    idx = range(k * dirs, (k + 1) * dirs)
    out.append(tuple(h[i] if c is None else LSTMState(h[i], c[i]) for i in idx))
  return out


def carries_to_torch(carries: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray | None]:
  """The encoder's carries -> torch's (h_n, c_n), each [layers * directions, batch, H].

  c_n is None unless the carries are LSTMStates.
  """
  flat = [c for layer in carries for c in layer]
  if not flat:
    raise ValueError("no carries")
  if isinstance(flat[0], LSTMState):
    return (np.stack([_np(c.h) for c in flat]), np.stack([_np(c.c) for c in flat]))
  return np.stack([_np(c) for c in flat]), None


# ----------------------------------------------------------------------------- flax.linen

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


def _dense(tree: Mapping[str, Any], name: str, cls: str, bias: bool) -> tuple[np.ndarray, ...]:
  if name not in tree:
    raise ValueError(f"flax {cls} params lack {name!r}; got keys {sorted(tree)}")
  wanted = ("kernel", "bias") if bias else ("kernel",)
  missing = [w for w in wanted if w not in tree[name]]
  if missing:
    raise ValueError(f"flax {cls} params {name!r} lack {missing}; got {sorted(tree[name])}")
  return tuple(_np(tree[name][w]) for w in wanted)


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
  kind, _ = _kind(cell_name)
  tree = _unwrap(params, "params", "cell")
  if kind == "vanilla":
    w_i, b = _dense(tree, "i", "SimpleCell", True)
    (w_h,) = _dense(tree, "h", "SimpleCell", False)
    out = {"w_i": w_i, "w_h": w_h, "b": b}
  elif kind == "lstm":
    ins = [_dense(tree, f"i{g}", "LSTMCell", False)[0] for g in _LSTM_GATES]
    hs = [_dense(tree, f"h{g}", "LSTMCell", True) for g in _LSTM_GATES]
    out = {"w_i": np.concatenate(ins, axis=1), "w_h": np.concatenate([k for k, _ in hs], axis=1),
           "b": np.concatenate([b for _, b in hs])}
  else:
    ins = [_dense(tree, f"i{g}", "GRUCell", True) for g in _GRU_GATES]
    hs = [_dense(tree, f"h{g}", "GRUCell", g == "n") for g in _GRU_GATES]
    out = {"w_i": np.concatenate([k for k, _ in ins], axis=1),
           "w_h": np.concatenate([h[0] for h in hs], axis=1),
           "b": np.concatenate([b for _, b in ins]), "b_hn": hs[2][1]}
  _check_cell_params(out, cell_name, "from_flax")
  return _jnp_tree(out)


def to_flax(params: Mapping[str, Any], cell_name: str) -> dict[str, dict[str, Array]]:
  """rnnlab cell params -> the params of flax.linen's SimpleCell / (Optimized)LSTMCell / GRUCell.

  Returns the cell's own tree (wrap as {"params": {"cell": tree}} for `nn.RNN(cell)`), jax arrays.

  Raises:
    ValueError: a GRU with reset_after=False (flax's GRUCell is reset-after), bad shapes.
  """
  kind, gates = _kind(cell_name)
  p = {n: _np(v) for n, v in params.items()}
  _check_cell_params(p, cell_name, "to_flax")
  split = lambda a: np.split(a, gates, axis=-1)
  j = jnp.asarray
  if kind == "vanilla":
    return {"i": {"kernel": j(p["w_i"]), "bias": j(p["b"])}, "h": {"kernel": j(p["w_h"])}}
  if kind == "lstm":
    out = {}
    for g, w_i, w_h, b in zip(_LSTM_GATES, split(p["w_i"]), split(p["w_h"]), split(p["b"])):
      out[f"i{g}"] = {"kernel": j(w_i)}
      out[f"h{g}"] = {"kernel": j(w_h), "bias": j(b)}
    return out
  if "b_hn" not in p:
    raise ValueError("a GRU with reset_after=False has no flax.linen equivalent (GRUCell applies "
                     "the reset gate after the recurrent matmul)")
  out = {}
  for g, w_i, w_h, b in zip(_GRU_GATES, split(p["w_i"]), split(p["w_h"]), split(p["b"])):
    out[f"i{g}"] = {"kernel": j(w_i), "bias": j(b)}
    out[f"h{g}"] = {"kernel": j(w_h)}
  out["hn"]["bias"] = j(p["b_hn"])
  return out


def carry_from_flax(carry: Any, cell_name: str) -> Any:
  """flax carry -> rnnlab carry: LSTM (c, h) -> LSTMState(h, c); others unchanged ([..., H])."""
  if _kind(cell_name)[0] != "lstm":
    return carry
  c, h = carry
  return LSTMState(h=h, c=c)


def carry_to_flax(carry: Any, cell_name: str) -> Any:
  """rnnlab carry -> flax carry: LSTMState(h, c) -> (c, h); others unchanged ([..., H])."""
  if _kind(cell_name)[0] != "lstm":
    return carry
  if not isinstance(carry, LSTMState):
    raise ValueError(f"expected an LSTMState(h, c) (an unnamed pair is ambiguous), got "
                     f"{type(carry).__name__}")
  return (carry.c, carry.h)


# ----------------------------------------------------------------------------- Keras 3

def _import_keras() -> Any:
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("this converter needs Keras 3: pip install keras "
                      "(choose the backend with KERAS_BACKEND=jax before importing it)") from e
  return keras


def from_keras(weights: Any, cell_name: str, reset_after: bool | None = None) -> Params:
  """One Keras SimpleRNN / LSTM / GRU (layer, cell, or its `get_weights()` list) -> rnnlab params.

  Args:
    weights: [kernel [in, G*H], recurrent_kernel [H, G*H], bias] (bias [G*H], or [2, 3H] for a GRU
      with reset_after=True; absent when use_bias=False), or an object with `get_weights()`.
    cell_name: "vanilla"/"irnn" (SimpleRNN), "lstm", "gru".
    reset_after: GRU only, needed only without a bias (read from the bias shape otherwise);
      None then means Keras' default, True.

  Returns:
    rnnlab params (GRU: b_hn present iff reset_after).
  """
  kind, gates = _kind(cell_name)
  if hasattr(weights, "get_weights"):
    weights = weights.get_weights()
  w = [_np(a) for a in weights]
  if len(w) not in (2, 3):
    raise ValueError(f"expected Keras weights [kernel, recurrent_kernel(, bias)], got {len(w)} "
                     "arrays (a Bidirectional layer: use from_keras_layers)")
  kernel, rec = w[0], w[1]
  hidden = rec.shape[0]
  size = gates * hidden
  if rec.shape != (hidden, size) or kernel.ndim != 2 or kernel.shape[1] != size:
    raise ValueError(f"Keras kernel {kernel.shape} / recurrent_kernel {rec.shape} do not fit a "
                     f"{cell_name} ({gates} gate blocks of H={hidden})")
  if kind == "gru":
    if len(w) == 3:
      inferred = w[2].ndim == 2
      if reset_after is not None and reset_after != inferred:
        raise ValueError(f"bias shape {w[2].shape} means reset_after={inferred}, "
                         f"but reset_after={reset_after} was given")
      reset_after = inferred
    elif reset_after is None:
      reset_after = True
    bias = w[2] if len(w) == 3 else np.zeros((2, size) if reset_after else (size,), kernel.dtype)
    want = (2, size) if reset_after else (size,)
    if bias.shape != want:
      raise ValueError(f"Keras GRU bias has shape {bias.shape}, expected {want}")
    out = {"w_i": _swap_zr(kernel, hidden), "w_h": _swap_zr(rec, hidden)}
    if reset_after:
      b_in, b_rec = _swap_zr(bias[0], hidden), _swap_zr(bias[1], hidden)
      out["b"] = np.concatenate([b_in[:2 * hidden] + b_rec[:2 * hidden], b_in[2 * hidden:]])
      out["b_hn"] = b_rec[2 * hidden:]
    else:
      out["b"] = _swap_zr(bias, hidden)
  else:
    bias = w[2] if len(w) == 3 else np.zeros((size,), kernel.dtype)
    if bias.shape != (size,):
      raise ValueError(f"Keras {cell_name} bias has shape {bias.shape}, expected {(size,)}")
    out = {"w_i": kernel, "w_h": rec, "b": bias}
  return _jnp_tree(out)


def to_keras(params: Mapping[str, Any], cell_name: str) -> list[np.ndarray]:
  """rnnlab cell params -> Keras `set_weights` list [kernel, recurrent_kernel, bias] (numpy).

  A GRU with b_hn maps to Keras' reset_after=True (bias [2, 3H]: input bias b, recurrent bias
  (0, 0, b_hn) in Keras' z, r, h order), one without to reset_after=False (bias [3H]).
  """
  kind, _ = _kind(cell_name)
  p = {n: _np(v) for n, v in params.items()}
  hidden = _check_cell_params(p, cell_name, "to_keras")
  if kind != "gru":
    return [np.array(p["w_i"]), np.array(p["w_h"]), np.array(p["b"])]
  kernel, rec = _swap_zr(p["w_i"], hidden), _swap_zr(p["w_h"], hidden)
  b = _swap_zr(p["b"], hidden)
  if "b_hn" not in p:
    return [kernel, rec, b]
  b_rec = np.zeros_like(b)
  b_rec[2 * hidden:] = p["b_hn"]
  return [kernel, rec, np.stack([b, b_rec])]


_KERAS_CLASSES = {"vanilla": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def _check_keras_layer(layer: Any, cell_name: str) -> None:
  """Rejects Keras layers whose math differs from rnnlab's cell (activations, class)."""
  kind, _ = _kind(cell_name)
  cls = type(layer).__name__
  if cls != _KERAS_CLASSES[kind]:
    raise ValueError(f"expected a Keras {_KERAS_CLASSES[kind]} layer for cell {cell_name!r}, "
                     f"got {cls}")
  config = layer.get_config()
  allowed = ("tanh", "relu") if kind == "vanilla" else ("tanh",)
  if config.get("activation") not in allowed:
    raise ValueError(f"Keras {cls} activation {config.get('activation')!r} has no rnnlab match")
  if kind != "vanilla" and config.get("recurrent_activation") != "sigmoid":
    raise ValueError(f"Keras {cls} recurrent_activation {config.get('recurrent_activation')!r} "
                     "has no rnnlab match (rnnlab gates use sigmoid)")


def from_keras_layers(layers: Sequence[Any], cell_name: str) -> EncoderParams:
  """A stack of built Keras RNN layers (or `Bidirectional` wrappers) -> `RecurrentEncoder` params.

  Args:
    layers: the recurrent layers in order, all unidirectional or all `keras.layers.Bidirectional`
      (whose forward/backward layers become layer{k}_fwd/_bwd).
    cell_name: "vanilla"/"irnn", "lstm" or "gru".

  Returns:
    {"layer{k}_fwd": params, ("layer{k}_bwd": params)}.
  """
  if not layers:
    raise ValueError("no layers")
  out: EncoderParams = {}
  bidi = [hasattr(layer, "backward_layer") for layer in layers]
  if any(bidi) and not all(bidi):
    raise ValueError("mix of Bidirectional and unidirectional layers; an encoder has one kind")
  for k, layer in enumerate(layers):
    pairs = ([("fwd", layer.forward_layer), ("bwd", layer.backward_layer)] if bidi[k]
             else [("fwd", layer)])
    for d, sub in pairs:
      _check_keras_layer(sub, cell_name)
      out[f"layer{k}_{d}"] = from_keras(sub.get_weights(), cell_name)
  return out


def to_keras_layers(params: Mapping[str, Any], cell_name: str, activation: str | None = None,
                    **layer_kwargs: Any) -> list[Any]:
  """`RecurrentEncoder` params -> built Keras layers holding them (Bidirectional if the encoder is).

  Args:
    params: encoder params (or flax variables {"params": ...}).
    cell_name: "vanilla"/"irnn", "lstm" or "gru".
    activation: SimpleRNN's activation; None: relu for "irnn", else tanh.
    **layer_kwargs: passed to every Keras layer (e.g. return_sequences=True, return_state=True).

  Returns:
    one layer per encoder layer; call them in sequence (with a mask for padded batches).
  """
  keras = _import_keras()
  kind, _ = _kind(cell_name)
  params = _unwrap(params, "params")
  num_layers, bidirectional = encoder_layout(params)
  layers = []
  for k in range(num_layers):
    fwd = params[f"layer{k}_fwd"]
    hidden, in_size = fwd["w_h"].shape[0], fwd["w_i"].shape[0]
    kwargs = dict(layer_kwargs)
    if kind == "vanilla":
      kwargs["activation"] = activation or ("relu" if cell_name == "irnn" else "tanh")
      make = lambda: keras.layers.SimpleRNN(hidden, **kwargs)
    elif kind == "lstm":
      make = lambda: keras.layers.LSTM(hidden, **kwargs)
    else:
      reset_after = "b_hn" in fwd
      make = lambda: keras.layers.GRU(hidden, reset_after=reset_after, **kwargs)
    layer = keras.layers.Bidirectional(make()) if bidirectional else make()
    layer.build((None, None, in_size))
    weights = to_keras(fwd, cell_name)
    if bidirectional:
      weights += to_keras(params[f"layer{k}_bwd"], cell_name)
    layer.set_weights(weights)
    layers.append(layer)
  return layers
