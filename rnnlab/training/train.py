"""Training: state, the jitted train and eval steps, and the loop with logging and checkpoints.

Every array of the train state has a leading [seeds] axis: `train.num_seeds` independent replicas
(own init, data and dropout keys) are trained by ONE compiled program, `jax.vmap` over the seed.
With one seed the axis has size 1.

Randomness: seed replica s uses root = fold_in(PRNGKey(config.seed), s); params from
fold_in(root, 0), training batches from fold_in(fold_in(root, 1), step) -- so a resumed run sees the
batches an uninterrupted one would -- and evaluation from fold_in(root, 2), a key stream training
never touches (the same fixed evaluation batches at every evaluation).

Workdir: rnnlab.training.run_folder owns it (its files, the lock, config.json and what a resumed
run starts from); this module only runs the loop inside `run_folder.open_run`.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from rnnlab import models, tasks
from rnnlab.errors import ConfigError, Interrupted, NonFiniteError
from rnnlab.training import (
  checkpoint,
  config_check,
  device_mesh,
  memory,
  metrics_log,
  run_folder,
  stop_signals,
)

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  """One replica's state (the loop holds it with a leading [seeds] axis)."""

  params: Any
  opt_state: Any
  step: Array             # int32 scalar: updates applied so far
  rng: Array              # uint32 [2]: this replica's root key
  steps_to_solve: Array   # int32: first eval step at which the task was solved, -1 if not yet
  nonfinite_step: Array   # int32: first step whose loss/grads were non-finite, -1 if none
  skipped_updates: Array  # int32: updates skipped because non-finite (on_nonfinite="skip")


# ----------------------------------------------------------------------------- builders

def build_model(config: ml_collections.ConfigDict, task: tasks.Task) -> Any:
  """The model `task.model_spec` asks for, configured by `config.model` (`models.build_model`)."""
  return models.build_model(config.model, task.model_spec, task.name)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  t = config.train
  if t.schedule == "warmup_cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, max(t.warmup_steps, 1),
                                            max(t.num_steps, t.warmup_steps + 1))
  else:
    lr = t.learning_rate
  if t.optimizer == "adamw":
    opt = optax.adamw(lr, weight_decay=t.weight_decay)
  elif t.optimizer == "sgd":
    opt = optax.sgd(lr, momentum=t.momentum or None)
  else:
    opt = optax.adam(lr)
  chain = [optax.clip_by_global_norm(t.grad_clip)] if t.grad_clip > 0 else []
  return optax.chain(*chain, opt)


def learning_rate_at(config: ml_collections.ConfigDict, step: int) -> float:
  t = config.train
  if t.schedule == "warmup_cosine":
    sched = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, max(t.warmup_steps, 1),
                                               max(t.num_steps, t.warmup_steps + 1))
    return float(sched(step))
  return float(t.learning_rate)


