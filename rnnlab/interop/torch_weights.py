"""Weights between rnnlab and PyTorch's nn.RNN / nn.LSTM / nn.GRU (multi-layer, bidirectional).

state_dict keys (k = layer, `_reverse` suffix = backward direction) and rnnlab's params
(`rnnlab.interop.layout`):
    weight_ih_l{k}  [G*H, in]  = w_i.T          weight_hh_l{k}  [G*H, H] = w_h.T
    bias_ih_l{k} + bias_hh_l{k}                 -> b   (vanilla, LSTM: the two biases only add)
    GRU: b = [b_ir + b_hr, b_iz + b_hz, b_in],  b_hn = bias_hh_l{k}[2H:]  (r multiplies it)
Gate orders already agree. The fold loses the split: `to_torch` writes all of `b` into `bias_ih`
and zeros into `bias_hh`, except GRU's n part of `bias_hh`, which is `b_hn`. So
rnnlab -> torch -> rnnlab is exact, and torch -> rnnlab -> torch gives the same function but not
the same two bias vectors. Not convertible: `proj_size > 0` (weight_hr), GRU with
reset_after=False (PyTorch has only the reset-after form). Final states: torch's (h_n, c_n), each
[layers * directions, batch, H], map to the encoder's carries with `carries_from_torch` /
`carries_to_torch`.

Arrays going to torch are numpy arrays (`torch.from_numpy` makes tensors); torch itself is
imported only by `to_torch_module`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from rnnlab.core.cells import LSTMState
from rnnlab.interop import layout
from rnnlab.interop.layout import EncoderParams, Params

_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _suffix(k: int, direction: str) -> str:
  return f"_l{k}" + ("_reverse" if direction == "bwd" else "")


def _cell_from(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray,
               cell_name: str, where: str) -> Params:
  _, gates = layout.kind(cell_name)
  hidden = w_hh.shape[-1]
  size = gates * hidden
  if (w_hh.shape != (size, hidden) or w_ih.ndim != 2 or w_ih.shape[0] != size
      or b_ih.shape != (size,) or b_hh.shape != (size,)):
    raise ValueError(
        f"{where}: shapes weight_ih {w_ih.shape}, weight_hh {w_hh.shape}, bias_ih {b_ih.shape}, "
        f"bias_hh {b_hh.shape} do not fit a torch {cell_name} ({gates} gate blocks of H={hidden}: "
        f"expected [{size}, in], [{size}, {hidden}], [{size}] x2)")
  return layout.jnp_tree({"w_i": w_ih.T, "w_h": w_hh.T,
                          **layout.fold_biases(cell_name, b_ih, b_hh)})


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
  layout.kind(cell_name)
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
    for d in layout.directions(bidirectional):
      names = [f"{n}{_suffix(k, d)}" for n in _NAMES]
      missing = [n for n in names if n not in sd]
      if missing:
        raise ValueError(f"state_dict lacks {missing} (prefix {prefix!r}) for a {num_layers}-layer"
                         f"{' bidirectional' if bidirectional else ''} torch {cell_name}; "
                         f"present keys: {sorted(sd)}. (bias=False modules are not supported.)")
      used.update(names)
      params[f"layer{k}_{d}"] = _cell_from(*(layout.to_numpy(sd[n]) for n in names),
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
  cell_layout, _ = layout.kind(cell_name)
  params = layout.unwrap(params, "params")
  num_layers, bidirectional = layout.encoder_layout(params)
  out: dict[str, np.ndarray] = {}
  for k in range(num_layers):
    for d in layout.directions(bidirectional):
      p = {n: layout.to_numpy(v) for n, v in params[f"layer{k}_{d}"].items()}
      layout.check_cell_params(p, cell_name, f"layer{k}_{d}")
      if cell_layout == "gru" and "b_hn" not in p:
        raise ValueError("a GRU with reset_after=False has no PyTorch equivalent (torch's GRU "
                         "applies the reset gate after the recurrent matmul)")
      w_ih, w_hh, b_ih, b_hh = (f"{prefix}{n}{_suffix(k, d)}" for n in _NAMES)
      out[w_ih] = np.ascontiguousarray(p["w_i"].T)
      out[w_hh] = np.ascontiguousarray(p["w_h"].T)
      out[b_ih] = np.array(p["b"])
      out[b_hh] = layout.recurrent_bias(p, cell_name)
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
  cell_layout, _ = layout.kind(cell_name)
  sd = to_torch(params, cell_name)
  num_layers, bidirectional = layout.encoder_layout(params)
  hidden, input_size = sd["weight_hh_l0"].shape[1], sd["weight_ih_l0"].shape[1]
  kwargs = dict(input_size=input_size, hidden_size=hidden, num_layers=num_layers,
                bidirectional=bidirectional, batch_first=batch_first)
  if cell_layout == "lstm":
    module = torch.nn.LSTM(**kwargs)
  elif cell_layout == "gru":
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
  h = jnp.asarray(layout.to_numpy(h_n))
  c = None if c_n is None else jnp.asarray(layout.to_numpy(c_n))
  dirs = len(layout.directions(bidirectional))
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
    return (np.stack([layout.to_numpy(c.h) for c in flat]),
            np.stack([layout.to_numpy(c.c) for c in flat]))
  return np.stack([layout.to_numpy(c) for c in flat]), None
