"""Weights between rnnlab and Keras 3's SimpleRNN / LSTM / GRU (and Bidirectional stacks).

`get_weights()` = [kernel, recurrent_kernel, bias] against rnnlab's params
(`rnnlab.interop.layout`):
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
forward and a backward layer; `from_keras_layers` / `to_keras_layers` map whole stacks. Only
Keras' default activations match (tanh; recurrent sigmoid); SimpleRNN may also use relu.

Arrays going to Keras are numpy arrays; keras itself is imported only by `to_keras_layers`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from rnnlab.interop import layout
from rnnlab.interop.layout import EncoderParams, Params

_CLASSES = {"vanilla": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def _import_keras() -> Any:
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("this converter needs Keras 3: pip install keras "
                      "(choose the backend with KERAS_BACKEND=jax before importing it)") from e
  return keras


def _swap_zr(a: np.ndarray, hidden: int) -> np.ndarray:
  """Swaps the first two [H] gate blocks on the last axis: Keras (z, r, h) <-> rnnlab (r, z, n)."""
  return np.concatenate([a[..., hidden:2 * hidden], a[..., :hidden], a[..., 2 * hidden:]], axis=-1)


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
  cell_layout, gates = layout.kind(cell_name)
  if hasattr(weights, "get_weights"):
    weights = weights.get_weights()
  w = [layout.to_numpy(a) for a in weights]
  if len(w) not in (2, 3):
    raise ValueError(f"expected Keras weights [kernel, recurrent_kernel(, bias)], got {len(w)} "
                     "arrays (a Bidirectional layer: use from_keras_layers)")
  kernel, rec = w[0], w[1]
  hidden = rec.shape[0]
  size = gates * hidden
  if rec.shape != (hidden, size) or kernel.ndim != 2 or kernel.shape[1] != size:
    raise ValueError(f"Keras kernel {kernel.shape} / recurrent_kernel {rec.shape} do not fit a "
                     f"{cell_name} ({gates} gate blocks of H={hidden})")
  if cell_layout != "gru":
    bias = w[2] if len(w) == 3 else np.zeros((size,), kernel.dtype)
    if bias.shape != (size,):
      raise ValueError(f"Keras {cell_name} bias has shape {bias.shape}, expected {(size,)}")
    return layout.jnp_tree({"w_i": kernel, "w_h": rec, "b": bias})
  if len(w) == 3:
    inferred = w[2].ndim == 2
    if reset_after is not None and reset_after != inferred:
      raise ValueError(f"bias shape {w[2].shape} means reset_after={inferred}, "
                       f"but reset_after={reset_after} was given")
    reset_after = inferred
  elif reset_after is None:
    reset_after = True
  want = (2, size) if reset_after else (size,)
  bias = w[2] if len(w) == 3 else np.zeros(want, kernel.dtype)
  if bias.shape != want:
    raise ValueError(f"Keras GRU bias has shape {bias.shape}, expected {want}")
  out = {"w_i": _swap_zr(kernel, hidden), "w_h": _swap_zr(rec, hidden)}
  if reset_after:
    out.update(layout.fold_biases(cell_name, _swap_zr(bias[0], hidden),
                                  _swap_zr(bias[1], hidden)))
  else:
    out["b"] = _swap_zr(bias, hidden)
  return layout.jnp_tree(out)


def to_keras(params: Mapping[str, Any], cell_name: str) -> list[np.ndarray]:
  """rnnlab cell params -> Keras `set_weights` list [kernel, recurrent_kernel, bias] (numpy).

  A GRU with b_hn maps to Keras' reset_after=True (bias [2, 3H]: input bias b, recurrent bias
  (0, 0, b_hn) in Keras' z, r, h order), one without to reset_after=False (bias [3H]).
  """
  cell_layout, _ = layout.kind(cell_name)
  p = {n: layout.to_numpy(v) for n, v in params.items()}
  hidden = layout.check_cell_params(p, cell_name, "to_keras")
  if cell_layout != "gru":
    return [np.array(p["w_i"]), np.array(p["w_h"]), np.array(p["b"])]
  kernel, rec = _swap_zr(p["w_i"], hidden), _swap_zr(p["w_h"], hidden)
  b = _swap_zr(p["b"], hidden)
  if "b_hn" not in p:
    return [kernel, rec, b]
  return [kernel, rec, np.stack([b, _swap_zr(layout.recurrent_bias(p, cell_name), hidden)])]


def _check_layer(layer: Any, cell_name: str) -> None:
  """Rejects Keras layers whose math differs from rnnlab's cell (activations, class)."""
  cell_layout, _ = layout.kind(cell_name)
  cls = type(layer).__name__
  if cls != _CLASSES[cell_layout]:
    raise ValueError(f"expected a Keras {_CLASSES[cell_layout]} layer for cell {cell_name!r}, "
                     f"got {cls}")
  config = layer.get_config()
  allowed = ("tanh", "relu") if cell_layout == "vanilla" else ("tanh",)
  if config.get("activation") not in allowed:
    raise ValueError(f"Keras {cls} activation {config.get('activation')!r} has no rnnlab match")
  if cell_layout != "vanilla" and config.get("recurrent_activation") != "sigmoid":
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
      _check_layer(sub, cell_name)
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
  cell_layout, _ = layout.kind(cell_name)
  params = layout.unwrap(params, "params")
  num_layers, bidirectional = layout.encoder_layout(params)
  layers = []
  for k in range(num_layers):
    fwd = params[f"layer{k}_fwd"]
    hidden, in_size = fwd["w_h"].shape[0], fwd["w_i"].shape[0]
    kwargs = dict(layer_kwargs)
    if cell_layout == "vanilla":
      kwargs["activation"] = activation or ("relu" if cell_name == "irnn" else "tanh")
    elif cell_layout == "gru":
      kwargs["reset_after"] = "b_hn" in fwd
    make = lambda: getattr(keras.layers, _CLASSES[cell_layout])(hidden, **kwargs)
    layer = keras.layers.Bidirectional(make()) if bidirectional else make()
    layer.build((None, None, in_size))
    weights = to_keras(fwd, cell_name)
    if bidirectional:
      weights += to_keras(params[f"layer{k}_bwd"], cell_name)
    layer.set_weights(weights)
    layers.append(layer)
  return layers
