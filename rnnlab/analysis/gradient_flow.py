r"""Gradient flow through time: how much of the loss gradient reaches each step's hidden state.

For the first recurrent layer of a model, g_t = dLoss/dh_t is the total derivative of the loss
with respect to the hidden state after step t, through the output at t and through every later
step (backpropagation through time):

    g_t = dL/dy_t + g_{t+1} dh_{t+1}/dh_t,     vanilla: dh_{t+1}/dh_t = diag(1 - h_{t+1}^2) W_h^T

so ||g_t|| shrinks (vanishing) or grows (exploding) roughly geometrically back through time
(Bengio et al. 1994; Pascanu et al. 2013). It is computed by adding a zero perturbation
delta_t to h_t -- to the carry handed to step t+1 and to the output at t -- and differentiating
with respect to delta: dLoss/d(delta_t) at delta = 0 is exactly g_t. For an LSTM, h is the output
state (LSTMState.h), not the cell state c. Padded steps (t >= length) get exactly zero: the
runner discards their carry and output.

The perturbed layer is run by the same pure functions as the model (`recurrent.scan` over a
cell whose step adds delta_t), swapped in for the model's RecurrentEncoder with flax's method
interception; the embedding, upper layers and readout are the model's own.

The studies that train runs and save these norms (vanilla vs LSTM vs GRU, the exploding case) are
in `rnnlab.studies.gradient_flow`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import models
from rnnlab.core import cells, recurrent
from rnnlab.errors import RnnlabError

Array = jax.Array


# ----------------------------------------------------------------------------- the gradients

def _perturbed_cell(cell: cells.Cell, hidden: int) -> cells.Cell:
  """`cell` reading [x_t, delta_t] and adding delta_t to its new hidden state (carry and y)."""
  def step(params, carry, x_and_delta):
    x, delta = x_and_delta[:-hidden], x_and_delta[-hidden:]
    carry, y = cell.step(params, carry, x)
    if isinstance(carry, cells.LSTMState) or hasattr(carry, "_replace"):
      carry = carry._replace(h=carry.h + delta)
    else:
      carry = carry + delta
    return carry, y + delta
  # The step-by-step scan always: neither the linear form nor a fused kind describes this step.
  return dataclasses.replace(cell, step=step, linear=None, fused_kind=None)


def _perturbed_encoder(module: models.RecurrentEncoder, delta: Array, xs: Array,
                       lengths: Array | None = None, deterministic: bool = True) -> Any:
  """RecurrentEncoder.__call__ with delta added to the first layer's hidden states.

  delta: [batch, directions, time, hidden]. Dropout is off (a diagnostic, not training).
  """
  params = module.variables["params"]
  directions = ("fwd", "bwd") if module.bidirectional else ("fwd",)
  stack_params = [[params[f"layer{k}_{d}"] for d in directions]
                  for k in range(module.num_layers)]
  cell = models.make_cell(module.cell, module.cell_options)
  first = _perturbed_cell(cell, module.hidden_size)

  def run(x, n, d):
    carries, ys = [], []
    for j, p in enumerate(stack_params[0]):
      c, y = recurrent.scan(first, p, jnp.concatenate([x, d[j]], axis=-1), n, reverse=j == 1)
      carries.append(c)
      ys.append(y)
    ys = jnp.concatenate(ys, axis=-1)
    rest, ys = recurrent.stack(cell, stack_params[1:], ys, n) if len(stack_params) > 1 else ([], ys)
    return [tuple(carries), *rest], ys

  return jax.vmap(run, in_axes=(0, None if lengths is None else 0, 0))(xs, lengths, delta)


def _the_encoder(model: nn.Module, params: Any, batch: dict[str, Array]) -> Any:
  """The model's one RecurrentEncoder (found by tracing a call, nothing is computed)."""
  encoders = []

  def find(next_fun, args, kwargs, context):
    if isinstance(context.module, models.RecurrentEncoder) and context.method_name == "__call__":
      encoders.append(context.module)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(find):
    jax.eval_shape(lambda p: model.apply({"params": p}, batch["inputs"], batch["lengths"],
                                         deterministic=True), params)
  if len(encoders) != 1:
    raise RnnlabError(f"gradient flow needs a model with exactly one RecurrentEncoder, found "
                      f"{len(encoders)}")
  return encoders[0]


def perturbation_shape(model: nn.Module, params: Any, batch: dict[str, Array]
                       ) -> tuple[int, int, int, int]:
  """(batch, directions, time, hidden): the shape of delta for `perturbed_loss`."""
  enc = _the_encoder(model, params, batch)
  batch_size, time = batch["inputs"].shape[:2]
  return batch_size, 2 if enc.bidirectional else 1, time, enc.hidden_size


