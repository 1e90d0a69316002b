"""Tests of the deep form of RecurrentEncoder: model.residual and model.norm, for every cell."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from rnnlab import models
from rnnlab.core import cells, recurrent
from rnnlab.errors import ConfigError
from rnnlab.training import config_check, train

ALL_CELLS = ("vanilla", "lstm", "gru", "irnn", "mingru", "minlstm", "lru")
B, T, F, H = 3, 9, 5, 6


def _inputs():
  xs = jax.random.normal(jax.random.key(1), (B, T, F))
  return xs, jnp.array([T, 4, 0])


def _encoder(cell, **kw):
  kw = dict(dict(hidden_size=H, num_layers=2, residual=True, norm="layer"), **kw)
  return models.RecurrentEncoder(cell, **kw)


def _layer_norm(x, scale, bias, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("bidirectional", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_residual_layer_norm_matches_hand_written_stack(cell, bidirectional):
  """The encoder equals the documented block written out with the plain single-layer runner:
  x0 = proj(inputs); x_{k+1} = x_k + layer_k(LN_k(x_k)); out = LN_out(x_L); padding zero."""
  xs, lengths = _inputs()
  enc = _encoder(cell, bidirectional=bidirectional)
  params = enc.init(jax.random.key(0), xs, lengths)["params"]
  _, ys = enc.apply({"params": params}, xs, lengths)

  c = cells.get(cell)
  valid = (np.arange(T)[None, :] < np.asarray(lengths)[:, None])[..., None]
  x = np.asarray(xs) @ np.asarray(params["input_proj"]["kernel"]) + np.asarray(
      params["input_proj"]["bias"])
  x = np.where(valid, x, 0.0)
  directions = ("fwd", "bwd") if bidirectional else ("fwd",)
  for k in range(2):
    n = params[f"norm{k}"]
    h = _layer_norm(x, np.asarray(n["scale"]), np.asarray(n["bias"]))
    layer = [params[f"layer{k}_{d}"] for d in directions]
    _, y = jax.vmap(lambda s, n: recurrent.layer(c, layer, s, n))(jnp.asarray(h, jnp.float32),
                                                                   lengths)
    x = np.where(valid, x + np.asarray(y), 0.0)
  n = params["norm_out"]
  expected = np.where(valid, _layer_norm(x, np.asarray(n["scale"]), np.asarray(n["bias"])), 0.0)
  np.testing.assert_allclose(np.asarray(ys), expected, rtol=2e-4, atol=2e-5)
  assert np.all(np.asarray(ys)[2] == 0.0) and np.all(np.asarray(ys)[1, 4:] == 0.0)


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("residual,norm", [pytest.param(True, "none", marks=pytest.mark.slow),
                                           pytest.param(False, "rms", marks=pytest.mark.slow),
                                           (True, "rms")])
def test_fused_equals_reference_and_padding_invariant(cell, residual, norm):
  """Fused and vmapped-reference paths agree (outputs and gradients), and appending padding
  changes nothing at the real steps."""
  xs, lengths = _inputs()
  fused = _encoder(cell, residual=residual, norm=norm)
  ref = _encoder(cell, residual=residual, norm=norm, fused=False)
  params = fused.init(jax.random.key(0), xs, lengths)["params"]

  def loss(p, enc):
    return jnp.sum(jnp.sin(enc.apply({"params": p}, xs, lengths)[1]))

  np.testing.assert_allclose(loss(params, fused), loss(params, ref), rtol=1e-5)
  g_f, g_r = jax.grad(loss)(params, fused), jax.grad(loss)(params, ref)
  for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_r)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  _, ys = fused.apply({"params": params}, xs, lengths)
  padded = jnp.concatenate([xs, 7.0 * jnp.ones((B, 4, F))], axis=1)
  _, ys_padded = fused.apply({"params": params}, padded, lengths)
  np.testing.assert_allclose(ys_padded[:, :T], ys, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(ys_padded)[:, T:] == 0.0)


def test_parameter_tree_and_plain_stack_unchanged():
  xs, lengths = _inputs()
  plain = models.RecurrentEncoder("lstm", H, num_layers=2).init(jax.random.key(0), xs)["params"]
  assert sorted(plain) == ["layer0_fwd", "layer1_fwd"]
  deep = _encoder("lstm", norm="rms").init(jax.random.key(0), xs)["params"]
  assert sorted(deep) == ["input_proj", "layer0_fwd", "layer1_fwd", "norm0", "norm1", "norm_out"]
  assert deep["layer0_fwd"]["w_i"].shape[0] == H  # the first layer reads the projected input
  no_res = _encoder("lstm", residual=False).init(jax.random.key(0), xs)["params"]
  assert sorted(no_res) == ["layer0_fwd", "layer1_fwd", "norm0", "norm1"]
  with pytest.raises(ValueError, match="norm must be one of"):
    _encoder("lstm", norm="batch").init(jax.random.key(0), xs)


def test_dropout_between_layers_only_in_training():
  xs, lengths = _inputs()
  enc = _encoder("gru", dropout_rate=0.5)
  params = enc.init(jax.random.key(0), xs, lengths)
  _, a = enc.apply(params, xs, lengths)
  _, b = enc.apply(params, xs, lengths, deterministic=False, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(a, b)
  assert np.all(np.asarray(b)[2] == 0.0)


@pytest.mark.parametrize("key,value,match", [
    ("norm", "batch", "config.model.norm='batch' is not allowed"),
    ("residual", "yes", "config.model.residual must be true or false"),
])
def test_config_errors(key, value, match):
  # type_safe=False: as a config read back from JSON, where no field type guards the value.
  config = ml_collections.ConfigDict(base.get_config().to_dict(), type_safe=False)
  config.model[key] = value
  with pytest.raises(ConfigError, match=match):
    config_check.validate(config)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mingru", "lstm"])
def test_trains_through_the_trainer(cell):
  """A deep residual stack from the config trains (loss falls) on the adding problem."""
  config = base.get_config()
  config.task.name, config.task.length = "adding", 10
  config.model.update(cell=cell, hidden_size=16, num_layers=2, residual=True, norm="layer")
  config.train.update(batch_size=32, num_steps=60, learning_rate=1e-2)
  trainer = train.Trainer(config)
  state = trainer.init()
  assert "input_proj" in state.params["encoder"] and "norm_out" in state.params["encoder"]
  losses = []
  for _ in range(60):
    state, metrics = trainer.train_step(state)
    losses.append(float(np.mean(metrics["loss"])))
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
