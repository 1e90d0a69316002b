"""Checkpoints with orbax: the latest K for resuming, and the best by evaluation metric.

Layout under a workdir:
  checkpoints/<step>/        latest `keep` checkpoints (orbax CheckpointManager)
  best_checkpoint/<step>/    the single best one by the task's headline eval metric

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a save
killed half-way is never listed as a step and never restored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rnnlab.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best_checkpoint"


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(
      x, "sharding", None)), tree)


class Checkpointer:
  """Saves and restores a train-state pytree under `workdir`."""

  def __init__(self, workdir: str, keep: int = 3, best_mode: str | None = None,
               save_best: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.latest = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    self.best = None
    if save_best and best_mode is not None:
      self.best = ocp.CheckpointManager(
          os.path.abspath(os.path.join(workdir, BEST_DIR)),
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, best_fn=lambda m: m["value"], best_mode=best_mode, create=True))

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state: Any) -> None:
    self.latest.save(step, args=ocp.args.StandardSave(state), force=True)

  def save_best(self, step: int, state: Any, value: float) -> None:
    if self.best is not None and np.isfinite(value):
      self.best.save(step, args=ocp.args.StandardSave(state),
                     metrics={"value": float(value)}, force=True)

  def restore(self, state_like: Any, step: int | None = None, best: bool = False) -> Any:
    """Restores `step` (default: latest, or the best one) into the structure, shapes and dtypes
    of `state_like`."""
    manager = self.best if best else self.latest
    directory = manager.directory if manager is not None else self.directory
    if step is None and manager is not None:
      step = manager.best_step() if best else manager.latest_step()
    if step is None:
      raise CheckpointError(f"no checkpoint in {directory}: train first (experiments.train), "
                            "or point --workdir at a run that saved one")
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(_abstract(state_like)))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f"the checkpoint at step {step} in {directory} does not match the model of this "
          f"config (different cell, sizes or layers?): {_first_line(e)}. Use the config the run "
          "was made with (config.json in the workdir), or a new workdir.") from None

  def wait(self) -> None:
    self.latest.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    if self.best is not None:
      self.best.close()


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return text[0][:300] if text else type(e).__name__