class Trainer:
  """The compiled pieces of a run: init, train step and eval step, all vmapped over seeds."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None):
    config_check.validate(config)
    self.config = config
    self.task = tasks.get(config.task)
    self.model = build_model(config, self.task)
    self.tx = make_optimizer(config)
    self.mesh = mesh if mesh is not None else device_mesh.make_mesh()
    device_mesh.check_batch_size(config.train.batch_size, self.mesh, "config.train.batch_size")
    device_mesh.check_batch_size(config.train.eval_batch_size, self.mesh,
                              "config.train.eval_batch_size")
    replicated = device_mesh.replicated(self.mesh)
    seeds = jnp.arange(config.train.num_seeds)
    self.seed_map = resolve_seed_map(config.train.seed_map, config.train.num_seeds)
    over_seeds = functools.partial(map_over_seeds, self.seed_map)
    self.init = jax.jit(lambda: over_seeds(self._init_one)(seeds), out_shardings=replicated)
    self.train_step = jax.jit(over_seeds(self._train_step_one), donate_argnums=0,
                              out_shardings=replicated)
    self.eval_step = jax.jit(over_seeds(self._eval_one), out_shardings=replicated)
    self.mark_solved = jax.jit(over_seeds(_mark_solved), donate_argnums=0,
                               out_shardings=replicated)

  # -- per-replica pure functions (vmapped over seeds above)

  def _init_one(self, seed_index: Array) -> TrainState:
    root = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), seed_index)
    batch = self.task.sample(jax.random.PRNGKey(0), 2)
    params = self.model.init(jax.random.fold_in(root, 0), batch["inputs"],
                             batch["lengths"])["params"]
    minus_one = jnp.array(-1, jnp.int32)
    return TrainState(params, self.tx.init(params), jnp.array(0, jnp.int32), root, minus_one,
                      minus_one, jnp.array(0, jnp.int32))

  def _loss(self, params: Any, batch: dict[str, Array], dropout_key: Array | None):
    deterministic = dropout_key is None
    rngs = {} if deterministic else {"dropout": dropout_key}
    if hasattr(self.task, "forward"):  # e.g. teacher forcing needs the targets too
      outputs = self.task.forward(self.model, params, batch, deterministic, rngs)
    else:
      outputs = self.model.apply({"params": params}, batch["inputs"], batch["lengths"],
                                 deterministic=deterministic, rngs=rngs)
    return self.task.loss_and_metrics(outputs, batch)

  def _train_step_one(self, state: TrainState) -> tuple[TrainState, dict[str, Array]]:
    step_key = jax.random.fold_in(jax.random.fold_in(state.rng, 1), state.step)
    batch_key, dropout_key = jax.random.split(step_key)
    batch = device_mesh.shard_batch(self.task.sample(batch_key, self.config.train.batch_size),
                                 self.mesh)
    use_dropout = self.config.model.dropout_rate > 0
    (loss, metrics), grads = jax.value_and_grad(self._loss, has_aux=True)(
        state.params, batch, dropout_key if use_dropout else None)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if self.config.train.on_nonfinite == "stop":
      # After the first non-finite step the state stays frozen at the last good one; the host
      # loop sees `nonfinite_step` at its next sync and stops without saving.
      apply = finite & (state.nonfinite_step < 0)
    else:
      apply = finite
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
    first_bad = (~finite) & (state.nonfinite_step < 0)
    state = state.replace(
        params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
        step=state.step + 1,
        nonfinite_step=jnp.where(first_bad, state.step, state.nonfinite_step),
        skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32))
    metrics = dict(metrics, grad_norm=grad_norm)
    return state, metrics

  def _eval_one(self, state: TrainState) -> dict[str, Array]:
    eval_root = jax.random.fold_in(state.rng, 2)

    def one_batch(i):
      batch = device_mesh.shard_batch(
          self.task.sample(jax.random.fold_in(eval_root, i), self.config.train.eval_batch_size),
          self.mesh)
      if hasattr(self.task, "evaluate"):  # e.g. greedy decoding instead of teacher forcing
        return self.task.evaluate(self.model, state.params, batch)
      return self._loss(state.params, batch, None)[1]

    per_batch = jax.lax.map(one_batch, jnp.arange(self.config.train.eval_batches))
    return jax.tree.map(jnp.mean, per_batch)

  def abstract_state(self) -> Any:
    return jax.eval_shape(self.init)


SEED_MAPS = ("auto", "vmap", "map")


def resolve_seed_map(seed_map: str, num_seeds: int, backend: str | None = None) -> str:
  """"vmap" or "map": how the replicas of `train.num_seeds` share one compiled program.

  "vmap" batches the seeds into every operation; "map" (`jax.lax.map`) runs them one after
  another inside the program. "auto" is "vmap" on accelerators, where one small model leaves
  most of the device idle, and "map" on CPU, where the seeds' work only adds up and batching it
  costs more than separate runs (experiments/results/benchmark.md, the seeds suite). One seed is
  always "vmap" (no map to make).
  """
  if seed_map not in SEED_MAPS:
    raise ConfigError(f"config.train.seed_map={seed_map!r}; choose one of: {', '.join(SEED_MAPS)}")
  if num_seeds == 1:
    return "vmap"
  if seed_map == "auto":
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"
  return seed_map


def map_over_seeds(seed_map: str, fn: Any) -> Any:
  """`fn` of one replica's arguments -> the same function of arguments with a leading [seeds]
  axis, by `jax.vmap` or by `jax.lax.map` (see `resolve_seed_map`)."""
  if seed_map == "vmap":
    return jax.vmap(fn)
  return lambda *args: jax.lax.map(lambda a: fn(*a), args)


def _mark_solved(state: TrainState, solved: Array) -> TrainState:
  first = solved & (state.steps_to_solve < 0)
  return state.replace(steps_to_solve=jnp.where(first, state.step, state.steps_to_solve))


# ----------------------------------------------------------------------------- workdir files

# The run folder's names and readers, kept here for the callers that import them from train.
CONFIG_FILE = run_folder.CONFIG_FILE
METRICS_FILE = run_folder.METRICS_FILE
SUMMARY_FILE = run_folder.SUMMARY_FILE
with_base_defaults = run_folder.with_base_defaults
load_config = run_folder.load_config
prepare_workdir = run_folder.prepare_workdir
read_metrics = metrics_log.read


def _to_python(tree: Any) -> Any:
  """Device metrics [seeds] -> floats (one seed) or lists (several)."""
  def conv(x):
    x = np.asarray(x)
    vals = [v.item() for v in x.reshape(-1)]
    return vals[0] if len(vals) == 1 else vals
  return jax.tree.map(conv, tree)


def _eta(steps_left: int, steps_per_sec: float) -> str:
  """"3m05s": the time `steps_left` steps take at the current rate (evaluation not counted)."""
  seconds = int(steps_left / max(steps_per_sec, 1e-9))
  return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _mean(value: Any) -> float:
  return float(np.mean(value))


# ----------------------------------------------------------------------------- the loop

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains per `config` in `workdir` (resuming from its latest checkpoint), returns the summary."""
  trainer = Trainer(config)
  memory.check(trainer)
  is_main = jax.process_index() == 0
  task, t = trainer.task, config.train
  if t.num_seeds > 1:
    logging.info("%d seeds in one program, mapped by %s (train.seed_map=%s on %s).",
                 t.num_seeds, "jax.lax.map" if trainer.seed_map == "map" else "jax.vmap",
                 t.seed_map, jax.default_backend())
  # A second Ctrl-C aborts at once, even inside a long step or save: the run resumes from its
  # latest checkpoint, and the folder is rewound to it.
  stop = stop_signals.StopRequest("stopping after this step", raise_on_abort=True)
  # A multi-host run keeps SIGTERM fatal: its processes would see it at different steps and
  # meet in different collectives (the checkpoint save of one, the train step of another).
  signals = stop_signals.STOP_SIGNALS if jax.process_count() == 1 else (signal.SIGINT,)
  with (run_folder.open_run(config, workdir, is_main) as start,
        stop_signals.handling(stop.handle, signals)):
    ckpt = checkpoint.Checkpointer(workdir, keep=t.keep_checkpoints,
                                   best_mode="max" if task.higher_is_better else "min")
    log = metrics_log.MetricsLog(workdir, enabled=is_main, restart_step=(start or 0) + 1)
    try:
      state = trainer.init()
      if start is not None:
        state = ckpt.restore(state, start)
        logging.info("Resumed from the checkpoint at step %d in %s.", start, ckpt.directory)
        key = f"eval_{task.metric}"
        ckpt.repair_best(start, state, {r["step"]: r[key] for r in metrics_log.read(workdir)
                                        if key in r})
      step = int(np.asarray(state.step).reshape(-1)[0])
      saved_step = start
      solved_all = bool(np.all(np.asarray(state.steps_to_solve) >= 0))
      wall_start = time.time()
      last_log_time, last_log_step = time.time(), step
      last_eval: dict[str, Any] = {}
      while step < t.num_steps and not (t.stop_when_solved and solved_all):
        if stop.requested:
          if step != (saved_step or 0):
            _check_finite(state, ckpt, t.on_nonfinite)
            ckpt.save(step, state)
          ckpt.wait()
          raise Interrupted(f"interrupted at step {step}; run the same command to resume",
                            step=step, exit_code=stop.exit_code)
        state, metrics = trainer.train_step(state)
        step += 1
        last = step == t.num_steps
        if step % t.log_every == 0 or last:
          values = _to_python(metrics)
          _check_finite(state, ckpt, t.on_nonfinite)
          now = time.time()
          row = {"step": step, **{k: _mean(v) for k, v in values.items()},
                 "learning_rate": learning_rate_at(config, step - 1),
                 "steps_per_sec": (step - last_log_step) / max(now - last_log_time, 1e-9)}
          if t.num_seeds > 1:
            row["per_seed"] = values
          last_log_time, last_log_step = now, step
          log.write(row)
          logging.info("step %d/%d  loss %.4f  %s %.4f  grad_norm %.3g  %.1f steps/s  ETA %s",
                       step, t.num_steps, row["loss"], task.metric, row[task.metric],
                       row["grad_norm"], row["steps_per_sec"],
                       _eta(t.num_steps - step, row["steps_per_sec"]))
        if step % t.eval_every == 0 or last:
          last_eval, state, solved_all = _evaluate(trainer, state, step, log)
          ckpt.save_best(step, state, last_eval[f"eval_{task.metric}"])
        if step % t.checkpoint_every == 0 or last or (t.stop_when_solved and solved_all):
          _check_finite(state, ckpt, t.on_nonfinite)
          ckpt.save(step, state)
          saved_step = step
      if not last_eval:  # resumed a finished run: nothing trained, evaluate it for the summary
        last_eval, state, solved_all = _evaluate(trainer, state, step, None)
      ckpt.wait()
    finally:
      ckpt.close()
      log.close()

    summary = {
        "task": task.name, "cell": config.model.cell, "bidirectional": config.model.bidirectional,
        "length": config.task.length, "steps": step, "metric": task.metric,
        "final": {k: v for k, v in last_eval.items() if k != "step"},
        "baseline": task.baseline, "baseline_of": task.baseline_of,
        "steps_to_solve": _to_python(state.steps_to_solve),
        "solved": solved_all,
        "skipped_updates": _to_python(state.skipped_updates),
        "wall_time_sec": _previous_wall_time(workdir) + (time.time() - wall_start),
    }
    if is_main:
      run_folder.atomic_write(os.path.join(workdir, SUMMARY_FILE), json.dumps(summary, indent=2))
  return summary


