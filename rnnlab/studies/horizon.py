"""The memory horizon of a cell: the longest sequence length at which it solved a task."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

# The status of a point not trained because its (task, cell, direction) finished a shorter T
# unsolved (`mark_past_horizon`).
PAST_HORIZON = "past horizon"


def _variant(row: dict[str, Any]) -> tuple[Any, ...]:
  return row["task"], row["cell"], row["direction"]


def solved_enough(row: dict[str, Any]) -> bool:
  """At least two thirds of the point's seeds solved it (2 of 3; all of 1 or 2)."""
  n = row.get("num_seeds") or 0
  return n > 0 and (row.get("solved_seeds") or 0) >= math.ceil(2 * n / 3)


def unsolved_below(rows: Sequence[dict[str, Any]], row: dict[str, Any]) -> int | None:
  """The shortest T below `row`'s at which its (task, cell, direction) finished (or diverged)
  without `solved_enough`, or None."""
  return min((r["length"] for r in rows if _variant(r) == _variant(row)
              and r["length"] < row["length"] and r.get("status") in ("finished", "diverged")
              and not solved_enough(r)), default=None)


def mark_past_horizon(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """`rows` with every point not run whose variant finished a shorter T unsolved given status
  PAST_HORIZON and `past_horizon_of` (that T): a study that skips past the horizon
  (`config.compare.skip_past_horizon`) never starts such a point, since a cell that cannot
  hold a delay T is taken not to hold a longer one (a point already started keeps its status
  and resumes)."""
  out = []
  for r in rows:
    below = unsolved_below(rows, r) if r.get("status") == "not run" else None
    out.append(dict(r) if below is None else dict(r, status=PAST_HORIZON, past_horizon_of=below))
  return out


def memory_horizons(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """The memory horizon of each (task, cell, direction): the largest T that `solved_enough`.

  Returns one dict per (task, cell, direction) in row order: horizon (None: no T solved),
  lengths_run (the finished lengths), steps_median / steps_min / steps_max (over the seeds that
  solved the horizon point), wall_to_solve_sec (the horizon point's wall time prorated to the
  median steps to solve: compilation included, evaluation of later steps excluded),
  time_to_solve_sec (the median steps at the point's median training rate,
  `sweep_table.median_rate`: the wall time without pauses and load shorter than half the run),
  unfinished (lengths not finished yet, so the horizon may still grow) and past_horizon
  (lengths not trained: a shorter one finished unsolved, `mark_past_horizon`).
  """
  out = []
  for task, cell, direction in dict.fromkeys(_variant(r) for r in rows):
    here = [r for r in rows if _variant(r) == (task, cell, direction)]
    finished = [r for r in here if r.get("status") in ("finished", "diverged")]
    solved = [r for r in finished if solved_enough(r)]
    entry: dict[str, Any] = {
        "task": task, "cell": cell, "direction": direction, "horizon": None,
        "lengths_run": sorted(r["length"] for r in finished),
        "unfinished": sorted(r["length"] for r in here
                             if r not in finished and r.get("status") != PAST_HORIZON),
        "past_horizon": sorted(r["length"] for r in here if r.get("status") == PAST_HORIZON),
        "steps_median": None, "steps_min": None, "steps_max": None, "wall_to_solve_sec": None,
        "time_to_solve_sec": None}
    if solved:
      best = max(solved, key=lambda r: r["length"])
      steps = sorted(s for s in best["steps_to_solve"] if s is not None and s >= 0)
      median = float(statistics.median(steps))
      wall, rate = best.get("wall_time_sec"), best.get("steps_per_sec")
      entry.update(horizon=best["length"], steps_median=median, steps_min=steps[0],
                   steps_max=steps[-1],
                   wall_to_solve_sec=(wall * median / best["steps"]
                                      if wall and best.get("steps") else None),
                   time_to_solve_sec=median / rate if rate else None)
    out.append(entry)
  return out
