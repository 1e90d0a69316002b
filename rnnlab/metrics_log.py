"""Where a run's metrics go: `metrics.jsonl` in the workdir (one JSON object per logged row).

Rows are written only by process 0 of a multi-host run.
"""

from __future__ import annotations

import json
import os
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
  """Appends metric rows ({"step": int, name: value, ...}) for one run."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)

  def write(self, row: dict[str, Any]) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")

  def close(self) -> None:
    pass


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
