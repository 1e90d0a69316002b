"""Reading a peer's saved file into (partial) rnnlab RNNModel params: a torch state_dict, flax
params, a Keras model; the recurrent weights are converted by `rnnlab.interop.torch_weights`,
`flax_weights` and `keras_weights`, and the file's layout is checked against config.model.

Sources and the names read from them:

  torch  A `torch.save(model.state_dict())` file (or a dict holding it under "state_dict",
         "model_state_dict" or "model"), loaded with `torch.load(weights_only=True)`:
           embed.weight           [vocab, embed_size]   nn.Embedding
           rnn.weight_ih_l{k} ... nn.RNN / nn.LSTM / nn.GRU (any `_reverse` twins): the encoder.
                                  Prefix "rnn." by default (`rnn_prefix`); the keys of a bare
                                  nn.LSTM's state_dict (no prefix) are recognised too.
           readout.weight         [out, features]       nn.Linear (transposed to the kernel)
           readout.bias           [out]
         Any other key is an error (a misnamed embedding must not be silently re-initialised).
         nn.RNN's nonlinearity is not in a state_dict: config.model.activation must match it.
  flax   A .msgpack (`flax.serialization.to_bytes(params)` / `msgpack_serialize`) or .npz (keys
         "/"-joined paths, e.g. "encoder/layer0_fwd/w_i") of the RNNModel params tree (see
         `importing`), optionally under "params". Encoder layers may hold rnnlab cell params
         (w_i, w_h, b, b_hn) or flax.linen cell params (SimpleCell / LSTMCell / GRUCell,
         `flax_weights.from_flax`).
  keras  A .keras model file (Keras 3, loaded with the jax backend unless KERAS_BACKEND is set):
         an optional Embedding, the recurrent layers (SimpleRNN / LSTM / GRU, or Bidirectional
         wrappers of them) in order, and an optional final Dense; InputLayer, Masking and
         Dropout layers are skipped, any other layer is an error.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from rnnlab.core import cells
from rnnlab.errors import RnnlabError
from rnnlab.interop import flax_weights, keras_weights, layout, torch_weights

SOURCES = ("torch", "flax", "keras")
PARTS = ("embed", "encoder", "readout")
# What a file's recurrent layers are, told apart by their number of gate blocks.
_PEER_LAYERS = {"vanilla": "nn.RNN (cell vanilla or irnn)", "gru": "nn.GRU (cell gru)",
                "lstm": "nn.LSTM (cell lstm)"}


# ----------------------------------------------------------------------------- shared checks

def _check_layout(config: ml_collections.ConfigDict, where: str, num_layers: int,
                  bidirectional: bool, hidden: int, gates: int) -> None:
  """The file's recurrent stack against config.model; one error naming every mismatch."""
  m = config.model
  problems = []
  if gates != cells.get(m.cell).num_gates:
    have = next((what for name, what in _PEER_LAYERS.items()
                 if cells.get(name).num_gates == gates), f"{gates} gate blocks")
    problems.append(f"its recurrent layers are {have}, config.model.cell={m.cell!r}")
  if num_layers != m.num_layers:
    problems.append(f"it has {num_layers} recurrent layer(s), "
                    f"config.model.num_layers={m.num_layers}")
  if bidirectional != m.bidirectional:
    problems.append(f"it is {'' if bidirectional else 'not '}bidirectional, "
                    f"config.model.bidirectional={m.bidirectional}")
  if hidden != m.hidden_size:
    problems.append(f"its hidden size is {hidden}, config.model.hidden_size={m.hidden_size}")
  if problems:
    raise RnnlabError(f"{where} does not match the config: {'; '.join(problems)}. Pass the "
                      "config the weights were trained with (or override its config.model keys).")


def _check_gru_form(config: ml_collections.ConfigDict, reset_after: bool, where: str) -> None:
  if config.model.cell == "gru" and bool(config.model.reset_after) != reset_after:
    raise RnnlabError(f"{where} holds a GRU with reset_after={reset_after}, but "
                      f"config.model.reset_after={config.model.reset_after}")


