"""The run folder: its file names and the one atomic write every writer of rnnlab uses.

A run's workdir holds:
    config.json      the resolved config (written once, compared on every resume)
    metrics.jsonl    one JSON object per logged step
    summary.json     final evaluation metrics, steps_to_solve, wall time
    checkpoints/     the latest `train.keep_checkpoints` states (orbax)
    best_checkpoint/ the best state by the task's headline metric (orbax)
    tensorboard/     the metrics as TensorBoard scalars
"""

from __future__ import annotations

import os

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT_DIR = "best_checkpoint"
TENSORBOARD_DIR = "tensorboard"


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes `data` to `path` so that a reader (or a later run after a kill) sees either the old
  file or the whole new one, never a part.

  The temporary file is this process's own (`path.tmp.PID`), so processes writing the same file at
  once (sweep shards on a shared file system) never collide; the last `os.replace` wins.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
