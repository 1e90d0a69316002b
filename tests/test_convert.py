"""Weight converters: rnnlab <-> PyTorch, flax.linen, Keras 3.

Every peer model gets random NON-ZERO biases (in both of PyTorch's bias sets and both of Keras'
GRU bias rows): zero biases would hide a wrong fold or a swapped gate. Outputs are compared on a
padded batch with unsorted lengths, on the real steps, and so are the final carries.
"""

import ast
import functools
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"  # must precede the first import of keras

import flax.linen as nn
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch

from rnnlab import models
from rnnlab.core import (
  cells,  # pylint: disable=g-import-not-at-top
  recurrent,
)
from rnnlab.interop import flax_weights, keras_weights, layout, torch_weights

CELLS = ["vanilla", "lstm", "gru"]
IN, H, T, B = 3, 4, 6, 3
LENGTHS = np.array([6, 2, 4])  # unsorted, one full-length sequence
TOL = dict(rtol=1e-5, atol=1e-5)
torch.set_num_threads(1)  # tiny modules: threads only add overhead on a shared CPU


# ----------------------------------------------------------------------------- helpers

def _batch():
  x = np.random.default_rng(0).normal(size=(B, T, IN)).astype(np.float32)
  valid = np.arange(T)[None, :] < LENGTHS[:, None]
  # Padding holds garbage: a converter or runner that reads it shows up in the outputs.
  return np.where(valid[..., None], x, 7.0).astype(np.float32), valid