def _check_encoder(encoder: Mapping[str, Any], config: ml_collections.ConfigDict,
                   where: str) -> None:
  """Layout check of rnnlab encoder params (as converted from any source)."""
  try:
    num_layers, bidirectional = layout.encoder_layout(encoder)
  except ValueError as e:
    raise RnnlabError(f"{where}: {e}") from None
  w_h = encoder["layer0_fwd"]["w_h"]
  hidden = w_h.shape[0]
  _check_layout(config, where, num_layers, bidirectional, hidden, w_h.shape[1] // max(hidden, 1))
  _check_gru_form(config, "b_hn" in encoder["layer0_fwd"], where)


# ----------------------------------------------------------------------------- torch

def _load_torch_file(path: str) -> dict[str, Any]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise RnnlabError("importing torch weights needs PyTorch to read the file: pip install torch "
                      "(CPU build: pip install torch --index-url "
                      "https://download.pytorch.org/whl/cpu)") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    if "weights only" not in str(e).lower():
      raise RnnlabError(_unreadable_torch_file(path, e)) from None
    # torch's message advises weights_only=False, which runs any code the file holds: never
    # relayed. The file holds Python objects besides tensors (a whole nn.Module, an optimizer...).
    raise RnnlabError(f"{path!r} holds pickled Python objects, not only tensors (a whole "
                      "nn.Module saved with torch.save(model)?); only a state_dict is read: "
                      "save one with torch.save(model.state_dict(), 'model.pt')") from None
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds here
    raise RnnlabError(_unreadable_torch_file(path, e)) from None
  if isinstance(obj, Mapping):
    for key in ("state_dict", "model_state_dict", "model"):
      if isinstance(obj.get(key), Mapping):
        obj = obj[key]
        break
  if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
    raise RnnlabError(f"{path!r} does not hold a state_dict (a dict of tensors); save one with "
                      "torch.save(model.state_dict(), 'model.pt')")
  return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def _unreadable_torch_file(path: str, error: Exception) -> str:
  """The one-line message for a file torch.load cannot read at all (truncated, not torch's)."""
  reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().split(". ")[0].splitlines()
  reason = f"{type(error).__name__}: {reason[0][:200]}" if reason else type(error).__name__
  return (f"cannot read {path!r} as a torch file: it is truncated, damaged or not written by "
          f"torch.save ({reason}); copy it again, or save it with "
          "torch.save(model.state_dict(), 'model.pt')")


def load_torch(path: str, config: ml_collections.ConfigDict,
               rnn_prefix: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
  """A torch state_dict file -> (partial RNNModel params, {part: where it came from}).

  Args:
    path: a file written by `torch.save(model.state_dict(), path)`.
    config: the rnnlab config the weights must fit.
    rnn_prefix: key prefix of the recurrent module; None: "rnn.", or "" for a bare RNN module.
  """
  sd = _load_torch_file(path)
  if rnn_prefix is None:
    rnn_prefix = "" if "weight_ih_l0" in sd else "rnn."
  where = f"the torch state_dict {path!r}"
  ih = {int(m.group(1)) for k in sd if (m := re.fullmatch(
      re.escape(rnn_prefix) + r"weight_ih_l(\d+)(_reverse)?", k))}
  if not ih:
    raise RnnlabError(f"{where} has no recurrent weights {rnn_prefix}weight_ih_l0 (its keys: "
                      f"{', '.join(sorted(sd)[:12])}). Name the RNN module `rnn`, or give its "
                      "prefix (rnn_prefix)")
  w_hh = sd.get(f"{rnn_prefix}weight_hh_l0")
  if w_hh is None or w_hh.ndim != 2:
    raise RnnlabError(f"{where} lacks a 2-D {rnn_prefix}weight_hh_l0")
  hidden = w_hh.shape[1]
  bidirectional = any(k.startswith(rnn_prefix) and k.endswith("_reverse") for k in sd)
  _check_layout(config, where, max(ih) + 1, bidirectional, hidden, w_hh.shape[0] // hidden)
  if config.model.cell == "gru":
    _check_gru_form(config, True, where)  # torch has only the reset-after GRU

  rnn_keys = {k for k in sd if k.startswith(rnn_prefix) and re.fullmatch(
      r"(weight|bias)_(ih|hh)_l\d+(_reverse)?", k[len(rnn_prefix):])}
  try:
    encoder = torch_weights.from_torch({k: sd[k] for k in rnn_keys}, config.model.cell,
                                 config.model.num_layers, config.model.bidirectional,
                                 prefix=rnn_prefix)
  except ValueError as e:
    raise RnnlabError(f"{where}: {e}") from None
  params: dict[str, Any] = {"encoder": encoder}
  source = {"encoder": f"{rnn_prefix}weight_*/bias_* ({len(rnn_keys)} tensors)"}
  used = set(rnn_keys)
  if "embed.weight" in sd:
    params["embed"] = {"embedding": sd["embed.weight"]}
    source["embed"] = "embed.weight"
    used.add("embed.weight")
  readout = {k: sd[k] for k in ("readout.weight", "readout.bias") if k in sd}
  if readout:
    if len(readout) != 2:
      raise RnnlabError(f"{where} has {sorted(readout)} but not both readout.weight and "
                        "readout.bias (a bias-free nn.Linear has no rnnlab equivalent)")
    params["readout"] = {"kernel": readout["readout.weight"].T, "bias": readout["readout.bias"]}
    source["readout"] = "readout.weight (transposed), readout.bias"
    used.update(readout)
  unused = sorted(set(sd) - used)
  if unused:
    raise RnnlabError(f"{where} has keys that map to no part of the model: {', '.join(unused)}. "
                      f"The names read are embed.weight, {rnn_prefix}weight_ih_l<k>..., "
                      "readout.weight and readout.bias (see rnnlab/interop/peer_files.py)")
  return params, source


# ----------------------------------------------------------------------------- flax

def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{"a/b/c": x} -> {"a": {"b": {"c": x}}}."""
  out: dict[str, Any] = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.asarray(value)
  return out


def load_flax(path: str, config: ml_collections.ConfigDict,
              rnn_prefix: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
  """A .msgpack or .npz of RNNModel params -> (partial params, {part: where it came from})."""
  del rnn_prefix  # torch only
  where = f"the flax params {path!r}"
  try:
    if path.endswith(".npz"):
      with np.load(path) as f:
        tree = _nest({k: f[k] for k in f.files})
    else:
      from flax import serialization  # pylint: disable=g-import-not-at-top
      with open(path, "rb") as f:
        tree = serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except  # msgpack and zip errors vary
    raise RnnlabError(f"cannot read {path!r} as .npz or flax msgpack params: "
                      f"{str(e).strip()[:300]}") from None
  while isinstance(tree, Mapping) and set(tree) == {"params"}:
    tree = tree["params"]
  if not isinstance(tree, Mapping) or "encoder" not in tree or set(tree) - set(PARTS):
    keys = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise RnnlabError(f"{where} is not an RNNModel params tree: expected keys "
                      f"{', '.join(PARTS)} (encoder required), got {keys}")
  encoder = {}
  for name, layer in tree["encoder"].items():
    if not isinstance(layer, Mapping):
      raise RnnlabError(f"{where}: encoder/{name} is not a dict of params")
    if "w_i" in layer:
      encoder[name] = {k: np.asarray(v) for k, v in layer.items()}
    else:
      try:
        encoder[name] = flax_weights.from_flax(layer, config.model.cell)
      except ValueError as e:
        raise RnnlabError(f"{where}: encoder/{name}: {e}") from None
  _check_encoder(encoder, config, where)
  params = dict(tree, encoder=encoder)
  source = {part: f"{part}/ of the file" for part in params}
  return params, source


# ----------------------------------------------------------------------------- keras

_KERAS_SKIPPED = ("InputLayer", "Masking", "Dropout")
_KERAS_RNN = ("SimpleRNN", "LSTM", "GRU", "Bidirectional")


def load_keras(path: str, config: ml_collections.ConfigDict,
               rnn_prefix: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
  """A .keras model file -> (partial params, {part: where it came from})."""
  del rnn_prefix  # torch only
  where = f"the Keras model {path!r}"
  if not path.endswith(".keras"):
    raise RnnlabError("importing keras weights reads a whole model saved with "
                      f"model.save('x.keras'); {path!r} is not a .keras file (a .weights.h5 "
                      "file holds no architecture)")
  os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras' first import
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise RnnlabError("importing keras weights needs Keras 3: pip install keras") from None
  try:
    model = keras.saving.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    raise RnnlabError(f"cannot load {path!r} with keras.saving.load_model: "
                      f"{str(e).strip().splitlines()[0][:300]}") from None
  embed, rnns, dense = [], [], []
  for layer in model.layers:
    cls = type(layer).__name__
    if cls in _KERAS_SKIPPED:
      continue
    if cls == "Embedding":
      embed.append(layer)
    elif cls in _KERAS_RNN and not dense:
      rnns.append(layer)
    elif cls == "Dense":
      dense.append(layer)
    else:
      raise RnnlabError(f"{where}: layer {layer.name!r} ({cls}) has no place in an RNNModel "
                        "(Embedding, recurrent layers, Dense, in this order)")
  if len(embed) > 1 or len(dense) > 1 or not rnns:
    raise RnnlabError(f"{where} has {len(embed)} Embedding, {len(rnns)} recurrent and "
                      f"{len(dense)} Dense layers; an RNNModel has at most one Embedding, "
                      "at least one recurrent layer and at most one Dense")
  try:
    encoder = keras_weights.from_keras_layers(rnns, config.model.cell)
  except ValueError as e:
    raise RnnlabError(f"{where}: {e}") from None
  _check_encoder(encoder, config, where)
  params: dict[str, Any] = {"encoder": encoder}
  source = {"encoder": ", ".join(layer.name for layer in rnns)}
  if embed:
    params["embed"] = {"embedding": np.asarray(embed[0].get_weights()[0])}
    source["embed"] = embed[0].name
  if dense:
    weights = dense[0].get_weights()
    if len(weights) != 2 or dense[0].get_config().get("activation") != "linear":
      raise RnnlabError(f"{where}: the Dense layer {dense[0].name!r} must be linear with a bias "
                        "(rnnlab's readout returns logits)")
    params["readout"] = {"kernel": np.asarray(weights[0]), "bias": np.asarray(weights[1])}
    source["readout"] = dense[0].name
  return params, source


LOADERS: dict[str, Callable[..., tuple[dict[str, Any], dict[str, str]]]] = {
    "torch": load_torch, "flax": load_flax, "keras": load_keras}
