"""Tests of the parallel-in-time cells (minGRU, minLSTM, LRU) and the linear-recurrence runner."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import models
from rnnlab.core import cells, linear_recurrence, recurrent

NEW_CELLS = ("mingru", "minlstm", "lru")
# None: the classic masked step-by-step scan; the others go through rnnlab.core.linear_recurrence.
RUNNERS = (None, "sequential", "associative")


def _f32(x):
  return np.asarray(x, np.float32)


def _close(actual, expected, rtol=1e-5):
  """Relative agreement, scaled by the size of the expected array (elements near 0 included)."""
  expected = np.asarray(expected)
  atol = rtol * max(float(np.abs(expected).max(initial=0.0)), 1e-30)
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- linear_scan

def _np_linear_scan(a, b, h0, length, reverse):
  """Independent reference: h_t = a_t h_{t-1} + b_t over the real steps, in float64."""
  a, b, h = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(h0, np.float64)
  hs = np.zeros_like(b)
  steps = range(length - 1, -1, -1) if reverse else range(length)
  for t in steps:
    h = a[t] * h + b[t]
    hs[t] = h
  return h, hs


@pytest.mark.parametrize("length", [0, 1, 4, 7, None])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("method", ["sequential", "associative"])
def test_linear_scan_matches_numpy_loop(length, reverse, method):
  rng = np.random.default_rng(0)
  a = rng.uniform(0.3, 1.0, (7, 3)).astype(np.float32)
  b = rng.normal(size=(7, 3)).astype(np.float32)
  h0 = rng.normal(size=3).astype(np.float32)
  h, hs = linear_recurrence.linear_scan(a, b, h0, length, reverse, method)
  ref_h, ref_hs = _np_linear_scan(a, b, h0, 7 if length is None else length, reverse)
  _close(h, ref_h)
  _close(hs, ref_hs)
  if length is not None:
    assert np.all(np.asarray(hs)[length:] == 0.0)


def _methods_outputs_and_grads(time_steps, state, lengths, paddings):
  """Per (padded, reverse, method): outputs (h, hs) and gradients wrt (a, b, h0), one jit.

  Padded runs use `lengths` (one per batch row, traced); unpadded runs pass length=None.
  """
  batch = len(lengths)
  rng = np.random.default_rng(time_steps)
  a = _f32(rng.uniform(0.5, 1.0, (batch, time_steps, state)))
  b = _f32(rng.standard_normal((batch, time_steps, state)))
  h0 = _f32(rng.standard_normal((batch, state)))
  cotangents = (_f32(rng.standard_normal((batch, state))),
                _f32(rng.standard_normal((batch, time_steps, state))))

  @jax.jit
  def run_all(a, b, h0, n):
    out = {}
    for padded in paddings:
      for reverse in (False, True):
        for method in ("sequential", "associative"):
          def run(a, b, h0):
            scan = lambda a, b, h0, n: linear_recurrence.linear_scan(a, b, h0, n, reverse, method)
            in_axes = (0, 0, 0, 0 if padded else None)
            return jax.vmap(scan, in_axes=in_axes)(a, b, h0, n if padded else None)
          outputs, vjp = jax.vjp(run, a, b, h0)
          out[padded, reverse, method] = (outputs, vjp(cotangents))
    return out

  return run_all(a, b, h0, jnp.asarray(lengths))


@pytest.mark.parametrize("time_steps,state,lengths,paddings", [
    (1, 3, (1, 0), (False, True)), (7, 3, (7, 4, 0), (False, True)),
    # At T = 4096 the row of length 4096 is the unpadded case (compiling the associative scan's
    # gradient at this length is the slow part of this file, so length=None is tested at 1 and 7).
    (4096, 4, (4096, 1500), (True,))])
def test_sequential_and_associative_agree(time_steps, state, lengths, paddings):
  """Outputs and gradients, with and without padding, forward and reverse."""
  out = _methods_outputs_and_grads(time_steps, state, lengths, paddings)
  for padded in paddings:
    for reverse in (False, True):
      seq, assoc = out[padded, reverse, "sequential"], out[padded, reverse, "associative"]
      for x_a, x_s in zip(jax.tree_util.tree_leaves(assoc), jax.tree_util.tree_leaves(seq)):
        _close(x_a, x_s)
      if padded:
        (_, hs), (g_a, g_b, _) = assoc
        for row, n in enumerate(lengths):
          for arr in (hs, g_a, g_b):  # outputs and gradients at padding
            assert np.all(np.asarray(arr[row, n:]) == 0.0)


def test_linear_scan_complex_coefficients_agree():
  """LRU-like complex a (constant over time) and b: outputs and gradients of a real loss."""
  rng = np.random.default_rng(3)
  complex_normal = lambda *shape: (rng.standard_normal(shape)
                                   + 1j * rng.standard_normal(shape)).astype(np.complex64)
  lam = (0.95 * np.exp(1j * np.linspace(0.1, 3.0, 5))).astype(np.complex64)
  b, h0, w = complex_normal(40, 5), complex_normal(5), complex_normal(40, 5)

  @jax.jit
  def run(lam, b, h0):
    out = []
    for method in ("sequential", "associative"):
      def loss(lam, b, h0):
        h, hs = linear_recurrence.linear_scan(lam, b, h0, 29, True, method)
        return jnp.sum(jnp.real(w * hs)) + jnp.sum(jnp.abs(h) ** 2), (h, hs)
      out.append(jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(lam, b, h0))
    return out

  seq, assoc = run(lam, b, h0)
  for x_a, x_s in zip(jax.tree_util.tree_leaves(assoc), jax.tree_util.tree_leaves(seq)):
    assert x_a.dtype == jnp.complex64
    _close(x_a, x_s)


def test_method_validation_and_auto():
  with pytest.raises(ValueError, match="method"):
    linear_recurrence.linear_scan(jnp.ones((3, 2)), jnp.ones((3, 2)), method="parallel")
  assert linear_recurrence.choose_method(4096, "cpu") == "sequential"
  assert linear_recurrence.choose_method(4096, "gpu") == "associative"
  gru = cells.get("gru")
  params = gru.init(jax.random.PRNGKey(0), 2, 3)
  xs = jnp.ones((4, 2))
  with pytest.raises(ValueError, match="linear form"):
    recurrent.scan(gru, params, xs, method="associative")
  with pytest.raises(ValueError, match="method"):
    recurrent.scan(gru, params, xs, method="bogus")
  np.testing.assert_array_equal(recurrent.scan(gru, params, xs, 2, method="sequential")[1],
                                recurrent.scan(gru, params, xs, 2)[1])
  with pytest.raises(ValueError):
    cells.get("mingru", scan_method="bogus")


# ----------------------------------------------------------------------------- cells vs NumPy

def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_mingru(p, xs, h):
  w, b = p["w_i"], p["b"]
  H = b.shape[0] // 2
  ys = []
  for x in xs:
    z = _sig(x @ w[:, :H] + b[:H])
    h_tilde = x @ w[:, H:] + b[H:]
    h = (1.0 - z) * h + z * h_tilde
    ys.append(h)
  return h, np.stack(ys)


def _np_minlstm(p, xs, h):
  w, b = p["w_i"], p["b"]
  H = b.shape[0] // 3
  ys = []
  for x in xs:
    f = _sig(x @ w[:, :H] + b[:H])
    i = _sig(x @ w[:, H:2 * H] + b[H:2 * H])
    h_tilde = x @ w[:, 2 * H:] + b[2 * H:]
    h = f / (f + i) * h + i / (f + i) * h_tilde
    ys.append(h)
  return h, np.stack(ys)


def _np_lru(p, xs, h):
  lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
  B = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[None, :]
  C = p["C_re"] + 1j * p["C_im"]
  ys = []
  for x in xs:
    h = lam * h + x @ B
    ys.append((h @ C).real + x @ p["D"])
  return h, np.stack(ys)


_NP_CELLS = {"mingru": _np_mingru, "minlstm": _np_minlstm, "lru": _np_lru}


@functools.lru_cache(maxsize=None)
def _jitted_init(name, input_size, hidden_size):
  cell = cells.get(name)
  return jax.jit(lambda key: cell.init(key, input_size, hidden_size))


def _perturbed_params(name, seed, input_size, hidden_size):
  """Initial params plus noise, so zero biases and symmetric inits cannot hide a wrong index."""
  params = _jitted_init(name, input_size, hidden_size)(jax.random.PRNGKey(seed))
  rng = np.random.default_rng(seed)
  return {k: _f32(np.asarray(v) + 0.3 * rng.standard_normal(v.shape)) for k, v in params.items()}


@pytest.mark.parametrize("name", NEW_CELLS)
def test_cell_matches_numpy_loop(name):
  """Every runner (classic step scan, sequential, associative) against the NumPy equations."""
  cell = cells.get(name)
  params = _perturbed_params(name, 0, 3, 5)
  xs = _f32(np.random.default_rng(1).standard_normal((11, 3)))
  h0 = cell.initial_carry(5)
  assert h0.shape == (5,)
  if name == "lru":
    assert h0.dtype == jnp.complex64
    h0 = h0 + (0.2 - 0.1j)  # a nonzero initial state exercises the carry argument
  else:
    h0 = h0 + 0.3
  np_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  ref_h, ref_ys = _NP_CELLS[name](np_params, np.asarray(xs, np.float64), np.asarray(h0))
  run = jax.jit(lambda p, x, c: [recurrent.scan(cell, p, x, carry=c, method=runner)
                                 for runner in RUNNERS])
  for h, ys in run(params, xs, h0):
    assert ys.shape == (11, 5) and ys.dtype == jnp.float32
    _close(ys, ref_ys, rtol=2e-5)
    _close(h, ref_h, rtol=2e-5)


def test_param_shapes_and_hidden_size():
  shapes = {
      "mingru": {"w_i": (3, 10), "b": (10,)},
      "minlstm": {"w_i": (3, 15), "b": (15,)},
      "lru": {"nu_log": (5,), "theta_log": (5,), "gamma_log": (5,), "B_re": (3, 5),
              "B_im": (3, 5), "C_re": (5, 5), "C_im": (5, 5), "D": (3, 5)},
  }
  for name, expected in shapes.items():
    cell = cells.get(name)
    params = jax.eval_shape(lambda key: cell.init(key, 3, 5), jax.random.PRNGKey(0))
    assert {k: v.shape for k, v in params.items()} == expected
    assert cell.hidden_size_of(params) == 5
  minlstm = _jitted_init("minlstm", 3, 5)(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(minlstm["b"], np.r_[np.ones(5), np.zeros(10)])


# ----------------------------------------------------------------------------- LRU init

@pytest.mark.parametrize("r_min,r_max,max_phase", [(0.9, 0.999, 2 * math.pi),
                                                   (0.4, 0.6, math.pi / 10)])
def test_lru_init_ring(r_min, r_max, max_phase):
  options = {} if r_min == 0.9 else {"r_min": r_min, "r_max": r_max, "max_phase": max_phase}
  init = jax.jit(cells.get("lru", **options).init, static_argnums=(1, 2))
  params = init(jax.random.PRNGKey(0), 4, 2000)
  lam = np.asarray(np.exp(-np.exp(np.float64(params["nu_log"]))
                          + 1j * np.exp(np.float64(params["theta_log"]))))
  modulus, phase = np.abs(lam), np.exp(np.float64(params["theta_log"]))
  eps = 1e-6  # float32 rounding of nu_log
  assert modulus.min() >= r_min - eps and modulus.max() <= r_max + eps
  assert phase.min() >= 0.0 and phase.max() <= max_phase * (1 + eps)
  # |lambda|^2 uniform on [r_min^2, r_max^2], phase uniform on [0, max_phase]: means and spread.
  np.testing.assert_allclose(np.mean(modulus ** 2), (r_min ** 2 + r_max ** 2) / 2,
                             atol=0.02 * (r_max ** 2 - r_min ** 2) + 1e-6)
  np.testing.assert_allclose(np.mean(phase), max_phase / 2, atol=0.03 * max_phase)
  assert modulus.max() - modulus.min() > 0.9 * (r_max - r_min)
  np.testing.assert_allclose(np.exp(params["gamma_log"]), np.sqrt(1 - modulus ** 2), rtol=1e-4)


def test_lru_bad_options():
  for options in ({"r_min": 0.9, "r_max": 0.5}, {"r_max": 1.0}, {"max_phase": 0.0}):
    with pytest.raises(ValueError):
      cells.get("lru", **options)


# ----------------------------------------------------------------------------- padding

def _key(runner, kind):
  return f"{runner or 'classic'}/{kind}"


# The padding tests use the classic runner and the linear runner's associative method; the
# sequential method shares everything with it but the scan, which the tests above compare.
PADDING_RUNNERS = (None, "associative")


def _bidirectional_every_runner(name, params_fwd, params_bwd, xs, lengths, grads):
  """Per runner: `recurrent.bidirectional` ((carry_fwd, carry_bwd), ys [batch, time, 2H]) and, if
  `grads`, the gradient of a loss of both wrt xs. Its two halves are a forward and a reverse scan,
  so this covers both directions.

  xs: [batch, time, input]; lengths: [batch] (traced) or None. One jit for all runners: compiling
  is what costs time here.
  """

  @jax.jit
  def run_all(xs, lengths):
    out = {}
    for runner in PADDING_RUNNERS:
      cell = cells.get(name, scan_method=runner)  # bidirectional runs scan with the cell default

      def loss(x, n):
        (c_f, c_b), ys = recurrent.bidirectional(cell, params_fwd, params_bwd, x, n)
        value = jnp.sum(ys ** 2) + jnp.sum(jnp.abs(c_f) ** 2) + jnp.sum(jnp.abs(c_b) ** 2)
        return value, ((c_f, c_b), ys)

      in_axes = (0, None if lengths is None else 0)
      if grads:
        g, result = jax.vmap(jax.grad(loss, has_aux=True), in_axes=in_axes)(xs, lengths)
      else:
        g, result = None, jax.vmap(loss, in_axes=in_axes)(xs, lengths)[1]
      out[runner or "classic"] = (result, g)
    return out

  return run_all(xs, lengths)


# minLSTM runs through exactly minGRU's code paths (real carry, identity readout); LRU adds the
# complex carry and the readout D x that must be masked at padding.
@pytest.mark.parametrize("name", ["mingru", "lru"])
def test_padding_invariance_and_bidirectional(name):
  """Pad by 0, 1, 37 steps of garbage: the same real outputs and final carries, forward and
  reverse, as the unpadded sequence; padded outputs (and, at 37, input gradients) exactly zero;
  a traced length 0 keeps the initial carries; through the classic and the linear runner."""
  cell = cells.get(name)
  p_f = _perturbed_params(name, 2, 3, 4)
  p_b = _perturbed_params(name, 3, 3, 4)
  rng = np.random.default_rng(4)
  xs = _f32(rng.standard_normal((1, 9, 3)))
  ref = _bidirectional_every_runner(name, p_f, p_b, xs, None, grads=False)
  for got, want in zip(jax.tree_util.tree_leaves(ref["associative"]),
                       jax.tree_util.tree_leaves(ref["classic"])):
    _close(got, want)  # unpadded, the linear runner agrees with the classic one
  # The backward half at step 0 has read the whole sequence: the plain scan of the reversed input.
  _, y_b = recurrent.scan(cell, p_b, xs[0, ::-1])
  _close(ref["classic"][0][1][0, 0, 4:], y_b[-1])
  zero_carry = cell.initial_carry(4)
  for pad in (0, 1, 37):
    garbage = _f32(5.0 * rng.standard_normal((2, pad, 3)))
    padded = np.concatenate([np.concatenate([xs, xs]), garbage], axis=1)
    out = _bidirectional_every_runner(name, p_f, p_b, padded, jnp.array([9, 0]), pad == 37)
    for runner in ("classic", "associative"):
      ((c_f, c_b), ys), grads = out[runner]
      ((ref_f, ref_b), ref_ys), _ = ref[runner]
      assert ys.shape == (2, 9 + pad, 8)
      _close(ys[0, :9], ref_ys[0])
      _close(c_f[0], ref_f[0])
      _close(c_b[0], ref_b[0])
      assert np.all(np.asarray(ys[0, 9:]) == 0.0)
      # length 0: initial carries, zero outputs
      np.testing.assert_array_equal(c_f[1], zero_carry)
      np.testing.assert_array_equal(c_b[1], zero_carry)
      assert np.all(np.asarray(ys[1]) == 0.0)
      if grads is not None:  # gradients exactly zero at padded inputs (everywhere for length 0)
        assert np.all(np.asarray(grads[0, 9:]) == 0.0) and np.all(np.asarray(grads[1]) == 0.0)
        assert np.all(np.any(np.asarray(grads[0, :9]) != 0.0, axis=-1))


def test_cell_default_method_routes_to_the_runner():
  xs = jnp.ones((16, 3))

  def jaxpr(method):
    cell = cells.get("mingru", scan_method=method)
    params = cell.init(jax.random.PRNGKey(0), 3, 4)
    return str(jax.make_jaxpr(lambda x: recurrent.scan(cell, params, x, 10))(xs))

  assert "scan[" in jaxpr(None) and "scan[" in jaxpr("sequential")
  assert "scan[" not in jaxpr("associative")  # the associative scan has no sequential loop


# ----------------------------------------------------------------------------- models

def test_recurrent_encoder_mingru():
  """The linen encoder builds params with cell.init and runs them, through either runner."""
  xs = _f32(np.random.default_rng(0).standard_normal((3, 10, 5)))
  lengths = jnp.array([10, 4, 0])
  enc = models.RecurrentEncoder(cell="mingru", hidden_size=6, num_layers=2, bidirectional=True)
  fast = models.RecurrentEncoder(cell="mingru", hidden_size=6, num_layers=2, bidirectional=True,
                                 cell_options=(("scan_method", "associative"),))

  @jax.jit
  def init_and_apply(xs, lengths):
    variables = enc.init(jax.random.PRNGKey(1), xs, lengths)
    return variables, enc.apply(variables, xs, lengths), fast.apply(variables, xs, lengths)[1]

  variables, (carries, ys), ys_fast = init_and_apply(xs, lengths)
  params = variables["params"]
  assert params["layer0_fwd"]["w_i"].shape == (5, 12)
  assert params["layer1_bwd"]["w_i"].shape == (12, 12) and params["layer1_bwd"]["b"].shape == (12,)
  assert ys.shape == (3, 10, 12) and len(carries) == 2 and carries[1][0].shape == (3, 6)
  assert np.all(np.asarray(ys[1, 4:]) == 0.0) and np.all(np.asarray(ys[2]) == 0.0)
  assert np.all(np.asarray(ys[1, :4]) != 0.0) and np.all(np.isfinite(np.asarray(ys)))
  _close(ys_fast, ys)


def test_recurrent_encoder_lru_complex_carry():
  xs = _f32(np.random.default_rng(0).standard_normal((2, 6, 3)))
  enc = models.RecurrentEncoder(cell="lru", hidden_size=4)
  init_and_apply = jax.jit(lambda xs, n: enc.init_with_output(jax.random.PRNGKey(1), xs, n))
  (carries, ys), variables = init_and_apply(xs, jnp.array([6, 2]))
  assert carries[0][0].shape == (2, 4) and carries[0][0].dtype == jnp.complex64
  assert ys.shape == (2, 6, 4) and ys.dtype == jnp.float32
  assert np.all(np.asarray(ys[1, 2:]) == 0.0)
  assert variables["params"]["layer0_fwd"]["C_re"].shape == (4, 4)


# ----------------------------------------------------------------------------- batched layer

@pytest.mark.parametrize("name", NEW_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_carry", [False, True])
def test_batched_sequential_layer_equals_vmapped_reference(name, reverse, with_carry):
  """linear_recurrence.batched_scan_cell (one in-place batch scan, hand-written backward) gives
  the per-sequence runner's outputs, final carries and gradients (params, inputs, carry), with
  unsorted lengths including 0 and a full one."""
  cell = cells.get(name)
  B, T, I, H = 4, 11, 3, 5
  params = cell.init(jax.random.key(0), I, H)
  xs = jax.random.normal(jax.random.key(1), (B, T, I))
  lengths = jnp.array([7, 0, T, 3])
  carry = None
  if with_carry:
    c0 = cell.initial_carry(H)
    carry = (jax.random.normal(jax.random.key(2), (B,) + c0.shape) * (1 + 0.5j if
             jnp.iscomplexobj(c0) else 1.0)).astype(c0.dtype)

  def run(p, x, c, batched):
    if batched:
      return linear_recurrence.batched_scan_cell(cell, p, x, lengths, reverse, c, "sequential")
    one = lambda x1, n, c1: linear_recurrence.scan_cell(cell, p, x1, n, reverse, c1, "sequential")
    return jax.vmap(one, in_axes=(0, 0, None if c is None else 0))(x, lengths, c)

  def loss(p, x, c, batched):
    final, ys = run(p, x, c, batched)
    return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(final) ** 2)

  (f_b, y_b), (f_r, y_r) = run(params, xs, carry, True), run(params, xs, carry, False)
  _close(y_b, y_r)
  _close(f_b, f_r)
  assert np.all(np.asarray(y_b)[1] == 0.0) and np.all(np.asarray(y_b)[3, 3:] == 0.0)
  argnums = (0, 1, 2) if with_carry else (0, 1)
  g_b = jax.grad(loss, argnums)(params, xs, carry, True)
  g_r = jax.grad(loss, argnums)(params, xs, carry, False)
  for a, b in zip(jax.tree.leaves(g_b), jax.tree.leaves(g_r)):
    _close(a, b, rtol=1e-4)


def test_batched_sequential_states_under_vmap_and_jit():
  """The custom VJP composes with vmap (seeds) and jit."""
  a = jax.random.uniform(jax.random.key(0), (2, 3, 6, 4), minval=0.5, maxval=1.0)
  b = jax.random.normal(jax.random.key(1), (2, 3, 6, 4))
  h0 = jnp.zeros((2, 3, 4))
  f = jax.jit(jax.vmap(lambda a, b, h: linear_recurrence.batched_sequential_states(a, b, h, False)))
  hs = f(a, b, h0)
  ref = jax.vmap(jax.vmap(lambda a, b: linear_recurrence.linear_scan(a, b, method="sequential")[1]))
  _close(hs, ref(a, b))
  g = jax.grad(lambda a: jnp.sum(f(a, b, h0) ** 2))(a)
  g_ref = jax.grad(lambda a: jnp.sum(ref(a, b) ** 2))(a)
  _close(g, g_ref, rtol=1e-4)
