"""The memory tasks: copy (Arjovsky, Shah & Bengio 2016) and adding (Hochreiter & Schmidhuber 1997).

Copy, delay T: symbols 1..8 are data, 0 is blank, 9 the delimiter.
  inputs  [batch, T + 20]: 10 data symbols, T - 1 blanks, the delimiter, 10 blanks
  targets [batch, T + 20]: T + 10 blanks, then the 10 data symbols
  loss: cross-entropy averaged over all real steps; chance baseline 10 ln(8) / (T + 20)
  (always blank, then a uniform guess); metric: accuracy on the 10 recalled symbols.
  With variable delays the chance baseline is that of the best memoryless predictor for the delay
  distribution sampled (see `copy_chance_loss`).

Adding, length T: inputs [batch, T, 2]: channel 0 values U(0, 1), channel 1 a marker that is 1 at
  exactly two positions, one in each half of the sequence; target [batch]: the sum of the two
  marked values, read at the last real step. Loss and metric: MSE; baseline 0.1667 (always
  predict 1: the variance of a sum of two U(0, 1)); solved when MSE < 0.01.

Variable lengths: with `min_length` < `length`, each example draws its own T in
[min_length, length] and is padded to the batch's fixed maximum; `lengths` gives the real steps.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.core.mask import sequence_mask
from rnnlab.tasks.base import ModelSpec

Array = jax.Array

NUM_DATA_SYMBOLS = 8
BLANK, DELIMITER = 0, 9
NUM_RECALL = 10


def _draw_lengths(key: Array, batch_size: int, min_length: int, length: int) -> Array:
  if min_length >= length:
    return jnp.full((batch_size,), length, jnp.int32)
  return jax.random.randint(key, (batch_size,), min_length, length + 1, jnp.int32)


def copy_chance_loss(min_length: int, length: int) -> float:
  r"""The copy loss of the best memoryless predictor, for delays d uniform in [min_length, length]
  (1 <= min_length <= length; `_draw_lengths` draws them so).

  Ignoring the input, the best output at step t is the distribution of the target at t over the
  examples in which t is a real step (t < d + 20): blank with probability 1 - p_t, each data
  symbol with p_t / 8, where p_t = P(d + 10 <= t | d + 20 > t). The loss averages cross-entropy
  over all real steps of a batch, so (for a large batch) it is

    sum_t P(d + 20 > t) [p_t ln 8 + H(p_t)] / E[d + 20]
      = (10 ln 8 + sum_t P(d + 20 > t) H(p_t)) / (E[d] + 20),

  H the binary entropy in nats. One delay T gives 10 ln(8) / (T + 20) (every p_t is 0 or 1);
  variable delays add the uncertainty of where the recall starts and ends.
  """
  delays = np.arange(min_length, length + 1)
  t = np.arange(length + 2 * NUM_RECALL)[:, None]                 # [time, 1] against [delays]
  p_valid = np.mean(t < delays + 2 * NUM_RECALL, axis=1)           # [time]
  p_recall = np.mean((t >= delays + NUM_RECALL) & (t < delays + 2 * NUM_RECALL), axis=1)
  p = np.divide(p_recall, p_valid, out=np.zeros_like(p_valid), where=p_valid > 0)
  q = np.clip(p, 1e-300, 1.0)
  entropy = -(p * np.log(q)) - (1.0 - p) * np.log(np.clip(1.0 - p, 1e-300, 1.0))
  return float((NUM_RECALL * math.log(NUM_DATA_SYMBOLS) + np.sum(p_valid * entropy))
               / (np.mean(delays) + 2 * NUM_RECALL))


class CopyTask:
  """Copy task with delay `length` (variable in [min_length, length] if min_length < length)."""

  name = "copy"
  metric = "accuracy"
  higher_is_better = True
  baseline_of = "loss"
  model_spec = ModelSpec(vocab_size=NUM_DATA_SYMBOLS + 2, out_features=NUM_DATA_SYMBOLS + 2,
                         readout="per_step")

  def __init__(self, length: int, min_length: int = 0, solved_threshold: float = 0.99):
    self.length = length
    self.min_length = min_length or length
    self.solved_threshold = solved_threshold
    self.max_time = length + 2 * NUM_RECALL
    self.baseline = copy_chance_loss(self.min_length, length)

  def sample(self, key: Array, batch_size: int) -> dict[str, Array]:
    k_sym, k_len = jax.random.split(key)
    delays = _draw_lengths(k_len, batch_size, self.min_length, self.length)
    symbols = jax.random.randint(k_sym, (batch_size, NUM_RECALL), 1, NUM_DATA_SYMBOLS + 1)
    t = jnp.arange(self.max_time)[None, :]
    d = delays[:, None]
    # Input: symbols at t < 10, delimiter at t = 10 + d - 1; target: symbols at t >= d + 10.
    inputs = jnp.zeros((batch_size, self.max_time), jnp.int32)
    inputs = inputs.at[:, :NUM_RECALL].set(symbols)
    inputs = jnp.where(t == NUM_RECALL + d - 1, DELIMITER, inputs)
    recall = (t >= d + NUM_RECALL) & (t < d + 2 * NUM_RECALL)
    src = jnp.clip(t - d - NUM_RECALL, 0, NUM_RECALL - 1)
    targets = jnp.where(recall, jnp.take_along_axis(symbols, src, axis=1), BLANK)
    return {"inputs": inputs, "targets": targets, "lengths": delays + 2 * NUM_RECALL,
            "recall": recall}

  def loss_and_metrics(self, logits: Array, batch: dict[str, Array]) -> tuple[Array, dict[str, Any]]:
    """logits: [batch, time, 10]."""
    valid = sequence_mask(batch["lengths"], logits.shape[1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    loss = jnp.sum(jnp.where(valid, ce, 0.0)) / jnp.sum(valid)
    correct = (jnp.argmax(logits, -1) == batch["targets"]) & batch["recall"]
    accuracy = jnp.sum(correct) / jnp.sum(batch["recall"])
    return loss, {"loss": loss, "accuracy": accuracy}


class AddingTask:
  """Adding problem with length `length` (variable in [min_length, length] if min_length < length)."""

  name = "adding"
  metric = "mse"
  higher_is_better = False
  baseline = 1.0 / 6.0
  baseline_of = "mse"
  model_spec = ModelSpec(vocab_size=None, out_features=1, readout="last")

  def __init__(self, length: int, min_length: int = 0, solved_threshold: float = 0.01):
    if (min_length or length) < 2:
      raise ValueError("the adding problem needs length >= 2 (one marker in each half)")
    self.length = length
    self.min_length = min_length or length
    self.solved_threshold = solved_threshold
    self.max_time = length

  def sample(self, key: Array, batch_size: int) -> dict[str, Array]:
    k_val, k_len, k_a, k_b = jax.random.split(key, 4)
    lengths = _draw_lengths(k_len, batch_size, self.min_length, self.length)
    half = lengths // 2
    # One marker uniform in [0, half), one uniform in [half, length).
    first = jnp.floor(jax.random.uniform(k_a, (batch_size,)) * half).astype(jnp.int32)
    second = half + jnp.floor(
        jax.random.uniform(k_b, (batch_size,)) * (lengths - half)).astype(jnp.int32)
    t = jnp.arange(self.max_time)[None, :]
    valid = sequence_mask(lengths, self.max_time)
    values = jnp.where(valid, jax.random.uniform(k_val, (batch_size, self.max_time)), 0.0)
    markers = ((t == first[:, None]) | (t == second[:, None])).astype(jnp.float32)
    targets = jnp.sum(values * markers, axis=1)
    return {"inputs": jnp.stack([values, markers], axis=-1), "targets": targets,
            "lengths": lengths}

  def loss_and_metrics(self, outputs: Array, batch: dict[str, Array]) -> tuple[Array, dict[str, Any]]:
    """outputs: [batch, 1]."""
    mse = jnp.mean((outputs[:, 0] - batch["targets"]) ** 2)
    return mse, {"loss": mse, "mse": mse}
