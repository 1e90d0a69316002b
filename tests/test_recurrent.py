"""The masked scan runner: padding, reverse, bidirectional, stacks, vmap/jit, gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rnnlab import models
from rnnlab.core import cells, recurrent

CELLS = ["vanilla", "lstm", "gru"]
IN, H, T = 3, 4, 6


def _setup(name, key=0):
  cell = cells.get(name)
  params = cell.init(jax.random.key(key), IN, H)
  params = jax.tree.map(lambda a: a + 0.2 * jax.random.normal(jax.random.key(7), a.shape), params)
  xs = jax.random.normal(jax.random.key(key + 1), (T, IN))
  return cell, params, xs


def _pad(xs, n):
  # Padding filled with large garbage: masking must make it irrelevant.
  return jnp.concatenate([xs, 100.0 * jnp.ones((n, xs.shape[1]))], axis=0)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 37])
def test_padding_invariance(name, reverse, pad):
  cell, params, xs = _setup(name)
  ref_carry, ref_ys = recurrent.scan(cell, params, xs, reverse=reverse)
  carry, ys = recurrent.scan(cell, params, _pad(xs, pad), length=T, reverse=reverse)
  np.testing.assert_allclose(ys[:T], ref_ys, rtol=1e-6, atol=1e-7)
  for a, b in zip(_leaves(carry), _leaves(ref_carry)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert np.all(np.asarray(ys[T:]) == 0.0)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("pad", [0, 1, 37])
def test_bidirectional_padded_equals_unpadded(name, pad):
  cell, p_f, xs = _setup(name)
  p_b = cell.init(jax.random.key(11), IN, H)
  (cf, cb), ys = recurrent.bidirectional(cell, p_f, p_b, _pad(xs, pad), length=T)
  (rf, rb), ref = recurrent.bidirectional(cell, p_f, p_b, xs)
  assert ys.shape == (T + pad, 2 * H)
  np.testing.assert_allclose(ys[:T], ref, rtol=1e-6, atol=1e-7)
  assert np.all(np.asarray(ys[T:]) == 0.0)
  for a, b in zip(_leaves((cf, cb)), _leaves((rf, rb))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CELLS)
def test_reverse_matches_flipped_forward(name):
  # The backward direction starts at the last real token: it equals a forward scan of the
  # real steps flipped, whatever follows them.
  cell, params, xs = _setup(name)
  n = 4
  carry, ys = recurrent.scan(cell, params, xs, length=n, reverse=True)
  ref_carry, ref_ys = recurrent.scan(cell, params, xs[:n][::-1])
  np.testing.assert_allclose(ys[:n], ref_ys[::-1], rtol=1e-6, atol=1e-7)
  for a, b in zip(_leaves(carry), _leaves(ref_carry)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_length_zero_and_full(name, reverse):
  cell, params, xs = _setup(name)
  carry, ys = recurrent.scan(cell, params, xs, length=0, reverse=reverse)
  for a, b in zip(_leaves(carry), _leaves(cell.initial_carry(H))):
    np.testing.assert_array_equal(a, b)
  assert np.all(np.asarray(ys) == 0.0)
  full = recurrent.scan(cell, params, xs, length=T, reverse=reverse)
  ref = recurrent.scan(cell, params, xs, reverse=reverse)
  for a, b in zip(_leaves(full), _leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CELLS)
def test_vmap_equals_loop_with_traced_unsorted_lengths(name):
  cell, params, _ = _setup(name)
  xs = jax.random.normal(jax.random.key(5), (5, T, IN))
  lengths = jnp.array([3, 6, 0, 1, 5])  # any order: no sorting as in packed sequences
  fn = jax.jit(lambda x, n: recurrent.batched_scan(cell, params, x, n, reverse=True))
  carry, ys = fn(xs, lengths)
  for b in range(5):
    c_b, y_b = recurrent.scan(cell, params, xs[b], int(lengths[b]), reverse=True)
    np.testing.assert_allclose(ys[b], y_b, rtol=1e-5, atol=1e-6)
    for a, ref in zip(_leaves(jax.tree.map(lambda t: t[b], carry)), _leaves(c_b)):
      np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)


def test_nested_vmap_two_batch_axes():
  cell, params, _ = _setup("lstm")
  xs = jax.random.normal(jax.random.key(2), (2, 3, T, IN))
  lengths = jnp.array([[1, 6, 3], [0, 2, 5]])
  inner = jax.vmap(recurrent.scan, in_axes=(None, None, 0, 0))
  fn = jax.vmap(lambda x, n: inner(cell, params, x, n))
  carry, ys = fn(xs, lengths)
  assert ys.shape == (2, 3, T, H) and carry.h.shape == (2, 3, H)
  c, y = recurrent.scan(cell, params, xs[1, 2], 5)
  np.testing.assert_allclose(ys[1, 2], y, rtol=1e-6)
  np.testing.assert_allclose(carry.c[1, 2], c.c, rtol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_jit_equals_eager(name):
  cell, params, xs = _setup(name)
  eager = recurrent.scan(cell, params, xs, length=4)
  jitted = jax.jit(lambda p, x: recurrent.scan(cell, p, x, length=4))(params, xs)
  for a, b in zip(_leaves(eager), _leaves(jitted)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CELLS)
def test_gradients_match_finite_differences(name):
  cell, params, xs = _setup(name)

  def loss(p, x):
    carry, ys = recurrent.scan(cell, p, x, length=5)
    return jnp.sum(ys ** 2) + jnp.sum(jax.tree.leaves(carry)[0])

  check_grads(loss, (params, xs), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-3)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_exactly_zero_at_padding(name, reverse):
  cell, params, xs = _setup(name)
  xs = _pad(xs, 3)
  g = jax.grad(lambda x: jnp.sum(jnp.sin(recurrent.scan(cell, params, x, T, reverse)[1])))(xs)
  assert np.all(np.asarray(g[T:]) == 0.0)
  assert np.all(np.abs(np.asarray(g[:T])).sum(axis=1) > 0.0)


def test_scanned_not_unrolled():
  cell, params, _ = _setup("lstm")

  def count_eqns(jaxpr):  # equations, including those of the scan body
    n = 0
    for eqn in jaxpr.eqns:
      n += 1
      if "jaxpr" in eqn.params:
        n += count_eqns(eqn.params["jaxpr"].jaxpr)
    return n

  size = lambda t: count_eqns(jax.make_jaxpr(
      lambda x: recurrent.scan(cell, params, x, length=3))(jnp.zeros((t, IN))).jaxpr)
  assert size(10) == size(1000) < 100


def test_scan_rejects_batched_input():
  cell, params, _ = _setup("gru")
  with pytest.raises(ValueError, match="unbatched"):
    recurrent.scan(cell, params, jnp.zeros((2, T, IN)))


def test_bidirectional_has_twice_the_parameters():
  # Notes Q2: a bidirectional RNN has 2x the parameters.
  count = lambda v: sum(x.size for x in jax.tree.leaves(v))
  xs = jnp.zeros((2, T, IN))
  for name in CELLS:
    uni = models.RecurrentEncoder(name, H, num_layers=1).init(jax.random.key(0), xs)
    bi = models.RecurrentEncoder(name, H, num_layers=1, bidirectional=True).init(
        jax.random.key(0), xs)
    assert count(bi) == 2 * count(uni)


def test_stack_and_dropout():
  cell = cells.get("gru")
  key = jax.random.key(0)
  stack_params = [[cell.init(jax.random.fold_in(key, 2 * k + d), IN if k == 0 else 2 * H, H)
                   for d in range(2)] for k in range(3)]
  xs = jax.random.normal(jax.random.key(1), (T, IN))
  carries, ys = recurrent.stack(cell, stack_params, xs, length=4)
  assert len(carries) == 3 and ys.shape == (T, 2 * H)
  # Layer by layer by hand.
  h = xs
  for params in stack_params:
    _, h = recurrent.bidirectional(cell, params[0], params[1], h, 4)
  np.testing.assert_allclose(ys, h, rtol=1e-6)
  _, dropped = recurrent.stack(cell, stack_params, xs, 4, 0.5, jax.random.key(3))
  assert not np.allclose(dropped, ys) and np.all(np.asarray(dropped[4:]) == 0.0)
  with pytest.raises(ValueError, match="dropout_key"):
    recurrent.stack(cell, stack_params, xs, 4, 0.5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_model_readouts_and_padding(bidirectional):
  enc = models.RecurrentEncoder("lstm", H, num_layers=2, bidirectional=bidirectional)
  model = models.RNNModel(enc, out_features=1, readout="last")
  xs = jax.random.normal(jax.random.key(0), (3, T, IN))
  lengths = jnp.array([2, 6, 4])
  v = model.init(jax.random.key(1), xs, lengths)
  out = model.apply(v, xs, lengths)
  padded = model.apply(v, jnp.concatenate([xs, jnp.ones((3, 5, IN))], 1), lengths)
  np.testing.assert_allclose(out, padded, rtol=1e-6)
  # Each row equals running that sequence alone, unpadded.
  for b in range(3):
    alone = model.apply(v, xs[b:b + 1, :int(lengths[b])], None)
    np.testing.assert_allclose(out[b], alone[0], rtol=1e-5, atol=1e-6)
  tagger = models.RNNModel(enc, out_features=7, vocab_size=11)
  tokens = jnp.ones((3, T), jnp.int32)
  vt = tagger.init(jax.random.key(2), tokens, lengths)
  logits = tagger.apply(vt, tokens, lengths)
  assert logits.shape == (3, T, 7) and np.all(np.asarray(logits[0, 2:]) == 0.0)


def test_flax_nn_rnn_runs_over_padding_but_rnnlab_does_not():
  # The edge case DESIGN.md names: flax.linen's nn.RNN does not zero padded outputs.
  cell, params, xs = _setup("vanilla")
  xs = _pad(xs, 2)[None]
  fparams = {"cell": {"i": {"kernel": params["w_i"], "bias": params["b"]},
                      "h": {"kernel": params["w_h"]}}}
  f_ys = nn.RNN(nn.SimpleCell(H)).apply({"params": fparams}, xs, seq_lengths=jnp.array([T]))
  _, ys = recurrent.batched_scan(cell, params, xs, jnp.array([T]))
  np.testing.assert_allclose(ys[0, :T], f_ys[0, :T], rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(ys[0, T:]) == 0) and not np.all(np.asarray(f_ys[0, T:]) == 0)


def test_sequence_mask_shapes_and_values():
  from rnnlab.core.mask import sequence_mask
  mask = sequence_mask(jnp.array([0, 2, 3]), 3)
  assert mask.shape == (3, 3) and mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask, [[False] * 3, [True, True, False], [True] * 3])
  np.testing.assert_array_equal(sequence_mask(1, 3), [True, False, False])   # one sequence


@pytest.mark.parametrize("name,method,expect", [
    ("lstm", None, ("scan", None)), ("gru", "auto", ("scan", None)),
    ("mingru", "associative", ("linear", "associative")), ("lru", None, ("scan", None))])
def test_choose_runner(name, method, expect):
  assert recurrent.choose_runner(cells.get(name), method) == expect
  fused = recurrent.choose_runner(cells.get(name), method, fused=True)
  assert fused == (("fused", None) if name in ("lstm", "gru") else expect)
  assert recurrent.choose_runner(cells.get("minlstm", scan_method="sequential"), fused=True) == (
      "linear", "sequential")
  with pytest.raises(ValueError, match="no linear form"):
    recurrent.choose_runner(cells.get("lstm"), "associative")


ALL_CELLS = ["vanilla", "irnn", "lstm", "gru", "mingru", "minlstm", "lru"]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in ("mingru", "minlstm", "lru") else n
    for n in ALL_CELLS])
def test_float64_params_and_inputs_run_in_float64(name):
  # Converted torch weights stay float64 under x64: the default carry must follow them.
  from rnnlab.core import fused
  cell = cells.get(name)
  B = 3
  params32 = cell.init(jax.random.key(0), IN, H)
  xs32 = jax.random.normal(jax.random.key(1), (B, T, IN))
  lengths = jnp.array([T, 2, 0])
  runs = {"scan": lambda p, x: recurrent.scan(cell, p, x[0], lengths[1]),
          "fused": lambda p, x: fused.layer(cell, p, x, lengths)}
  ref = {k: run(params32, xs32) for k, run in runs.items()}
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params32)
    xs64 = jnp.asarray(np.asarray(xs32), jnp.float64)
    for k, run in runs.items():
      carry, ys = run(params64, xs64)
      assert ys.dtype == jnp.float64, k
      for leaf in jax.tree.leaves(carry):
        assert leaf.dtype == (jnp.complex128 if name == "lru" else jnp.float64), k
      grads = jax.grad(lambda p: jnp.sum(run(p, xs64)[1] ** 2))(params64)
      assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(grads)), k
      _close_to = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                          rtol=1e-4, atol=1e-5)
      _close_to(ys, ref[k][1])
      jax.tree.map(_close_to, carry, ref[k][0])
