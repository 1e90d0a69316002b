"""Memory tasks: exact layouts, baselines, variable lengths, determinism."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rnnlab import tasks
from rnnlab.tasks.memory import AddingTask, CopyTask


def test_copy_layout():
  T = 7
  task = CopyTask(T)
  b = jax.tree.map(np.asarray, task.sample(jax.random.PRNGKey(0), 16))
  assert b["inputs"].shape == b["targets"].shape == (16, T + 20)
  np.testing.assert_array_equal(b["lengths"], T + 20)
  for x, y in zip(b["inputs"], b["targets"]):
    data = x[:10]
    assert np.all((data >= 1) & (data <= 8))
    np.testing.assert_array_equal(x[10:10 + T - 1], 0)   # T - 1 blanks
    assert x[10 + T - 1] == 9                            # the delimiter
    np.testing.assert_array_equal(x[T + 10:], 0)         # 10 blanks
    np.testing.assert_array_equal(y[:T + 10], 0)         # T + 10 blanks
    np.testing.assert_array_equal(y[T + 10:], data)      # then the data
  assert task.baseline == pytest.approx(10 * math.log(8) / (T + 20))


def test_copy_perfect_and_baseline_predictions():
  task = CopyTask(5)
  b = task.sample(jax.random.PRNGKey(1), 8)
  perfect = 50.0 * jax.nn.one_hot(b["targets"], 10)
  loss, m = task.loss_and_metrics(perfect, b)
  assert float(m["accuracy"]) == 1.0 and float(loss) < 1e-6
  # The chance strategy: blank with certainty, uniform over the 8 symbols at recall.
  blank = jnp.where(jnp.arange(10) == 0, 0.0, -1e9)
  uniform = jnp.where((jnp.arange(10) >= 1) & (jnp.arange(10) <= 8), 0.0, -1e9)
  logits = jnp.where(b["recall"][..., None], uniform, blank)
  loss, _ = task.loss_and_metrics(logits, b)
  assert float(loss) == pytest.approx(task.baseline, rel=1e-5)


def test_copy_variable_lengths():
  task = CopyTask(12, min_length=3)
  b = jax.tree.map(np.asarray, task.sample(jax.random.PRNGKey(2), 64))
  delays = b["lengths"] - 20
  assert delays.min() >= 3 and delays.max() <= 12 and len(set(delays)) > 3
  for x, y, d, n in zip(b["inputs"], b["targets"], delays, b["lengths"]):
    assert x[10 + d - 1] == 9 and np.sum(x == 9) == 1
    np.testing.assert_array_equal(y[d + 10:d + 20], x[:10])
    np.testing.assert_array_equal(x[n:], 0)
    np.testing.assert_array_equal(y[n:], 0)


def test_adding_layout():
  task = AddingTask(50, min_length=10)
  b = jax.tree.map(np.asarray, task.sample(jax.random.PRNGKey(3), 256))
  assert b["inputs"].shape == (256, 50, 2)
  for x, target, n in zip(b["inputs"], b["targets"], b["lengths"]):
    marks = np.flatnonzero(x[:, 1])
    assert len(marks) == 2 and marks[0] < n // 2 <= marks[1] < n
    assert target == pytest.approx(x[marks, 0].sum(), rel=1e-6)
    np.testing.assert_array_equal(x[n:], 0)
  # Predicting 1 always gives MSE ~ 1/6, the baseline.
  loss, m = task.loss_and_metrics(jnp.ones((256, 1)), b)
  assert float(m["mse"]) == pytest.approx(task.baseline, abs=0.03)


def test_deterministic_per_key():
  task = CopyTask(10, 2)
  a = task.sample(jax.random.PRNGKey(5), 4)
  b = task.sample(jax.random.PRNGKey(5), 4)
  c = task.sample(jax.random.PRNGKey(6), 4)
  np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert not np.array_equal(a["inputs"], c["inputs"])


def test_registry():
  cfg = ml_collections.ConfigDict({"name": "adding", "length": 30, "min_length": 0})
  assert tasks.get(cfg).max_time == 30
  with pytest.raises(ValueError, match="known tasks: .*adding.*copy"):
    tasks.get(ml_collections.ConfigDict({"name": "sorting", "length": 3}))
  with pytest.raises(ValueError, match="length >= 2"):
    AddingTask(1)


@pytest.mark.parametrize("length,min_length", [(5, 0), (30, 5),
                                               pytest.param(12, 11, marks=pytest.mark.slow),
                                               pytest.param(60, 1, marks=pytest.mark.slow)])
def test_copy_baseline_is_the_memoryless_loss_of_the_sampled_delays(length, min_length):
  """The best predictor that ignores the input outputs, at each step, the distribution of the
  target there (over the examples where the step is real); its loss on fresh batches must be the
  chance baseline, for one delay and for variable ones."""
  task = CopyTask(length, min_length=min_length)
  fit = task.sample(jax.random.PRNGKey(10), 20000)
  valid = np.arange(task.max_time)[None, :] < np.asarray(fit["lengths"])[:, None]
  counts = np.einsum("bt,btc->tc", valid, np.asarray(jax.nn.one_hot(fit["targets"], 10)))
  logits = jnp.log(jnp.asarray(counts + 1e-6) / (counts.sum(1, keepdims=True) + 1e-5))
  losses = []
  for i in range(8):
    batch = task.sample(jax.random.PRNGKey(100 + i), 2048)
    loss, _ = task.loss_and_metrics(jnp.broadcast_to(logits, (2048, *logits.shape)), batch)
    losses.append(float(loss))
  assert np.mean(losses) == pytest.approx(task.baseline, rel=0.01)
  if min_length in (0, length):
    assert task.baseline == pytest.approx(10 * math.log(8) / (length + 20))
