"""Where a run's metrics go: `metrics.jsonl` in the workdir (one JSON object per logged row), and
the same rows as TensorBoard scalars under `workdir/tensorboard/` (see `rnnlab.training.tensorboard`).

Rows are written only by process 0 of a multi-host run. A failed write (the disk filling up) is an
RnnlabError naming the file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rnnlab.training import run_files
from rnnlab.training import tensorboard as tensorboard_events

METRICS_FILE = run_files.METRICS_FILE


class MetricsLog:
  """Appends metric rows ({"step": int, name: value, ...}) for one run.

  Attributes:
    workdir: the run's directory.
    enabled: False on every process but the first: nothing is written.
    tensorboard: also write TensorBoard event files (False: metrics.jsonl only).
    restart_step: the first step of a resumed session (its event files say so to TensorBoard).
  """

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True,
               restart_step: int | None = None):
    self.workdir = workdir
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tensorboard = (tensorboard_events.Writer(workdir, restart_step)
                         if enabled and tensorboard else None)

  def write(self, row: dict[str, Any]) -> None:
    if self.enabled:
      try:
        with open(self.path, "a") as f:
          f.write(json.dumps(row) + "\n")
      except OSError as e:
        raise run_files.write_error(self.path, e) from None
      if self._tensorboard is not None:
        self._tensorboard.write(row)

  def truncate(self, step: int) -> None:
    """Drops rows logged after `step` (by a run killed before its next checkpoint) from
    metrics.jsonl and the event files; call it on resume, before writing this session's rows."""
    if self.enabled:
      truncate(self.workdir, step)
      if self._tensorboard is not None:
        self._tensorboard.close()
        self._tensorboard.restart_step = step + 1

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()


def truncate(workdir: str, step: int) -> None:
  """Keeps the rows of steps <= `step` in metrics.jsonl and in the TensorBoard event files."""
  path = os.path.join(workdir, METRICS_FILE)
  rows = [r for r in read(workdir) if r["step"] <= step]
  run_files.atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
  tensorboard_events.truncate(workdir, step)


def read(workdir: str) -> list[dict[str, Any]]:
  """All rows of `workdir`'s metrics.jsonl (a line cut short by a kill is dropped)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          pass
  return rows