def _previous_wall_time(workdir: str) -> float:
  """Wall time of earlier sessions of this run (from a summary written before a resume)."""
  path = os.path.join(workdir, SUMMARY_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return float(json.load(f).get("wall_time_sec", 0.0))
  return 0.0


def _evaluate(trainer: Trainer, state: TrainState, step: int, log: metrics_log.MetricsLog | None
              ) -> tuple[dict[str, Any], TrainState, bool]:
  task = trainer.task
  values = trainer.eval_step(state)
  solved = jnp.asarray(tasks.is_solved(task, values))
  state = trainer.mark_solved(state, solved)
  values = _to_python(values)
  row = {"step": step, **{f"eval_{k}": _mean(v) for k, v in values.items()}}
  if trainer.config.train.num_seeds > 1:
    row["eval_per_seed"] = values
  if log is not None:
    log.write(row)
    logging.info("eval at step %d: %s", step,
                 "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("eval_")
                           and not isinstance(v, (list, dict))))
  return row, state, bool(np.all(np.asarray(solved)))


def _check_finite(state: TrainState, ckpt: checkpoint.Checkpointer, mode: str) -> None:
  bad = np.asarray(state.nonfinite_step)
  if mode == "stop" and np.any(bad >= 0):
    first = int(bad[bad >= 0].min())
    latest = ckpt.latest_step()
    where = (f"the last good checkpoint is step {latest} in {ckpt.directory}" if latest is not None
             else "no checkpoint was saved before it")
    raise NonFiniteError(
        f"the loss or gradients became non-finite (NaN/inf) at step {first}; training stopped "
        f"and nothing non-finite was saved: {where}. Lower config.train.learning_rate, keep "
        "config.train.grad_clip > 0, or set config.train.on_nonfinite=skip.", step=first)
