"""The fused batched layer equals the per-example reference (`recurrent.batched_scan`) exactly in
semantics: outputs, final carries and gradients, with padding, reverse, length 0 and carries."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import models
from rnnlab.core import cells, fused, recurrent

B, T, IN, H = 5, 7, 3, 4
LENGTHS = jnp.array([3, 7, 0, 1, 5])  # unsorted, with a length-0 and a full-length sequence


def _setup(name, **options):
  cell = cells.get(name, **options)
  params = cell.init(jax.random.key(0), IN, H)
  params = jax.tree.map(lambda a: a + 0.2 * jax.random.normal(jax.random.key(7), a.shape), params)
  xs = jax.random.normal(jax.random.key(1), (B, T, IN))
  carry = jax.tree.map(lambda a: jax.random.normal(jax.random.key(9), (B,) + a.shape),
                       cell.initial_carry(H))
  return cell, params, xs, carry


def _loss(run, cell, lengths, reverse):
  """A scalar touching every output and carry, so that all cotangents are non-trivial."""
  def loss(params, xs, carry):
    final, ys = run(cell, params, xs, lengths, reverse, carry)
    return (jnp.sum(jnp.sin(ys) * jnp.arange(1, ys.shape[-1] + 1))
            + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(final)))
  return loss


def _both(cell, lengths, reverse):
  """Jitted (outputs, carries, grads) of the fused layer and of the reference, in one program."""
  def run(params, xs, carry):
    out = []
    for impl in (fused.layer, recurrent.batched_scan):
      final, ys = impl(cell, params, xs, lengths, reverse, carry)
      grads = jax.grad(_loss(impl, cell, lengths, reverse), (0, 1, 2))(params, xs, carry)
      out.append((final, ys, grads))
    return out
  return jax.jit(run)


def _close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


CASES = [(name, lengths, reverse) for name in ("vanilla", "lstm", "gru")
         for lengths, reverse in ((None, False), (LENGTHS, False), (LENGTHS, True))]
CASES.append(("irnn", LENGTHS, True))


@pytest.mark.parametrize("name,lengths,reverse", CASES,
                         ids=[f"{n}-{'pad' if l is not None else 'full'}-{'rev' if r else 'fwd'}"
                              for n, l, r in CASES])
def test_fused_equals_reference(name, lengths, reverse):
  cell, params, xs, carry = _setup(name)
  assert fused.supports(cell)
  # Garbage in the padding: masking must make it irrelevant to everything but its own grads.
  valid = jnp.arange(T)[None, :, None] < LENGTHS[:, None, None]
  xs = jnp.where(valid, xs, 100.0)
  (f_carry, f_ys, f_grads), (r_carry, r_ys, r_grads) = _both(cell, lengths, reverse)(
      params, xs, carry)
  _close(f_ys, r_ys)
  _close(f_carry, r_carry)
  # irnn (relu, identity recurrence) grows large values: compare relative to their scale.
  _close(f_grads, r_grads, rtol=1e-4 if name == "irnn" else 1e-5, atol=1e-5)
  if lengths is not None:
    pad = ~np.asarray(valid[..., 0])
    assert np.all(np.asarray(f_ys)[pad] == 0.0)              # padded outputs exactly zero
    assert np.all(np.asarray(f_grads[1])[pad] == 0.0)        # padded inputs: exactly zero grad
    # length 0: the final carry is the initial one, exactly
    for c, c0 in zip(jax.tree.leaves(f_carry), jax.tree.leaves(carry)):
      np.testing.assert_array_equal(np.asarray(c)[2], np.asarray(c0)[2])


def test_nan_padding_gives_finite_grads():
  # Selects (not products with a 0/1 mask) keep non-finite padding out of every gradient.
  cell, params, xs, _ = _setup("lstm")
  valid = jnp.arange(T)[None, :, None] < LENGTHS[:, None, None]
  xs = jnp.where(valid, xs, jnp.nan)
  loss = lambda p, x: jnp.sum(fused.layer(cell, p, x, LENGTHS)[1] ** 2)
  g_p, g_x = jax.jit(jax.grad(loss, (0, 1)))(params, xs)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(g_p))
  assert np.all(np.asarray(g_x)[~np.asarray(valid[..., 0])] == 0.0)


def test_reverse_starts_at_last_real_step():
  cell, params, xs, _ = _setup("gru")
  carry, ys = fused.layer(cell, params, xs, LENGTHS, reverse=True)
  for b in range(B):
    n = int(LENGTHS[b])
    ref_c, ref_y = recurrent.scan(cell, params, xs[b, :n][::-1])
    np.testing.assert_allclose(ys[b, :n], ref_y[::-1], rtol=1e-5, atol=1e-6)
    if n:
      np.testing.assert_allclose(carry[b], ref_c, rtol=1e-5, atol=1e-6)


def test_vmap_over_seeds_equals_loop():
  # The Trainer vmaps the whole step over seeds: params gain a leading axis.
  cell, _, xs, _ = _setup("lstm")
  params = jax.vmap(lambda k: cell.init(k, IN, H))(jax.random.split(jax.random.key(3), 3))
  def grads(impl):
    loss = lambda p: jnp.sum(jnp.tanh(impl(cell, p, xs, LENGTHS)[1]))
    return jax.vmap(jax.grad(loss))(params)
  fast, ref = jax.jit(lambda: (grads(fused.layer), grads(recurrent.batched_scan)))()
  _close(fast, ref)
  assert not np.allclose(fast["w_h"][0], fast["w_h"][1])   # the seeds really differ


def test_kind_and_fallback():
  assert fused.kind_of(cells.get("lstm", forget_bias=0.0, init="chrono")) == "lstm"
  assert fused.kind_of(cells.get("vanilla", activation="relu")) == "relu"
  # Forms it does not cover run the reference path, with the same results.
  cell, params, xs, _ = _setup("gru", reset_after=False)
  assert fused.kind_of(cell) is None
  c, ys = fused.layer(cell, params, xs, LENGTHS)
  rc, rys = recurrent.batched_scan(cell, params, xs, LENGTHS)
  _close((c, ys), (rc, rys))


def test_encoder_fused_equals_vmapped_stack():
  # The path users train with: two bidirectional layers, dropout between them, padding.
  kw = dict(cell="lstm", hidden_size=H, num_layers=2, bidirectional=True, dropout_rate=0.3)
  fast, ref = models.RecurrentEncoder(**kw), models.RecurrentEncoder(**kw, fused=False)
  xs = jax.random.normal(jax.random.key(4), (B, T, IN))
  variables = fast.init(jax.random.key(5), xs, LENGTHS)
  rngs = {"dropout": jax.random.key(6)}

  def loss(module):
    def f(v):
      carries, ys = module.apply(v, xs, LENGTHS, deterministic=False, rngs=rngs)
      return jnp.sum(ys ** 2) + sum(jnp.sum(c) for c in jax.tree.leaves(carries)), (carries, ys)
    return jax.jit(jax.value_and_grad(f, has_aux=True))(variables)

  (_, fast_out), fast_grads = loss(fast)
  (_, ref_out), ref_grads = loss(ref)
  _close(fast_out, ref_out)
  _close(fast_grads, ref_grads)


def _runs_custom_vjp(cell, params, xs):
  """Whether fused.layer traces to the fused custom VJP (the reference path has none)."""
  return "custom_vjp_call" in str(jax.make_jaxpr(
      lambda p, x: fused.layer(cell, p, x, LENGTHS))(params, xs))


@pytest.mark.parametrize("name,kind", [("lstm", "lstm"), ("gru", "gru"), ("vanilla", "tanh"),
                                       ("irnn", "relu")])
def test_classic_cell_with_fused_kind_runs_the_fused_path(name, kind):
  cell, params, xs, _ = _setup(name)
  assert cell.fused_kind == kind and fused.kind_of(cell) == kind
  assert _runs_custom_vjp(cell, params, xs)
  # The reference of the same cell has no custom VJP: the check above can fail.
  assert "custom_vjp_call" not in str(jax.make_jaxpr(
      lambda p, x: recurrent.batched_scan(cell, p, x, LENGTHS))(params, xs))


def test_replaced_step_without_fused_kind_runs_the_reference_path():
  cell, params, xs, _ = _setup("lstm")

  def doubled(p, c, x):   # a wrapped step that changes the outputs
    c, y = cell.step(p, c, x)
    return c, 2.0 * y

  wrapped = dataclasses.replace(cell, step=doubled, fused_kind=None)
  assert not fused.supports(wrapped)
  assert recurrent.choose_runner(wrapped, fused=True) == ("scan", None)
  assert not _runs_custom_vjp(wrapped, params, xs)
  _, ys = fused.layer(wrapped, params, xs, LENGTHS)
  _, plain = fused.layer(cell, params, xs, LENGTHS)
  _close(ys, 2.0 * plain)   # the wrapped step ran, not the fused LSTM
