"""Checkpoints with orbax: the latest K for resuming, and the best by evaluation metric.

Layout under a workdir:
  checkpoints/<step>/        latest `keep` checkpoints (orbax CheckpointManager)
  best_checkpoint/<step>/    the single best one by the task's headline eval metric

Orbax writes each checkpoint to a temporary directory (`<step>.orbax-checkpoint-tmp...`) and renames
it when complete, so a save killed half-way is never listed as a step and never restored; such
leftovers are deleted when the next run opens the directory.

Multi-host: every process calls save/restore (orbax coordinates them; process 0 writes the
metadata). The two managers use different barrier names, as orbax requires of managers that save
concurrently: with the same names, saving the best and the latest checkpoint of one step collide
and the save never completes.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from rnnlab.errors import CheckpointError
from rnnlab.training import run_files

CHECKPOINT_DIR = run_files.CHECKPOINT_DIR
BEST_DIR = run_files.BEST_CHECKPOINT_DIR


def _abstract(tree: Any) -> Any:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=getattr(
      x, "sharding", None)), tree)


class Checkpointer:
  """Saves and restores a train-state pytree under `workdir`."""

  def __init__(self, workdir: str, keep: int = 3, best_mode: str | None = None,
               save_best: bool = True, read_only: bool = False):
    """`read_only`: for readers (evaluation) of a run that may still be training: creates and
    deletes nothing, not even the temporary directory of a save in progress."""
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    # The item handler is named so that `item_metadata` can read shapes without reading arrays.
    self.latest = ocp.CheckpointManager(
        self.directory, options=_options("latest", read_only, max_to_keep=keep),
        item_handlers=ocp.StandardCheckpointHandler())
    self.best, self._best_mode = None, best_mode
    if save_best and best_mode is not None:
      self.best = ocp.CheckpointManager(
          os.path.abspath(os.path.join(workdir, BEST_DIR)),
          options=_options("best", read_only, max_to_keep=1, best_fn=lambda m: m["value"],
                           best_mode=best_mode),
          item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, state: Any) -> None:
    _writing(self.latest.directory, step, lambda: self.latest.save(
        step, args=ocp.args.StandardSave(state), force=True))

  def save_best(self, step: int, state: Any, value: float) -> None:
    if self.best is not None and np.isfinite(value):
      _writing(self.best.directory, step, lambda: self.best.save(
          step, args=ocp.args.StandardSave(state), metrics={"value": float(value)}, force=True))

  def repair_best(self, step: int, state: Any, values: Mapping[int, float]) -> None:
    """After a resume at `step`: makes best_checkpoint/ what the uninterrupted run had after that
    step -- one checkpoint, the best one -- whatever moment a kill came at.

    A kill between the write of a new best checkpoint and orbax's removal of the old one left two:
    the worse is removed (orbax's own `best_step` picks, as it did in the uninterrupted run). A kill
    after the latest checkpoint of `step` but before its best one left none of `step`: it is
    written when its value (`values`: the eval metric by step, from metrics.jsonl) is no worse
    than the kept best's, replaying the decision orbax made for it.
    """
    if self.best is None:
      return
    kept = self.best.best_step()
    stale = [s for s in self.best.all_steps() if s != kept]
    for s in stale if jax.process_index() == 0 else ():  # the run folder's writer, as in rewinds
      run_files.remove_checkpoint(os.fspath(self.best.directory), s)
    if stale:
      self.best.reload()
    if step not in values or step in self.best.all_steps():
      return
    if kept in values and (values[step] < values[kept] if self._best_mode == "max"
                           else values[step] > values[kept]):
      return  # it was saved and dropped: not the best
    self.save_best(step, state, values[step])

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
    _check_shapes(manager, step, state_like, directory)
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(_abstract(state_like)))
    except Exception as e:  # noqa: BLE001 -- orbax raises bare Exceptions for unreadable data
      if isinstance(e, (ValueError, KeyError, TypeError)) and not _unreadable(e):
        raise CheckpointError(
            f"the checkpoint at step {step} in {directory} does not match the model of this "
            f"config (different cell, sizes or layers?): {_first_line(e)}. Use the config the "
            "run was made with (config.json in the workdir), or a new workdir.") from None
      step_dir = os.path.join(os.fspath(directory), str(step))
      raise CheckpointError(
          f"the checkpoint at step {step} in {directory} cannot be read (damaged or truncated "
          f"files?): {_first_line(_root_cause(e))}. Delete {step_dir} to fall back to the "
          "previous checkpoint, or start a new workdir.") from None

  def wait(self) -> None:
    """Blocks until the saves in flight (orbax saves in the background) are on disk."""
    _writing(self.latest.directory, None, self.latest.wait_until_finished)
    if self.best is not None:
      _writing(self.best.directory, None, self.best.wait_until_finished)

  def close(self) -> None:
    _writing(self.latest.directory, None, self.latest.close)
    if self.best is not None:
      _writing(self.best.directory, None, self.best.close)


def _check_shapes(manager: ocp.CheckpointManager, step: int, state_like: Any,
                  directory: Any) -> None:
  """Compares the saved arrays' shapes (metadata only) with `state_like`'s, so that a checkpoint of
  another model fails with the first differing array named, before any array is read."""
  try:
    saved = manager.item_metadata(step)
    saved = _shapes(getattr(saved, "tree", saved))
  except Exception:  # noqa: BLE001 -- unreadable metadata: restore reports it below
    return
  wanted = _shapes(state_like)
  for path in sorted(set(saved) | set(wanted), key=lambda p: (not p.startswith("params."), p)):
    if saved.get(path) != wanted.get(path):
      have = saved.get(path, "no such array")
      want = wanted.get(path, "no such array")
      raise CheckpointError(
          f"the checkpoint at step {step} in {directory} does not match the model of this config "
          f"(different cell, sizes or layers?): {path} is {have} in the checkpoint, {want} in "
          "this config. Use the config the run was made with (config.json in the workdir), or a "
          "new workdir.")


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{"params.encoder.layer0_fwd.w_h": shape, ...} of a pytree of arrays or array metadata."""
  def name(path: tuple[Any, ...]) -> str:
    parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return ".".join(parts)
  return {name(path): tuple(np.shape(leaf) if not hasattr(leaf, "shape") else leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _options(name: str, read_only: bool, **kwargs: Any) -> ocp.CheckpointManagerOptions:
  # A reader neither creates nor cleans up; orbax's own `read_only` option would say so in three
  # warnings at every evaluation.
  return ocp.CheckpointManagerOptions(
      create=not read_only, cleanup_tmp_directories=not read_only,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name),
      **kwargs)


def _writing(directory: Any, step: int | None, save: Callable[[], Any]) -> None:
  """Runs a save (or a wait for one), turning a failed write (disk full, permissions, a vanished
  mount) into an error that names the directory; the checkpoints already there are untouched.

  Orbax writes in background threads: a failure surfaces at the next save or wait, as an OSError
  or as tensorstore's ValueError carrying `[os_error_code='28']`.
  """
  try:
    save()
  except (OSError, ValueError) as e:
    code = re.search(r"os_error_code='(\d+)'", str(e))
    if not isinstance(e, OSError) and code is None:
      raise  # not an I/O failure: a bug, keep its traceback
    if code is not None:
      reason = os.strerror(int(code.group(1)))
    else:
      reason = getattr(e, "strerror", None) or _first_line(e)
    when = f" (saving step {step})" if step is not None else ""
    raise CheckpointError(
        f"could not write checkpoints to {os.fspath(directory)}{when}: {reason}. Free space (or "
        "fix permissions) there and run the same command again: it resumes from the latest "
        "complete checkpoint.") from None


def _root_cause(e: BaseException) -> BaseException:
  while e.__cause__ is not None:
    e = e.__cause__
  return e


def _unreadable(e: Exception) -> bool:
  """Whether an orbax/tensorstore error is about the bytes on disk, not the tree's structure."""
  text = f"{e} {_root_cause(e)}"
  return any(mark in text for mark in ("OUT_OF_RANGE", "DATA_LOSS", "os_error_code",
                                       "Error reading", "Error opening"))


def _first_line(e: Exception) -> str:
  text = str(e).strip().splitlines()
  return text[0][:300].rstrip(".") if text else type(e).__name__
