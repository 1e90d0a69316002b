"""The models the benchmark times: rnnlab's, flax.linen's own recurrent layer, a readout-only floor,
and PyTorch's nn.LSTM / nn.GRU / nn.RNN, each as a train step and a forward pass with the same
per-step Dense readout over `classes` classes, cross-entropy and Adam (lr 1e-3).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
import optax

from configs import base as base_config
from experiments import timing
from rnnlab import models


@dataclasses.dataclass
class JaxStep:
  """A jitted train step and forward pass of one linen model, with its state."""

  train: Callable[[], None]
  forward: Callable[[], None]
  compile_s: float


def make_jax_step(model: nn.Module, xs: jax.Array, ys: jax.Array) -> JaxStep:
  """Adam train step (per-step cross-entropy) and forward pass of `model` on (xs, ys)."""
  params = model.init(jax.random.key(1), xs)["params"]
  tx = optax.adam(1e-3)

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def step(p, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = tx.init(params)
  t0 = time.perf_counter()
  step_c = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, xs, ys).compile()
  compile_s = time.perf_counter() - t0
  fwd_c = jax.jit(lambda p, x: model.apply({"params": p}, x)).lower(params, xs).compile()
  state = [params, opt_state]

  def run_train():
    p, o, loss = step_c(state[0], state[1], xs, ys)
    loss.block_until_ready()
    state[0], state[1] = p, o

  def run_forward():
    fwd_c(state[0], xs).block_until_ready()

  return JaxStep(run_train, run_forward, compile_s)


def rnnlab_model(cell: str, hidden: int, classes: int, scan_method: str | None = None
                 ) -> nn.Module:
  """The model `rnnlab.training.train.build_model` builds for float features and a per-step readout,
  with the base config's cell options (and `scan_method` for the parallel-in-time cells)."""
  m = base_config.get_config().model
  m.update(cell=cell, hidden_size=hidden)
  if scan_method is not None:
    m.scan_method = scan_method
  return models.RNNModel(models.encoder_from_config(m), out_features=classes, readout="per_step")


class FlaxModel(nn.Module):
  """flax.linen's own recurrent layer and cells, with the same readout."""

  cell: str
  hidden: int
  classes: int

  @nn.compact
  def __call__(self, xs: jax.Array) -> jax.Array:
    make = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "vanilla": nn.SimpleCell}[self.cell]
    ys = nn.RNN(make(self.hidden))(xs)
    return nn.Dense(self.classes)(ys)


class ReadoutOnly(nn.Module):
  """The benchmark's model with the recurrent layer replaced by a Dense of the same width: what
  the embedding/readout, loss and optimiser cost alone (the floor under every cell's step)."""

  hidden: int
  classes: int

  @nn.compact
  def __call__(self, xs: jax.Array) -> jax.Array:
    return nn.Dense(self.classes)(nn.Dense(self.hidden)(xs))


# ----------------------------------------------------------------------------- PyTorch peer

def torch_module() -> Any:
  """The torch module, or None where PyTorch is not installed."""
  try:
    import torch  # noqa: PLC0415 (optional dependency)
  except ImportError:
    return None
  return torch


def make_torch_step(torch, cell: str, shape: tuple[int, int, int, int], classes: int,
                    xs: np.ndarray, ys: np.ndarray
                    ) -> tuple[Callable[[], None], Callable[[], None]]:
  """Train step (Adam) and no-grad forward of nn.LSTM / nn.GRU / nn.RNN + nn.Linear."""
  _, _, i, h = shape
  rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "vanilla": torch.nn.RNN}[cell]

  class Model(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.rnn = rnn(i, h, batch_first=True)
      self.readout = torch.nn.Linear(h, classes)

    def forward(self, x):
      return self.readout(self.rnn(x)[0])

  model = Model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.from_numpy(np.array(xs))
  y = torch.from_numpy(np.array(ys)).long().reshape(-1)

  def run_train():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, classes), y)
    loss.backward()
    opt.step()

  def run_forward():
    with torch.no_grad():
      model(x)

  return run_train, run_forward


def pick_torch_threads(torch, step: Callable[[], None]) -> int:
  """PyTorch's faster setting of intra-op threads: all cores, or 1.

  On a loaded machine OpenMP's spinning barriers can make nproc threads many times slower than
  one; taking the faster keeps the comparison fair to PyTorch.
  """
  best, best_ms = 1, float("inf")
  for n in sorted({os.cpu_count() or 1, 1}, reverse=True):
    torch.set_num_threads(n)
    ms = timing.interleaved({"t": step}, 3, warmup=1)["t"]
    if ms < best_ms:
      best, best_ms = n, ms
  torch.set_num_threads(best)
  return best

