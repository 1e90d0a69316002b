"""Gradient-flow studies: ||dLoss/dh_t|| of several cells at initialisation and after a short
training run, of one trained run, and of a vanilla RNN whose recurrent weights are scaled up, with
and without clipping. The norms come from `rnnlab.analysis.gradient_flow`; each study saves its
numbers as JSON (DATA_FILE, EXPLODING_FILE) next to the runs it trained, and `run` draws the
figure from that data (`rnnlab.studies.plots`).

`run` is what `experiments/gradient_flow.py` calls: the study picked by its arguments, then the
plot, by default in the study's own directory (the trained run's workdir, or train_dir); the
committed pictures are regenerated only by naming results_dir=experiments/results.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from rnnlab import tasks
from rnnlab.analysis import gradient_flow
from rnnlab.errors import ConfigError
from rnnlab.studies import launch, plots, sweep, sweep_table
from rnnlab.training import evaluation, run_files, run_folder

DATA_FILE = "gradient_flow.json"
EXPLODING_FILE = "gradient_flow_exploding.json"
PLOT_FILE = "gradient_flow.png"
EXPLODING_PLOT_FILE = "gradient_flow_exploding.png"


def _write(path: str, data: dict[str, Any]) -> None:
  run_folder.atomic_write(path, json.dumps(data, indent=1))


def gradient_flow_study(config: ml_collections.ConfigDict, cell_names: Sequence[str],
                        train_dir: str, train_steps: int, num_examples: int = 64,
                        command: str | None = None,
                        training: launch.Training = launch.Training()) -> dict[str, Any] | None:
  """Norms at initialisation and after `train_steps` steps for each cell; writes and returns
  train_dir/gradient_flow.json. The runs are sweep points in train_dir/<cell> (resumable, a
  finished one is not trained again), trained by `launch.train_points` (in worker processes or
  as submitit jobs, this shard's only); None while some are not finished (other
  shards, Slurm jobs)."""
  base = gradient_flow.one_seed(config)
  base.train.num_steps = train_steps
  base.train.stop_when_solved = False
  points = sweep.make_points(base, [(("model.cell", name),) for name in cell_names], train_dir,
                             names=list(cell_names))
  if not launch.train_points(points, train_dir, training).done:
    return None
  at_init = [gradient_flow.norms_at_init(p.config, num_examples).tolist() for p in points]
  runs = []
  for name, point, init_norms in zip(cell_names, points, at_init):
    runs.append({"cell": name, "stage": "init", "step": 0, "norms": init_norms})
    norms, step = gradient_flow.norms_of_workdir(point.workdir, num_examples)
    runs.append({"cell": name, "stage": "trained", "step": step, "norms": norms.tolist(),
                 "final": (sweep_table.read_summary(point.workdir) or {}).get("final", {}),
                 "workdir": point.workdir})
  data = {"task": config.task.name, "length": config.task.length,
          "hidden": config.model.hidden_size, "num_examples": num_examples, "runs": runs,
          "command": command}
  _write(os.path.join(train_dir, DATA_FILE), data)
  return data


def gradient_flow_of_workdir(workdir: str, num_examples: int = 64,
                             command: str | None = None) -> dict[str, Any]:
  """Norms at initialisation (same config and seed) and at the latest checkpoint of one trained
  run; writes and returns workdir/gradient_flow.json."""
  trainer, state = evaluation.restore_run(workdir)
  step = int(np.asarray(state.step).reshape(-1)[0])
  # The same config and seed at initialisation: what training changed, nothing else.
  trained, at_init = (
      gradient_flow.trainer_gradient_norms(trainer, gradient_flow.seed_params(s), num_examples)[0]
      for s in (state, trainer.init()))
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
                    num_examples: int = 64, command: str | None = None,
                    training: launch.Training = launch.Training()) -> dict[str, Any] | None:
  """The exploding case for a vanilla tanh RNN.

  Norms at initialisation for each recurrent scale (config.model.recurrent_scale), then
  training at `train_scale` with config.train.grad_clip and with clipping off (both with
  on_nonfinite="skip", so a run whose gradients overflow keeps going and shows it): sweep points
  in train_dir/clip and train_dir/noclip, trained by `launch.train_points` (None while some are
  not finished: other shards, Slurm jobs). Writes and returns
  train_dir/gradient_flow_exploding.json.
  """
  base = gradient_flow.one_seed(config)
  base.model.cell = "vanilla"
  base.model.activation = "tanh"
  clip = config.train.grad_clip if config.train.grad_clip > 0 else 1.0
  trained = copy.deepcopy(base)
  trained.model.recurrent_scale = float(train_scale)
  trained.train.num_steps = train_steps
  trained.train.stop_when_solved = False
  trained.train.on_nonfinite = "skip"
  trained.train.log_every = min(trained.train.log_every, max(1, train_steps // 50))  # smooth
  labels = {"clip": f"global-norm clip {clip}", "noclip": "no clipping"}
  points = sweep.make_points(trained, [(("train.grad_clip", clip),), (("train.grad_clip", 0.0),)],
                             train_dir, names=list(labels))
  if not launch.train_points(points, train_dir, training).done:
    return None
  norms = []
  for scale in scales:
    c = copy.deepcopy(base)
    c.model.recurrent_scale = float(scale)
    norms.append({"scale": float(scale),
                  "norms": gradient_flow.norms_at_init(c, num_examples).tolist()})
  runs = []
  for point in points:
    summary = sweep_table.read_summary(point.workdir) or {}
    runs.append({"label": labels[point.name], "grad_clip": point.config.train.grad_clip,
                 "workdir": point.workdir, "final": summary.get("final", {}),
                 "skipped_updates": summary.get("skipped_updates")})
  data = {"task": config.task.name, "length": config.task.length,
          "hidden": config.model.hidden_size, "train_scale": float(train_scale),
          "baseline": tasks.get(config.task).baseline, "norms": norms, "runs": runs,
          "command": command}
  _write(os.path.join(train_dir, EXPLODING_FILE), data)
  return data


def run(config: ml_collections.ConfigDict | None, workdir: str | None, *, train_dir: str,
        exploding: bool = False, cell_names: Sequence[str] = ("vanilla", "lstm", "gru"),
        train_steps: int = 300, num_examples: int = 64,
        scales: Sequence[float] = (1.0, 1.5, 2.0, 3.0), train_scale: float = 2.0,
        results_dir: str | None = None, out: str | None = None,
        command: str | None = None, training: launch.Training = launch.Training()
        ) -> str | None:
  """One study and its plot; returns the plot's path (None while some of its runs are not
  finished: other shards, Slurm jobs; run it again when they are done).

  Args:
    config: train briefly from this config (`gradient_flow_study`, or `exploding_study` with
      `exploding`) in train_dir; None: `workdir` is a trained run (`gradient_flow_of_workdir`).
    workdir: the trained run to diagnose when config is None.
    results_dir: directory of the plot (PLOT_FILE or EXPLODING_PLOT_FILE); None: the study's own
      directory (workdir, or train_dir).
    out: the plot's path, overriding results_dir.
    training: how the study's runs are trained (`launch.train_points`).
    The others: as in the studies.
  """
  if (config is None) == (workdir is None):
    raise ConfigError("give exactly one of config (train briefly) or workdir (a trained run)")
  if out is not None:
    run_files.check_writable_dir(os.path.dirname(os.path.abspath(out)), "--out")
  elif results_dir is not None:
    run_files.check_writable_dir(results_dir, "--results_dir")
  if config is None:
    data = gradient_flow_of_workdir(workdir, num_examples, command)
    own_dir, name, draw = workdir, PLOT_FILE, plots.gradient_flow
  elif exploding:
    data = exploding_study(config, scales, train_scale, train_steps, train_dir, num_examples,
                           command, training)
    own_dir, name, draw = train_dir, EXPLODING_PLOT_FILE, plots.exploding
  else:
    data = gradient_flow_study(config, cell_names, train_dir, train_steps, num_examples, command,
                               training)
    own_dir, name, draw = train_dir, PLOT_FILE, plots.gradient_flow
  if data is None:
    return None
  path = out or os.path.join(results_dir or own_dir, name)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  draw(data, path)
  return path
