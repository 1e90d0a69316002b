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
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import models
from rnnlab.core import cells, recurrent
from rnnlab.errors import RnnlabError
from rnnlab.training import run_folder

Array = jax.Array
DATA_FILE = "gradient_flow.json"
EXPLODING_FILE = "gradient_flow_exploding.json"


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


def _one_seed(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = copy.deepcopy(config)
  config.train.num_seeds = 1
  return config


def norms_at_init(config: ml_collections.ConfigDict, num_examples: int = 64) -> np.ndarray:
  """[time] forward-direction gradient norms of `config`'s model at initialisation."""
  from rnnlab.training import train
  trainer = train.Trainer(_one_seed(config))
  return trainer_gradient_norms(trainer, seed_params(trainer.init()), num_examples)[0]


def norms_of_workdir(workdir: str, num_examples: int = 64) -> tuple[np.ndarray, int]:
  """([time] forward-direction norms, step) of the latest checkpoint of a trained run."""
  from rnnlab.training import evaluation
  trainer, state = evaluation.restore_run(workdir)
  step = int(np.asarray(state.step).reshape(-1)[0])
  return trainer_gradient_norms(trainer, seed_params(state), num_examples)[0], step


def _write(path: str, data: dict[str, Any]) -> None:
  run_folder.atomic_write(path, json.dumps(data, indent=1))


def gradient_flow_study(config: ml_collections.ConfigDict, cell_names: Sequence[str],
                        train_dir: str, train_steps: int, num_examples: int = 64,
                        command: str | None = None) -> dict[str, Any]:
  """Norms at initialisation and after `train_steps` steps (train_and_evaluate in
  train_dir/<cell>, resumable) for each cell; writes and returns train_dir/gradient_flow.json."""
  from rnnlab.training import train
  runs = []
  for name in cell_names:
    c = _one_seed(config)
    c.model.cell = name
    c.train.num_steps = train_steps
    c.train.stop_when_solved = False
    runs.append({"cell": name, "stage": "init", "step": 0,
                 "norms": norms_at_init(c, num_examples).tolist()})
    workdir = os.path.join(train_dir, name)
    summary = train.train_and_evaluate(c, workdir)
    norms, step = norms_of_workdir(workdir, num_examples)
    runs.append({"cell": name, "stage": "trained", "step": step, "norms": norms.tolist(),
                 "final": summary.get("final", {}), "workdir": workdir})
  data = {"task": config.task.name, "length": config.task.length,
          "hidden": config.model.hidden_size, "num_examples": num_examples, "runs": runs,
          "command": command}
  _write(os.path.join(train_dir, DATA_FILE), data)
  return data


def gradient_flow_of_workdir(workdir: str, num_examples: int = 64,
                             command: str | None = None) -> dict[str, Any]:
  """Norms at initialisation (same config and seed) and at the latest checkpoint of one trained
  run; writes and returns workdir/gradient_flow.json."""
  from rnnlab.training import evaluation
  trainer, state = evaluation.restore_run(workdir)
  step = int(np.asarray(state.step).reshape(-1)[0])
  trained = trainer_gradient_norms(trainer, seed_params(state), num_examples)[0]
  at_init = trainer_gradient_norms(trainer, seed_params(trainer.init()), num_examples)[0]
  config = trainer.config
  cell = config.model.cell
  data = {"task": config.task.name, "length": config.task.length,
          "hidden": config.model.hidden_size, "num_examples": num_examples,
          "runs": [{"cell": cell, "stage": "init", "step": 0, "norms": at_init.tolist()},
                   {"cell": cell, "stage": "trained", "step": step, "norms": trained.tolist(),
                    "workdir": workdir}],
          "command": command}
  _write(os.path.join(workdir, DATA_FILE), data)
  return data


def exploding_study(config: ml_collections.ConfigDict, scales: Sequence[float],
                    train_scale: float, train_steps: int, train_dir: str,
                    num_examples: int = 64, command: str | None = None) -> dict[str, Any]:
  """The exploding case for a vanilla tanh RNN.

  Norms at initialisation for each recurrent scale (config.model.recurrent_scale), then
  training at `train_scale` with config.train.grad_clip and with clipping off (both with
  on_nonfinite="skip", so a run whose gradients overflow keeps going and shows it), in
  train_dir/clip and train_dir/noclip. Writes and returns train_dir/gradient_flow_exploding.json.
  """
  from rnnlab.training import train
  base = _one_seed(config)
  base.model.cell = "vanilla"
  base.model.activation = "tanh"
  norms = []
  for scale in scales:
    c = copy.deepcopy(base)
    c.model.recurrent_scale = float(scale)
    norms.append({"scale": float(scale), "norms": norms_at_init(c, num_examples).tolist()})
  clip = config.train.grad_clip if config.train.grad_clip > 0 else 1.0
  runs = []
  for label, grad_clip, sub in ((f"global-norm clip {clip}", clip, "clip"),
                                ("no clipping", 0.0, "noclip")):
    c = copy.deepcopy(base)
    c.model.recurrent_scale = float(train_scale)
    c.train.grad_clip = grad_clip
    c.train.num_steps = train_steps
    c.train.stop_when_solved = False
    c.train.on_nonfinite = "skip"
    c.train.log_every = min(c.train.log_every, max(1, train_steps // 50))  # smooth curves
    workdir = os.path.join(train_dir, sub)
    summary = train.train_and_evaluate(c, workdir)
    runs.append({"label": label, "grad_clip": grad_clip, "workdir": workdir,
                 "final": summary.get("final", {}),
                 "skipped_updates": summary.get("skipped_updates")})
  from rnnlab import tasks
  data = {"task": config.task.name, "length": config.task.length,
          "hidden": config.model.hidden_size, "train_scale": float(train_scale),
          "baseline": tasks.get(config.task).baseline, "norms": norms, "runs": runs,
          "command": command}
  _write(os.path.join(train_dir, EXPLODING_FILE), data)
  return data
