"""Cells: the notes' worked examples, parity with flax.linen, initialisation and the registry."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.core import cells, recurrent

CELLS = ["vanilla", "lstm", "gru"]


def test_scalar_worked_example():
  # Notes, level 1: tanh(0.9 * 0.5 + 1.0 * 1.0 + 0.1) = 0.9138.
  cell = cells.get("vanilla")
  params = {"w_i": jnp.array([[1.0]]), "w_h": jnp.array([[0.9]]), "b": jnp.array([0.1])}
  h, y = cell.step(params, jnp.array([0.5]), jnp.array([1.0]))
  assert float(h[0]) == pytest.approx(math.tanh(0.9 * 0.5 + 1.0 + 0.1), abs=1e-6)
  assert f"{float(y[0]):.4f}" == "0.9138"


def test_numpy_worked_example():
  # Notes, level 2: W_h = [[0.9, 0.1], [0.1, 0.9]], W_x = I, b = 0.1, h = [0.5, 0.5], x = [1, 1].
  w_h = np.array([[0.9, 0.1], [0.1, 0.9]])
  w_x = np.eye(2)
  h_prev, x = np.array([0.5, 0.5]), np.array([1.0, 1.0])
  expected = np.tanh(w_h @ h_prev + w_x @ x + 0.1)
  # rnnlab stores weights for x @ W, i.e. the transposes of the notes' W @ x.
  params = {"w_i": jnp.asarray(w_x.T, jnp.float32), "w_h": jnp.asarray(w_h.T, jnp.float32),
            "b": jnp.full((2,), 0.1)}
  h, _ = cells.get("vanilla").step(params, jnp.asarray(h_prev, jnp.float32),
                                   jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(h, expected, rtol=1e-6)
  np.testing.assert_allclose(h, [0.9217, 0.9217], atol=1e-4)


def _flax_params_from_rnnlab(name: str, p: dict, hidden: int) -> dict:
  """Maps rnnlab's fused params onto flax.linen's per-gate Dense layers."""
  H = hidden
  blk = lambda w, k: w[..., k * H:(k + 1) * H]
  if name == "vanilla":
    return {"i": {"kernel": p["w_i"], "bias": p["b"]}, "h": {"kernel": p["w_h"]}}
  if name == "lstm":
    out = {}
    for k, g in enumerate("ifgo"):
      out[f"i{g}"] = {"kernel": blk(p["w_i"], k)}
      out[f"h{g}"] = {"kernel": blk(p["w_h"], k), "bias": blk(p["b"], k)}
    return out
  # GRU: flax puts the r/z biases on the input Dense and b_hn on `hn`.
  out = {}
  for k, g in enumerate("rzn"):
    out[f"i{g}"] = {"kernel": blk(p["w_i"], k), "bias": blk(p["b"], k)}
    out[f"h{g}"] = {"kernel": blk(p["w_h"], k)}
  out["hn"]["bias"] = p["b_hn"]
  return out


@pytest.mark.parametrize("name", CELLS)
def test_parity_with_flax_linen(name):
  input_size, hidden, time, batch = 3, 5, 9, 4
  cell = cells.get(name)
  params = cell.init(jax.random.key(0), input_size, hidden)
  # Non-zero biases everywhere: zero biases hide convention errors.
  params = jax.tree.map(
      lambda a: a + 0.3 * jax.random.normal(jax.random.key(a.size), a.shape), params)
  xs = jax.random.normal(jax.random.key(1), (batch, time, input_size))
  carry, ys = recurrent.batched_scan(cell, params, xs)

  flax_cell = {"vanilla": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[name](hidden)
  rnn = nn.RNN(flax_cell, return_carry=True)
  f_carry, f_ys = rnn.apply({"params": {"cell": _flax_params_from_rnnlab(name, params, hidden)}},
                            xs)
  np.testing.assert_allclose(ys, f_ys, rtol=1e-5, atol=1e-6)
  if name == "lstm":  # flax's carry is (c, h); rnnlab's is LSTMState(h, c).
    np.testing.assert_allclose(carry.h, f_carry[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry.c, f_carry[0], rtol=1e-5, atol=1e-6)
  else:
    np.testing.assert_allclose(carry, f_carry, rtol=1e-5, atol=1e-6)


def test_gru_reset_before_differs_and_has_no_b_hn():
  before = cells.get("gru", reset_after=False)
  after = cells.get("gru")
  p = before.init(jax.random.key(0), 3, 4)
  assert "b_hn" not in p and "b_hn" in after.init(jax.random.key(0), 3, 4)
  x, h = jnp.ones(3), 0.5 * jnp.ones(4)
  # Cho et al. 2014 form, written out here independently.
  H = 4
  r = jax.nn.sigmoid(x @ p["w_i"][:, :H] + h @ p["w_h"][:, :H] + p["b"][:H])
  z = jax.nn.sigmoid(x @ p["w_i"][:, H:2 * H] + h @ p["w_h"][:, H:2 * H] + p["b"][H:2 * H])
  n = jnp.tanh(x @ p["w_i"][:, 2 * H:] + (r * h) @ p["w_h"][:, 2 * H:] + p["b"][2 * H:])
  np.testing.assert_allclose(before.step(p, h, x)[0], (1 - z) * n + z * h, rtol=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_default_init(name):
  cell = cells.get(name)
  hidden = 16
  p = cell.init(jax.random.key(3), 7, hidden)
  gates = cell.num_gates
  assert p["w_i"].shape == (7, gates * hidden) and p["w_h"].shape == (hidden, gates * hidden)
  for k in range(gates):  # orthogonal per gate block
    block = p["w_h"][:, k * hidden:(k + 1) * hidden]
    np.testing.assert_allclose(block.T @ block, np.eye(hidden), atol=1e-5)
  expected_b = np.zeros(gates * hidden)
  if name == "lstm":
    expected_b[hidden:2 * hidden] = 1.0
  np.testing.assert_array_equal(p["b"], expected_b)


def test_init_options():
  p = cells.get("lstm", forget_bias=0.0, recurrent_init="glorot").init(jax.random.key(0), 2, 8)
  assert float(jnp.abs(p["b"]).max()) == 0.0
  irnn = cells.get("irnn").init(jax.random.key(0), 2, 8)
  np.testing.assert_array_equal(irnn["w_h"], np.eye(8))
  np.testing.assert_array_equal(irnn["b"], np.zeros(8))
  assert float(cells.get("irnn").step(irnn, -jnp.ones(8), -jnp.ones(2))[0].min()) == 0.0  # relu
  scaled = cells.get("vanilla", recurrent_scale=1.5).init(jax.random.key(0), 2, 8)
  np.testing.assert_allclose(np.linalg.svd(scaled["w_h"])[1], 1.5 * np.ones(8), rtol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_chrono_init(name):
  t_max, H = 50.0, 64
  p = cells.get(name, init="chrono", chrono_t_max=t_max).init(jax.random.key(0), 3, H)
  gate_bias = np.asarray(p["b"][H:2 * H])  # LSTM forget gate; GRU update gate
  assert gate_bias.min() >= 0.0 and gate_bias.max() <= math.log(t_max - 1) + 1e-6
  assert gate_bias.std() > 0.1  # drawn, not constant
  if name == "lstm":
    np.testing.assert_allclose(p["b"][:H], -gate_bias)


def test_registry_errors():
  with pytest.raises(ValueError, match="known cells: .*gru.*lstm.*vanilla"):
    cells.get("transformer")
  with pytest.raises(ValueError, match="bad option"):
    cells.get("lstm", no_such_option=1)
  with pytest.raises(ValueError, match="activation"):
    cells.get("vanilla", activation="sigmoid")
  with pytest.raises(ValueError, match="hidden_size"):
    cells.get("gru").init(jax.random.key(0), 3, 0)


def test_state_shape_mastery_check():
  # Notes Q1: batch 32, hidden 128 -> h is [32, 128].
  cell = cells.get("lstm")
  p = cell.init(jax.random.key(0), 10, 128)
  carry, ys = recurrent.batched_scan(cell, p, jnp.zeros((32, 5, 10)))
  assert isinstance(carry, cells.LSTMState)
  assert carry.h.shape == (32, 128) and carry.c.shape == (32, 128) and ys.shape == (32, 5, 128)


def test_gate_blocks_work_on_one_example_and_on_a_batch():
  # The same functions serve `step` ([H]) and the fused layer ([B, H]).
  B, Hs = 3, 4
  k = iter(jax.random.split(jax.random.key(5), 8))
  pre4 = jax.random.normal(next(k), (B, 4 * Hs))
  c = jax.random.normal(next(k), (B, Hs))
  batched = cells.lstm_gates(pre4, c)
  single = jax.vmap(cells.lstm_gates)(pre4, c)
  for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  (h, c_new), gates = batched
  np.testing.assert_allclose(c_new, gates.f * c + gates.i * gates.g, rtol=1e-6)
  assert h.shape == (B, Hs) and gates.o.shape == (B, Hs)

  x_pre, h_pre = jax.random.normal(next(k), (B, 3 * Hs)), jax.random.normal(next(k), (B, 3 * Hs))
  h0, b_hn = jax.random.normal(next(k), (B, Hs)), jax.random.normal(next(k), (Hs,))
  h1, g = cells.gru_gates(x_pre, h_pre, h0, b_hn)
  h1_single, _ = jax.vmap(cells.gru_gates, in_axes=(0, 0, 0, None))(x_pre, h_pre, h0, b_hn)
  np.testing.assert_allclose(h1, h1_single, rtol=1e-6)
  np.testing.assert_allclose(g.hn, h_pre[:, 2 * Hs:] + b_hn, rtol=1e-6)
  np.testing.assert_allclose(cells.vanilla_gates(x_pre, "relu"), jnp.maximum(x_pre, 0.0))


@pytest.mark.parametrize("name,gates,kind", [
    ("vanilla", 1, "tanh"), ("irnn", 1, "relu"), ("lstm", 4, "lstm"), ("gru", 3, "gru"),
    ("mingru", 2, None), ("minlstm", 3, None), ("lru", 1, None)])
def test_gate_count_and_fused_kind_come_with_the_cell(name, gates, kind):
  cell = cells.get(name)
  assert (cell.num_gates, cell.fused_kind) == (gates, kind)
  params = cell.init(jax.random.key(0), 3, 5)
  if "b" in params:   # the fused kernels hold num_gates [H] blocks
    assert params["b"].shape == (gates * 5,)
  assert cells.get("gru", reset_after=False).fused_kind is None