def _randomize(tree, seed=1):
  """Every leaf (arrays or shape structs; biases included) replaced by N(0, 0.5^2) values."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), jnp.float32), tree)


def _encoder(cell, bidirectional, num_layers=2, reset_after=True):
  options = (("reset_after", reset_after),) if cell == "gru" else ()
  return models.RecurrentEncoder(cell=cell, hidden_size=H, num_layers=num_layers,
                                 bidirectional=bidirectional, cell_options=options)


@functools.lru_cache(maxsize=None)
def _apply(cell, bidirectional, num_layers=2, reset_after=True):
  """Jitted `RecurrentEncoder.apply`, compiled once per configuration for the whole file."""
  return jax.jit(_encoder(cell, bidirectional, num_layers, reset_after).apply)


@functools.lru_cache(maxsize=None)
def _scan(cell, reverse=False):
  """Jitted `recurrent.batched_scan` of one cell: (params, xs, lengths) -> (carry, ys)."""
  return jax.jit(lambda p, xs, n: recurrent.batched_scan(cells.get(cell), p, xs, n, reverse))


def _random_encoder_params(cell, bidirectional, num_layers=2, reset_after=True, seed=1):
  """Encoder params of the right tree and shapes, all N(0, 0.5^2) (biases included)."""
  x, _ = _batch()
  enc = _encoder(cell, bidirectional, num_layers, reset_after)
  return _randomize(jax.eval_shape(enc.init, jax.random.key(0), x, LENGTHS)["params"], seed)


def _real(ys, valid):
  """ys [batch, time, F] with the padded steps zeroed (peers leave garbage there)."""
  return np.where(valid[..., None], np.asarray(ys), 0.0)


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    assert np.array_equal(np.asarray(x), np.asarray(y))


def _assert_carry_close(peer_carry, carry):
  assert jax.tree.structure(peer_carry) == jax.tree.structure(carry)
  for x, y in zip(jax.tree.leaves(peer_carry), jax.tree.leaves(carry)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def test_cell_names_and_layout_errors():
  with pytest.raises(ValueError, match="convertible cells"):
    torch_weights.from_torch({}, "transformer")
  with pytest.raises(ValueError, match="unexpected key"):
    layout.encoder_layout({"layer0_fwd": {}, "readout": {}})
  with pytest.raises(ValueError, match="directions"):
    layout.encoder_layout({"layer0_fwd": {}, "layer0_bwd": {}, "layer1_fwd": {}})
  assert layout.encoder_layout({"params": {"layer0_fwd": {}, "layer1_fwd": {}}}) == (2, False)


@pytest.mark.parametrize("module", [layout, torch_weights, flax_weights, keras_weights])
def test_import_needs_neither_torch_nor_keras(module):
  tree = ast.parse(open(module.__file__, encoding="utf-8").read())
  top = [a.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
         for a in node.names] + [node.module for node in tree.body
                                 if isinstance(node, ast.ImportFrom)]
  assert top and not [m for m in top if m and m.split(".")[0] in ("torch", "keras", "tensorflow")]


def test_missing_peer_names_the_pip_command(monkeypatch):
  params = _random_encoder_params("lstm", False, 1)
  monkeypatch.setitem(sys.modules, "torch", None)
  monkeypatch.setitem(sys.modules, "keras", None)
  with pytest.raises(ImportError, match="pip install torch"):
    torch_weights.to_torch_module(params, "lstm")
  with pytest.raises(ImportError, match="pip install keras"):
    keras_weights.to_keras_layers(params, "lstm")


# ----------------------------------------------------------------------------- PyTorch

def _run_torch(module, x):
  """Packed (unsorted) batch -> (ys [B, T, D*H] zero-padded, h_n, c_n or None) as numpy."""
  from torch.nn.utils import rnn as rnn_utils  # pylint: disable=g-import-not-at-top
  packed = rnn_utils.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(LENGTHS),
                                          batch_first=True, enforce_sorted=False)
  with torch.no_grad():
    out, state = module(packed)
  ys, _ = rnn_utils.pad_packed_sequence(out, batch_first=True, total_length=T)
  h_n, c_n = state if isinstance(state, tuple) else (state, None)
  return ys.numpy(), h_n.numpy(), None if c_n is None else c_n.numpy()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_from_torch_matches_outputs(cell, bidirectional):
  torch.manual_seed(0)
  cls = {"vanilla": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
  module = cls(IN, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
  with torch.no_grad():
    for p in module.parameters():  # distinct, non-zero bias_ih and bias_hh
      p.copy_(0.5 * torch.randn_like(p))
  x, _ = _batch()
  ref_ys, ref_h, ref_c = _run_torch(module, x)

  params = torch_weights.from_torch(module.state_dict(), cell, num_layers=2,
                                    bidirectional=bidirectional)
  carries, ys = _apply(cell, bidirectional)({"params": params}, x, LENGTHS)
  # pad_packed_sequence zero-fills padding, as rnnlab does: compare every step.
  np.testing.assert_allclose(ys, ref_ys, **TOL)
  h_n, c_n = torch_weights.carries_to_torch(carries)
  np.testing.assert_allclose(h_n, ref_h, **TOL)
  if cell == "lstm":
    np.testing.assert_allclose(c_n, ref_c, **TOL)
  else:
    assert c_n is None
  _assert_carry_close(torch_weights.carries_from_torch(ref_h, ref_c, bidirectional=bidirectional),
                      carries)
  # Layout read from the keys gives the same tree.
  _assert_trees_equal(torch_weights.from_torch(module.state_dict(), cell), params)


@pytest.mark.parametrize("cell", CELLS + ["irnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_torch_round_trip_and_outputs(cell, bidirectional):
  params = _random_encoder_params(cell, bidirectional)
  sd = torch_weights.to_torch(params, cell)
  assert all(isinstance(v, np.ndarray) for v in sd.values())
  _assert_trees_equal(torch_weights.from_torch(sd, cell, 2, bidirectional), params)

  module = torch_weights.to_torch_module(params, cell)  # strict load_state_dict: names and shapes
  if cell == "irnn":
    assert module.nonlinearity == "relu"
  x, _ = _batch()
  ref_ys, ref_h, ref_c = _run_torch(module, x)
  carries, ys = _apply(cell, bidirectional)({"params": params}, x, LENGTHS)
  np.testing.assert_allclose(ys, ref_ys, **TOL)
  h_n, c_n = torch_weights.carries_to_torch(carries)
  np.testing.assert_allclose(h_n, ref_h, **TOL)
  if cell == "lstm":
    np.testing.assert_allclose(c_n, ref_c, **TOL)


def test_to_torch_bias_convention():
  params = _random_encoder_params("gru", False, 1)
  sd = torch_weights.to_torch(params, "gru", prefix="rnn.")
  p = params["layer0_fwd"]
  np.testing.assert_array_equal(sd["rnn.bias_ih_l0"], p["b"])
  np.testing.assert_array_equal(sd["rnn.bias_hh_l0"][:2 * H], 0.0)
  np.testing.assert_array_equal(sd["rnn.bias_hh_l0"][2 * H:], p["b_hn"])
  np.testing.assert_array_equal(sd["rnn.weight_ih_l0"], np.asarray(p["w_i"]).T)
  # Keys of a larger model: only the prefixed ones are read.
  sd["readout.weight"] = np.zeros((2, 2), np.float32)
  _assert_trees_equal(torch_weights.from_torch(sd, "gru", prefix="rnn."), params)


def test_torch_errors():
  params = _random_encoder_params("lstm", True)
  sd = torch_weights.to_torch(params, "lstm")
  broken = {k: v for k, v in sd.items() if k != "bias_hh_l1_reverse"}
  with pytest.raises(ValueError, match="lacks.*bias_hh_l1_reverse"):
    torch_weights.from_torch(broken, "lstm", 2, True)
  with pytest.raises(ValueError, match="unexpected state_dict keys"):
    torch_weights.from_torch(sd, "lstm", num_layers=1, bidirectional=True)
  with pytest.raises(ValueError, match="do not fit a torch gru"):
    torch_weights.from_torch(sd, "gru")
  with pytest.raises(ValueError, match="proj_size"):
    torch_weights.from_torch({**sd, "weight_hr_l0": sd["weight_hh_l0"]}, "lstm")
  with pytest.raises(ValueError, match="no state_dict keys"):
    torch_weights.from_torch(sd, "lstm", prefix="encoder.")
  gru_old = _random_encoder_params("gru", False, 1, reset_after=False)
  with pytest.raises(ValueError, match="reset_after=False"):
    torch_weights.to_torch(gru_old, "gru")
  with pytest.raises(ValueError, match="shape"):
    torch_weights.to_torch(params, "vanilla")


# ----------------------------------------------------------------------------- flax.linen

FLAX_CELLS = [("vanilla", "SimpleCell"), ("lstm", "LSTMCell"), ("lstm", "OptimizedLSTMCell"),
              ("gru", "GRUCell")]


def _run_flax(flax_cls, variables, x, reverse):
  rnn = nn.RNN(getattr(nn, flax_cls)(features=H), return_carry=True, reverse=reverse,
               keep_order=True)
  return rnn.apply(variables, x, seq_lengths=LENGTHS)


@pytest.mark.parametrize("cell,flax_cls", FLAX_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_from_flax_matches_outputs(cell, flax_cls, reverse):
  x, valid = _batch()
  rnn = nn.RNN(getattr(nn, flax_cls)(features=H))
  variables = _randomize(jax.eval_shape(rnn.init, jax.random.key(0), x))
  ref_carry, ref_ys = _run_flax(flax_cls, variables, x, reverse)

  params = flax_weights.from_flax(variables["params"]["cell"], cell)
  carry, ys = _scan(cell, reverse)(params, x, LENGTHS)
  np.testing.assert_allclose(ys, _real(ref_ys, valid), **TOL)
  _assert_carry_close(flax_weights.carry_from_flax(ref_carry, cell), carry)
  # Wrappers are stripped: the whole variables dict converts the same.
  _assert_trees_equal(flax_weights.from_flax(variables, cell), params)


@pytest.mark.parametrize("cell,flax_cls", FLAX_CELLS)
def test_to_flax_round_trip_and_outputs(cell, flax_cls):
  x, valid = _batch()
  params = _randomize(cells.get(cell).init(jax.random.key(0), IN, H))
  tree = flax_weights.to_flax(params, cell)
  _assert_trees_equal(flax_weights.from_flax(tree, cell), params)
  # The tree is exactly what flax itself creates (names and shapes).
  init = jax.eval_shape(nn.RNN(getattr(nn, flax_cls)(features=H)).init, jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, init["params"]["cell"]) == jax.tree.map(jnp.shape, tree)

  ref_carry, ref_ys = _run_flax(flax_cls, {"params": {"cell": tree}}, x, False)
  carry, ys = _scan(cell)(params, x, LENGTHS)
  np.testing.assert_allclose(ys, _real(ref_ys, valid), **TOL)
  _assert_carry_close(ref_carry, flax_weights.carry_to_flax(carry, cell))


def test_flax_carries_and_errors():
  h, c = jnp.ones((H,)), jnp.zeros((H,))
  assert flax_weights.carry_to_flax(cells.LSTMState(h=h, c=c), "lstm") == (c, h)
  state = flax_weights.carry_from_flax((c, h), "lstm")
  assert isinstance(state, cells.LSTMState) and state.h is h and state.c is c
  with pytest.raises(ValueError, match="LSTMState"):
    flax_weights.carry_to_flax((h, c), "lstm")
  assert flax_weights.carry_to_flax(h, "gru") is h

  gru_old = cells.get("gru", reset_after=False).init(jax.random.key(0), IN, H)
  with pytest.raises(ValueError, match="reset_after=False"):
    flax_weights.to_flax(gru_old, "gru")
  lstm = flax_weights.to_flax(cells.get("lstm").init(jax.random.key(0), IN, H), "lstm")
  del lstm["hf"]
  with pytest.raises(ValueError, match="'hf'"):
    flax_weights.from_flax(lstm, "lstm")
  with pytest.raises(ValueError, match="lack"):
    flax_weights.from_flax(lstm, "gru")


# ----------------------------------------------------------------------------- Keras 3

KERAS_CASES = [("vanilla", True), ("lstm", True), ("gru", True), ("gru", False)]  # reset_after


def _run_keras(layers, x, valid):
  """Stack of return_sequences/return_state layers on a masked batch -> (ys, last layer states)."""
  out = (x,)
  for layer in layers:
    out = layer(out[0], mask=valid)
  to_np = keras.ops.convert_to_numpy
  return to_np(out[0]), [to_np(s) for s in out[1:]]


def _rnnlab_states(cell, layer_carries):
  """The encoder's last-layer carries in Keras' order: per direction h (, c)."""
  states = []
  for carry in layer_carries:
    states += [carry.h, carry.c] if cell == "lstm" else [carry]
  return states


@pytest.mark.parametrize("cell,reset_after", KERAS_CASES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_from_keras_matches_outputs(cell, reset_after, bidirectional):
  x, valid = _batch()
  kwargs = dict(return_sequences=True, return_state=True)
  if cell == "gru":
    kwargs["reset_after"] = reset_after
  cls = {"vanilla": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
  layers = []
  rng = np.random.default_rng(2)
  for k in range(2):
    layer = cls[cell](H, **kwargs)
    layer = keras.layers.Bidirectional(layer) if bidirectional else layer
    layer.build((None, T, IN if k == 0 else H * (1 + bidirectional)))
    # Keras initialises biases to zero (LSTM forget 1): overwrite all, biases included.
    layer.set_weights([0.5 * rng.normal(size=w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    layers.append(layer)
  ref_ys, ref_states = _run_keras(layers, x, valid)

  params = keras_weights.from_keras_layers(layers, cell)
  carries, ys = _apply(cell, bidirectional, reset_after=reset_after)(
      {"params": params}, x, LENGTHS)
  np.testing.assert_allclose(ys, _real(ref_ys, valid), **TOL)
  for ref, got in zip(ref_states, _rnnlab_states(cell, carries[-1]), strict=True):
    np.testing.assert_allclose(got, ref, **TOL)


@pytest.mark.parametrize("cell,reset_after", KERAS_CASES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_keras_round_trip_and_outputs(cell, reset_after, bidirectional):
  x, valid = _batch()
  params = _random_encoder_params(cell, bidirectional, reset_after=reset_after)
  for p in params.values():  # per-cell lists
    _assert_trees_equal(keras_weights.from_keras(keras_weights.to_keras(p, cell), cell), p)
  layers = keras_weights.to_keras_layers(params, cell, return_sequences=True, return_state=True)
  _assert_trees_equal(keras_weights.from_keras_layers(layers, cell), params)

  ref_ys, ref_states = _run_keras(layers, x, valid)
  carries, ys = _apply(cell, bidirectional, reset_after=reset_after)(
      {"params": params}, x, LENGTHS)
  np.testing.assert_allclose(ys, _real(ref_ys, valid), **TOL)
  for ref, got in zip(ref_states, _rnnlab_states(cell, carries[-1]), strict=True):
    np.testing.assert_allclose(got, ref, **TOL)


def test_keras_gru_bias_convention():
  params = _randomize(cells.get("gru").init(jax.random.key(0), IN, H))
  kernel, rec, bias = keras_weights.to_keras(params, "gru")
  assert bias.shape == (2, 3 * H)
  w_i = np.asarray(params["w_i"])
  np.testing.assert_array_equal(kernel[:, :H], w_i[:, H:2 * H])  # Keras z = rnnlab z
  np.testing.assert_array_equal(kernel[:, H:2 * H], w_i[:, :H])  # Keras r = rnnlab r
  np.testing.assert_array_equal(bias[1, :2 * H], 0.0)
  np.testing.assert_array_equal(bias[1, 2 * H:], params["b_hn"])
  # A recurrent z/r bias folds into b; the h part stays inside the reset product.
  bias = bias.copy()
  bias[1, :H] = 1.0
  folded = keras_weights.from_keras([kernel, rec, bias], "gru")
  np.testing.assert_allclose(folded["b"][H:2 * H], np.asarray(params["b"])[H:2 * H] + 1.0)
  np.testing.assert_array_equal(folded["b_hn"], params["b_hn"])


def test_keras_errors():
  lstm = keras.layers.LSTM(H)
  lstm.build((None, T, IN))
  with pytest.raises(ValueError, match="expected a Keras GRU"):
    keras_weights.from_keras_layers([lstm], "gru")
  with pytest.raises(ValueError, match="do not fit a gru"):
    keras_weights.from_keras(lstm, "gru")
  relu = keras.layers.LSTM(H, activation="relu")
  relu.build((None, T, IN))
  with pytest.raises(ValueError, match="activation"):
    keras_weights.from_keras_layers([relu], "lstm")
  with pytest.raises(ValueError, match="reset_after=True"):
    keras_weights.from_keras(keras_weights.to_keras(cells.get("gru").init(jax.random.key(0), IN, H), "gru"),
                       "gru", reset_after=False)
  with pytest.raises(ValueError, match="Bidirectional"):
    keras_weights.from_keras([np.zeros((IN, 4 * H))] * 6, "lstm")
