"""Reloading a run for evaluation: the saved config, the checkpoint, fresh evaluation batches."""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging

from rnnlab.errors import CheckpointError
from rnnlab.training import checkpoint, device_mesh, train


def restore_run(workdir: str, best: bool = False, config: Any = None
                ) -> tuple[train.Trainer, train.TrainState]:
  """The Trainer built from `workdir`'s config.json (or `config`, a variant of it) and the state
  of its latest (or best) checkpoint."""
  config = train.load_config(workdir) if config is None else config
  trainer = train.Trainer(config, mesh=_evaluation_mesh(config))
  if not os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
    raise CheckpointError(f"{workdir!r} has no {checkpoint.CHECKPOINT_DIR}/ directory: "
                          "nothing to restore (train first with experiments.train)")
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_checkpoints,
                                 best_mode="max" if trainer.task.higher_is_better else "min",
                                 read_only=True)
  try:
    state = ckpt.restore(trainer.abstract_state(), best=best)
  finally:
    ckpt.close()
  return trainer, state


def _evaluation_mesh(config: Any) -> jax.sharding.Mesh:
  """The most devices that divide both batch sizes of the run: a run trained on other devices
  (e.g. 1) evaluates here to the same numbers, on fewer devices if its batches do not split."""
  devices = jax.devices()
  n = max(k for k in range(1, len(devices) + 1)
          if config.train.batch_size % k == 0 and config.train.eval_batch_size % k == 0)
  if n < len(devices):
    logging.info("Evaluating on %d of %d devices: config.train.batch_size=%d and eval_batch_size="
                 "%d do not split over %d.", n, len(devices), config.train.batch_size,
                 config.train.eval_batch_size, len(devices))
  return device_mesh.make_mesh(devices[:n])


def evaluate_workdir(workdir: str, best: bool = False,
                     eval_batches: int | None = None) -> dict[str, Any]:
  """Metrics of the restored model on the run's held-out evaluation batches (no training)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f"--workdir {workdir!r} is a regular file, not a run's directory; give "
                          "the --workdir of a training run")
  if not os.path.isdir(workdir):
    raise CheckpointError(f"workdir {workdir!r} does not exist")
  config = train.load_config(workdir)
  if eval_batches is not None:
    if eval_batches < 1:
      raise CheckpointError(f"eval_batches must be >= 1, got {eval_batches}")
    config.train.eval_batches = eval_batches
  trainer, state = restore_run(workdir, best, config)
  values = jax.tree.map(lambda x: np.asarray(x).tolist(), trainer.eval_step(state))
  out: dict[str, Any] = {"workdir": workdir, "step": int(np.asarray(state.step).reshape(-1)[0])}
  for k, v in values.items():
    out[k] = float(np.mean(v))
    if len(v) > 1:
      out[f"{k}_per_seed"] = v
  return out