def perturbed_loss(model: nn.Module, params: Any, batch: dict[str, Array],
                   loss_fn: Callable[[Array, dict[str, Array]], Array], delta: Array) -> Array:
  """The loss with delta [batch, directions, time, hidden] added to the first recurrent
  layer's hidden states (delta = 0: exactly the model's loss)."""
  def swap(next_fun, args, kwargs, context):
    if isinstance(context.module, models.RecurrentEncoder) and context.method_name == "__call__":
      return _perturbed_encoder(context.module, delta, *args, **kwargs)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(swap):
    outputs = model.apply({"params": params}, batch["inputs"], batch["lengths"],
                          deterministic=True)
  return loss_fn(outputs, batch)


def hidden_state_gradients(model: nn.Module, params: Any, batch: dict[str, Array],
                           loss_fn: Callable[[Array, dict[str, Array]], Array]) -> Array:
  """dLoss/dh_t of the first recurrent layer, for every example, direction and step.

  Args:
    model: an RNNModel-like Module whose recurrent part is a `models.RecurrentEncoder`, called
      as model.apply({"params": params}, inputs, lengths, deterministic=True).
    params: its parameters (one replica: no [seeds] axis).
    batch: {"inputs": [batch, time, ...], "lengths": [batch], ...} as a task samples it.
    loss_fn: (model outputs, batch) -> scalar loss.

  Returns:
    [batch, directions, time, hidden]; exactly zero at padded steps.
  """
  delta0 = jnp.zeros(perturbation_shape(model, params, batch), jnp.float32)
  return jax.grad(lambda d: perturbed_loss(model, params, batch, loss_fn, d))(delta0)


def gradient_norms(grads: Array, direction: int = 0) -> Array:
  """||dLoss/dh_t|| over the batch and hidden units: grads [batch, directions, time, hidden]
  -> [time] for one direction (0: forward)."""
  return jnp.sqrt(jnp.sum(grads[:, direction] ** 2, axis=(0, 2)))


# ----------------------------------------------------------------------------- from configs

def seed_params(state: Any, seed: int = 0) -> Any:
  """One replica's params from a train state with a leading [seeds] axis."""
  return jax.tree.map(lambda x: x[seed], state.params)


@functools.lru_cache(maxsize=8)
def _compiled_gradients(trainer: Any) -> Callable[[Any, dict[str, Array]], Array]:
  """hidden_state_gradients for one trainer's model and task, jitted once per trainer."""
  loss_fn = lambda outputs, b: trainer.task.loss_and_metrics(outputs, b)[0]
  return jax.jit(lambda p, b: hidden_state_gradients(trainer.model, p, b, loss_fn))


def trainer_gradient_norms(trainer: Any, params: Any, num_examples: int = 64,
                           key: Array | None = None) -> np.ndarray:
  """||dLoss/dh_t|| per direction for a `train.Trainer`'s model on a fresh batch of its task.

  Returns:
    [directions, time] (numpy).
  """
  if hasattr(trainer.task, "forward") or hasattr(trainer.task, "build_model"):
    raise RnnlabError(f"gradient flow supports tasks with the standard RNNModel; task "
                      f"{trainer.task.name!r} builds its own model")
  key = jax.random.PRNGKey(1234) if key is None else key
  batch = trainer.task.sample(key, num_examples)
  grads = _compiled_gradients(trainer)(params, batch)
  return np.stack([np.asarray(gradient_norms(grads, d)) for d in range(grads.shape[1])])


def one_seed(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with train.num_seeds = 1 (the diagnostic reads one replica)."""
  config = copy.deepcopy(config)
  config.train.num_seeds = 1
  return config


def norms_at_init(config: ml_collections.ConfigDict, num_examples: int = 64) -> np.ndarray:
  """[time] forward-direction gradient norms of `config`'s model at initialisation."""
  from rnnlab.training import train
  trainer = train.Trainer(one_seed(config))
  return trainer_gradient_norms(trainer, seed_params(trainer.init()), num_examples)[0]


def norms_of_workdir(workdir: str, num_examples: int = 64) -> tuple[np.ndarray, int]:
  """([time] forward-direction norms, step) of the latest checkpoint of a trained run."""
  from rnnlab.training import evaluation
  trainer, state = evaluation.restore_run(workdir)
  step = int(np.asarray(state.step).reshape(-1)[0])
  return trainer_gradient_norms(trainer, seed_params(state), num_examples)[0], step
